//! PKCS#10 requests from devices and operators: parsed, proof of possession
//! checked, key type checked against a policy. Only the public key is taken;
//! the CA decides subject and extensions (a CSR asking for CA:TRUE gets a
//! plain end-entity certificate).
use x509_parser::prelude::*;

use crate::error::{Error, Result};
use crate::keys::KeyAlgorithm;

/// Largest CSR accepted, in bytes (a P-384 CSR is ~500 bytes, RSA-4096 ~1.7k).
pub const MAX_CSR_BYTES: usize = 8 * 1024;

const OID_EC: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const OID_ED25519: &str = "1.3.101.112";
const OID_RSA: &str = "1.2.840.113549.1.1.1";

/// The key a valid CSR carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsrKey {
    pub algorithm: KeyAlgorithm,
    /// DER SubjectPublicKeyInfo.
    pub spki_der: Vec<u8>,
}

/// Parses and checks a DER CSR: size, structure, signature (proof of
/// possession) and that its key is one of `allowed`.
pub fn check(der: &[u8], allowed: &[KeyAlgorithm]) -> Result<CsrKey> {
    if der.is_empty() {
        return Err(Error::invalid("the CSR is empty"));
    }
    if der.len() > MAX_CSR_BYTES {
        return Err(Error::invalid(format!(
            "the CSR is {} bytes; at most {MAX_CSR_BYTES} are accepted",
            der.len()
        )));
    }
    let (rest, csr) = X509CertificationRequest::from_der(der)
        .map_err(|e| Error::invalid(format!("the CSR is not a valid PKCS#10 request: {e}")))?;
    if !rest.is_empty() {
        return Err(Error::invalid("the CSR has trailing bytes"));
    }
    let spki = &csr.certification_request_info.subject_pki;
    let alg_oid = spki.algorithm.algorithm.to_id_string();
    let algorithm = match alg_oid.as_str() {
        OID_EC => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string())
                .unwrap_or_default();
            match curve.as_str() {
                OID_P256 => KeyAlgorithm::P256,
                OID_P384 => KeyAlgorithm::P384,
                other => {
                    return Err(Error::invalid(format!(
                        "the CSR's EC key uses an unsupported curve ({other}); use P-256 or P-384"
                    )));
                }
            }
        }
        OID_ED25519 => KeyAlgorithm::Ed25519,
        OID_RSA => {
            let bits = match spki.parsed() {
                Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => rsa.key_size(),
                _ => 0,
            };
            if bits < 2048 {
                return Err(Error::invalid(format!(
                    "the CSR's RSA key has {bits} bits; RSA under 2048 bits is refused (use P-256)"
                )));
            }
            return Err(Error::invalid(format!(
                "RSA keys are not accepted for devices; allowed: {}",
                names(allowed)
            )));
        }
        other => {
            return Err(Error::invalid(format!(
                "the CSR's key algorithm {other} is not supported"
            )));
        }
    };
    if !allowed.contains(&algorithm) {
        return Err(Error::invalid(format!(
            "key type {} is not allowed here; allowed: {}",
            algorithm.name(),
            names(allowed)
        )));
    }
    csr.verify_signature().map_err(|_| {
        Error::invalid("the CSR's signature does not verify: no proof of possession of the key")
    })?;
    Ok(CsrKey {
        algorithm,
        spki_der: spki.raw.to_vec(),
    })
}

fn names(allowed: &[KeyAlgorithm]) -> String {
    allowed
        .iter()
        .map(|a| a.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Makes a CSR for `key` (devices and operator tools; the subject is a hint
/// only, the CA decides the real one).
pub fn make(key: &rcgen::KeyPair, common_name: &str) -> Result<Vec<u8>> {
    let mut p = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, common_name);
    p.distinguished_name = dn;
    Ok(p.serialize_request(key)?.der().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys;

    #[test]
    fn good_csrs_of_every_allowed_type() {
        for alg in KeyAlgorithm::ALL {
            let key = keys::generate(alg).unwrap();
            let der = make(&key, "x").unwrap();
            let k = check(&der, &KeyAlgorithm::ALL).unwrap();
            assert_eq!(k.algorithm, alg);
            assert_eq!(
                k.spki_der,
                rcgen::PublicKeyData::subject_public_key_info(&key)
            );
        }
    }

    #[test]
    fn refusals_say_what_was_wrong() {
        let key = keys::generate(KeyAlgorithm::P256).unwrap();
        let der = make(&key, "x").unwrap();
        let err = check(&der, &[KeyAlgorithm::Ed25519])
            .unwrap_err()
            .to_string();
        assert!(err.contains("not allowed"), "{err}");
        assert!(
            check(&[], &KeyAlgorithm::ALL)
                .unwrap_err()
                .to_string()
                .contains("empty")
        );
        let big = vec![0u8; MAX_CSR_BYTES + 1];
        assert!(
            check(&big, &KeyAlgorithm::ALL)
                .unwrap_err()
                .to_string()
                .contains("at most")
        );
        let err = check(b"garbage", &KeyAlgorithm::ALL)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a valid PKCS#10"), "{err}");
        let mut trailing = der.clone();
        trailing.push(0);
        assert!(check(&trailing, &KeyAlgorithm::ALL).is_err());
    }

    #[test]
    fn a_tampered_signature_is_no_proof_of_possession() {
        let key = keys::generate(KeyAlgorithm::P256).unwrap();
        let mut der = make(&key, "x").unwrap();
        // Flip a bit inside the subject CN: the signature no longer matches.
        let pos = der.windows(1).position(|w| w[0] == b'x').unwrap();
        der[pos] = b'y';
        let err = check(&der, &KeyAlgorithm::ALL).unwrap_err().to_string();
        assert!(err.contains("proof of possession"), "{err}");
    }
}
