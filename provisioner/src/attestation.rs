//! Attestation (design flows 2-4): single-use challenges, appraisal of EAT
//! evidence against registered reference values, and signed results.
//!
//! Two kinds of failure: a *rejected* request (forged, replayed or malformed
//! evidence, wrong key binding) changes nothing and gets INVALID_ARGUMENT or
//! PERMISSION_DENIED; a *failed appraisal* (firmware not genuine or known
//! vulnerable, secure boot off, debug open) quarantines the device with an
//! alert in the audit log (EN 303 645 5.7-2) and gets FAILED_PRECONDITION.
use hallmark_ca::records::{DeviceRecord, FirmwareRecord, ModelRecord, NonceRecord};
use hallmark_proto::eat::{self, Alg, Evidence, Signed};
use ring::signature;
use x509_parser::prelude::*;

use crate::error::{Error, Result};

/// Challenge nonce length in bytes.
pub const NONCE_BYTES: usize = 32;

/// Why a request was rejected outright (nothing changes).
fn rejected(msg: impl Into<String>) -> Error {
    Error::Ca(hallmark_ca::Error::InvalidInput(msg.into()))
}

/// The evidence, checked for integrity and freshness.
pub struct Checked {
    pub evidence: Evidence,
}

/// Verifies evidence: signed by the key of the certificate the caller
/// presented (`tls_cert_der`), about the caller's device, answering the
/// challenge `nonce` that was issued to that device and has not expired.
pub fn check_evidence(
    evidence: &[u8],
    tls_cert_der: &[u8],
    device_id: &str,
    nonce: Option<NonceRecord>,
    now: i64,
) -> Result<Checked> {
    let signed = Signed::parse(evidence).map_err(|e| rejected(format!("evidence: {e}")))?;
    let (_, cert) = X509Certificate::from_der(tls_cert_der)
        .map_err(|_| rejected("unparsable client certificate"))?;
    let spki = cert.public_key();
    let raw = spki.subject_public_key.data.as_ref();
    let alg: &dyn signature::VerificationAlgorithm = match signed.alg {
        Alg::Es256 => &signature::ECDSA_P256_SHA256_FIXED,
        Alg::Es384 => &signature::ECDSA_P384_SHA384_FIXED,
        Alg::EdDsa => &signature::ED25519,
    };
    signed
        .verify(|sig, data| {
            signature::UnparsedPublicKey::new(alg, raw)
                .verify(data, sig)
                .is_ok()
        })
        .map_err(|_| {
            Error::PermissionDenied(
                "evidence is not signed by the key of the certificate this connection presented"
                    .into(),
            )
        })?;
    let evidence = signed
        .evidence()
        .map_err(|e| rejected(format!("evidence: {e}")))?;
    if evidence.device_id != device_id {
        return Err(Error::PermissionDenied(format!(
            "evidence is about device {}, the caller is {device_id}",
            evidence.device_id
        )));
    }
    let nonce =
        nonce.ok_or_else(|| rejected("unknown or already used challenge: ask for a new one"))?;
    if nonce.device_id != device_id {
        return Err(Error::PermissionDenied(
            "this challenge was issued to another device".into(),
        ));
    }
    if now > nonce.expires_at {
        return Err(rejected("the challenge expired: ask for a new one"));
    }
    Ok(Checked { evidence })
}

/// Binds the new operational key: the evidence must name the CSR's key.
pub fn check_key_binding(evidence: &Evidence, csr_spki: &[u8]) -> Result<()> {
    let digest = ring::digest::digest(&ring::digest::SHA256, csr_spki);
    match &evidence.op_key_sha256 {
        Some(d) if d.as_slice() == digest.as_ref() => Ok(()),
        Some(_) => Err(rejected(
            "the evidence names a different operational key than the CSR",
        )),
        None => Err(rejected(
            "the evidence does not name the operational key (op-key digest claim)",
        )),
    }
}

/// The appraisal verdict: Ok(firmware version) or Err(reason to quarantine).
pub fn appraise(
    evidence: &Evidence,
    device: &DeviceRecord,
    model: &ModelRecord,
    firmware: Option<&FirmwareRecord>,
) -> std::result::Result<String, String> {
    if evidence.hwmodel != device.model || model.name != device.model {
        return Err(format!(
            "evidence claims model {:?}, the device is a {}",
            evidence.hwmodel, device.model
        ));
    }
    let Some(fw) = firmware else {
        return Err(format!(
            "firmware version {:?} is not registered for {}",
            evidence.swversion, device.model
        ));
    };
    // Reference digests are public values: no constant-time compare needed.
    if hex::decode(&fw.digest_sha256).unwrap_or_default() != evidence.firmware_sha256 {
        return Err(format!(
            "firmware digest {} does not match the registered {} {}",
            hex::encode(&evidence.firmware_sha256),
            device.model,
            fw.version
        ));
    }
    if fw.vulnerable {
        return Err(format!(
            "firmware {} {} is marked vulnerable",
            device.model, fw.version
        ));
    }
    if !evidence.secboot {
        return Err("secure boot is off".into());
    }
    if evidence.dbgstat == 0 {
        return Err("debug access is enabled".into());
    }
    Ok(fw.version.clone())
}

/// The platform key that signs attestation results (ES256).
pub struct ResultSigner {
    key: signature::EcdsaKeyPair,
    /// DER SubjectPublicKeyInfo, published in the trust bundle.
    pub spki_der: Vec<u8>,
}

impl ResultSigner {
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self> {
        let rng = ring::rand::SystemRandom::new();
        let key = signature::EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8,
            &rng,
        )
        .map_err(|_| Error::Internal("attestation key is not a P-256 PKCS#8 key".into()))?;
        let kp = hallmark_ca::keys::key_from_pem(&::pem::encode(&::pem::Pem::new(
            "PRIVATE KEY",
            pkcs8.to_vec(),
        )))?;
        let spki_der = rcgen::PublicKeyData::subject_public_key_info(&kp);
        Ok(ResultSigner { key, spki_der })
    }

    pub fn sign(&self, r: &eat::AttestationResult) -> Result<Vec<u8>> {
        let rng = ring::rand::SystemRandom::new();
        eat::sign_result(r, Alg::Es256, |tbs| {
            self.key
                .sign(&rng, tbs)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| "signing failed".to_string())
        })
        .map_err(Error::Internal)
    }
}

/// Verifies an attestation result with the platform's public key (what a
/// cloud service does with the trust bundle's key).
pub fn verify_result(
    token: &[u8],
    spki_der: &[u8],
) -> std::result::Result<eat::AttestationResult, String> {
    let signed = Signed::parse(token).map_err(|e| e.to_string())?;
    if signed.alg != Alg::Es256 {
        return Err("attestation results are ES256".into());
    }
    let (_, spki) =
        x509_parser::x509::SubjectPublicKeyInfo::from_der(spki_der).map_err(|e| e.to_string())?;
    let raw = spki.subject_public_key.data.as_ref();
    signed
        .verify(|sig, data| {
            signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, raw)
                .verify(data, sig)
                .is_ok()
        })
        .map_err(|e| e.to_string())?;
    signed.attestation_result().map_err(|e| e.to_string())
}
