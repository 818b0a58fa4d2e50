//! The evidence and attestation-result formats of the contract: pure CBOR and
//! COSE encoding; the signing and verifying crypto is passed in, so devices
//! and the server share one definition without sharing keys.
//!
//! Evidence is an Entity Attestation Token (RFC 9711) in a COSE_Sign1 signed
//! with the device's birth (IDevID) key. Claims (CBOR map keys):
//!
//! | key | claim | value |
//! |---|---|---|
//! | 10 | eat_nonce | bstr, the server's challenge |
//! | 256 | ueid | bstr: 0x01 (RAND type) followed by the 16 bytes of the device ID (a UUID) |
//! | 259 | hwmodel | bstr, the model name |
//! | 270 | swname | tstr, firmware name |
//! | 271 | swversion | [tstr], firmware version |
//! | 273 | measurements | [[65000, bstr]]: SHA-256 of the firmware image (content format 65000, experimental range, means "raw SHA-256 digest") |
//! | 262 | secboot | bool |
//! | 263 | dbgstat | uint (0 enabled ... 4 full-permanent-disable) |
//! | 6 | iat | int, the device's clock (informational) |
//! | -75000 | hallmark op-key digest | bstr, SHA-256 of the DER SubjectPublicKeyInfo of the new operational key (absent for plain attestation) |
//!
//! The attestation result is a CWT (RFC 8392) in a COSE_Sign1 signed with the
//! platform's attestation key: iss (1) "hallmark", sub (2) device ID,
//! iat (6), exp (4), and -75001 verdict (bool), -75002 firmware version
//! (tstr), -75003 reason (tstr).
use ciborium::Value;
use coset::{CborSerializable, CoseSign1, CoseSign1Builder, HeaderBuilder, iana};

/// Largest evidence or result accepted, in bytes.
pub const MAX_TOKEN_BYTES: usize = 4096;
/// Content format of a raw SHA-256 firmware digest in `measurements`.
pub const MEASUREMENT_SHA256: i64 = 65000;

const K_NONCE: i64 = 10;
const K_UEID: i64 = 256;
const K_HWMODEL: i64 = 259;
const K_SWNAME: i64 = 270;
const K_SWVERSION: i64 = 271;
const K_MEASUREMENTS: i64 = 273;
const K_SECBOOT: i64 = 262;
const K_DBGSTAT: i64 = 263;
const K_IAT: i64 = 6;
const K_OPKEY: i64 = -75000;
const K_ISS: i64 = 1;
const K_SUB: i64 = 2;
const K_EXP: i64 = 4;
const K_VERDICT: i64 = -75001;
const K_FWVER: i64 = -75002;
const K_REASON: i64 = -75003;

/// Why a token could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("token is {0} bytes; at most {MAX_TOKEN_BYTES} are accepted")]
    TooLarge(usize),
    #[error("not a COSE_Sign1: {0}")]
    Cose(String),
    #[error("unsupported or missing signature algorithm")]
    Algorithm,
    #[error("the signature does not verify")]
    Signature,
    #[error("claim {0} is missing or malformed")]
    Claim(&'static str),
    #[error("payload is not a CBOR map: {0}")]
    Payload(String),
}

/// Signature algorithms of devices and the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    /// ECDSA P-256 with SHA-256, signature r||s (64 bytes).
    Es256,
    /// ECDSA P-384 with SHA-384, signature r||s (96 bytes).
    Es384,
    EdDsa,
}

impl Alg {
    fn iana(self) -> iana::Algorithm {
        match self {
            Alg::Es256 => iana::Algorithm::ES256,
            Alg::Es384 => iana::Algorithm::ES384,
            Alg::EdDsa => iana::Algorithm::EdDSA,
        }
    }
    fn from_header(h: &coset::Header) -> Result<Self, TokenError> {
        match h.alg {
            Some(coset::RegisteredLabelWithPrivate::Assigned(iana::Algorithm::ES256)) => {
                Ok(Alg::Es256)
            }
            Some(coset::RegisteredLabelWithPrivate::Assigned(iana::Algorithm::ES384)) => {
                Ok(Alg::Es384)
            }
            Some(coset::RegisteredLabelWithPrivate::Assigned(iana::Algorithm::EdDSA)) => {
                Ok(Alg::EdDsa)
            }
            _ => Err(TokenError::Algorithm),
        }
    }
}

/// EAT evidence claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    pub nonce: Vec<u8>,
    /// The device ID (UUID text form).
    pub device_id: String,
    pub hwmodel: String,
    pub swname: String,
    pub swversion: String,
    /// SHA-256 of the firmware image.
    pub firmware_sha256: Vec<u8>,
    pub secboot: bool,
    pub dbgstat: u8,
    pub iat: i64,
    /// SHA-256 of the new operational key's SPKI (enrollment and renewal).
    pub op_key_sha256: Option<Vec<u8>>,
}

/// A signed attestation result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationResult {
    pub device_id: String,
    pub pass: bool,
    pub firmware_version: String,
    pub reason: String,
    pub iat: i64,
    pub exp: i64,
}

fn uuid_bytes(s: &str) -> Option<Vec<u8>> {
    let hexs: String = s.chars().filter(|c| *c != '-').collect();
    if hexs.len() != 32 {
        return None;
    }
    (0..16)
        .map(|i| u8::from_str_radix(&hexs[2 * i..2 * i + 2], 16).ok())
        .collect()
}

fn uuid_text(b: &[u8]) -> String {
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn int(k: i64) -> Value {
    Value::Integer(k.into())
}

fn encode(map: Vec<(Value, Value)>) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = ciborium::into_writer(&Value::Map(map), &mut out);
    out
}

fn sign1(
    alg: Alg,
    payload: Vec<u8>,
    sign: impl FnOnce(&[u8]) -> Result<Vec<u8>, String>,
) -> Result<Vec<u8>, String> {
    let s = CoseSign1Builder::new()
        .protected(HeaderBuilder::new().algorithm(alg.iana()).build())
        .payload(payload)
        .try_create_signature(b"", sign)?
        .build();
    s.to_vec().map_err(|e| e.to_string())
}

/// A parsed COSE_Sign1 whose signature is still to be checked.
pub struct Signed {
    pub alg: Alg,
    sign1: CoseSign1,
}

impl Signed {
    /// Parses a COSE_Sign1 (size-limited).
    pub fn parse(bytes: &[u8]) -> Result<Self, TokenError> {
        if bytes.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLarge(bytes.len()));
        }
        let sign1 = CoseSign1::from_slice(bytes).map_err(|e| TokenError::Cose(format!("{e:?}")))?;
        let alg = Alg::from_header(&sign1.protected.header)?;
        Ok(Signed { alg, sign1 })
    }

    /// Checks the signature with `verify(signature, signed_bytes) -> bool`.
    pub fn verify(&self, verify: impl FnOnce(&[u8], &[u8]) -> bool) -> Result<(), TokenError> {
        self.sign1.verify_signature(b"", |sig, data| {
            if verify(sig, data) {
                Ok(())
            } else {
                Err(TokenError::Signature)
            }
        })
    }

    fn claims(&self) -> Result<Vec<(Value, Value)>, TokenError> {
        let payload = self
            .sign1
            .payload
            .as_ref()
            .ok_or(TokenError::Payload("no payload".into()))?;
        match ciborium::from_reader::<Value, _>(payload.as_slice()) {
            Ok(Value::Map(m)) => Ok(m),
            Ok(_) => Err(TokenError::Payload("not a map".into())),
            Err(e) => Err(TokenError::Payload(e.to_string())),
        }
    }

    /// The evidence claims (call [`Signed::verify`] before trusting them).
    pub fn evidence(&self) -> Result<Evidence, TokenError> {
        let m = self.claims()?;
        let c = Claims(&m);
        let ueid = c.bytes(K_UEID, "ueid")?;
        if ueid.len() != 17 || ueid[0] != 0x01 {
            return Err(TokenError::Claim("ueid"));
        }
        let measurements = match c.get(K_MEASUREMENTS) {
            Some(Value::Array(a)) => a,
            _ => return Err(TokenError::Claim("measurements")),
        };
        let mut digest = None;
        for entry in measurements {
            if let Value::Array(pair) = entry
                && let [Value::Integer(ct), Value::Bytes(d)] = pair.as_slice()
                && i128::from(*ct) == i128::from(MEASUREMENT_SHA256)
                && d.len() == 32
            {
                digest = Some(d.clone());
            }
        }
        let swversion = match c.get(K_SWVERSION) {
            Some(Value::Array(a)) => match a.first() {
                Some(Value::Text(t)) => t.clone(),
                _ => return Err(TokenError::Claim("swversion")),
            },
            _ => return Err(TokenError::Claim("swversion")),
        };
        Ok(Evidence {
            nonce: c.bytes(K_NONCE, "eat_nonce")?,
            device_id: uuid_text(&ueid[1..]),
            hwmodel: String::from_utf8(c.bytes(K_HWMODEL, "hwmodel")?)
                .map_err(|_| TokenError::Claim("hwmodel"))?,
            swname: c.text(K_SWNAME, "swname")?,
            swversion,
            firmware_sha256: digest.ok_or(TokenError::Claim("measurements"))?,
            secboot: match c.get(K_SECBOOT) {
                Some(Value::Bool(b)) => *b,
                _ => return Err(TokenError::Claim("secboot")),
            },
            dbgstat: c
                .int(K_DBGSTAT, "dbgstat")?
                .try_into()
                .map_err(|_| TokenError::Claim("dbgstat"))?,
            iat: c.int(K_IAT, "iat")?,
            op_key_sha256: match c.get(K_OPKEY) {
                None => None,
                Some(Value::Bytes(b)) if b.len() == 32 => Some(b.clone()),
                Some(_) => return Err(TokenError::Claim("op-key digest")),
            },
        })
    }

    /// The attestation-result claims (call [`Signed::verify`] first).
    pub fn attestation_result(&self) -> Result<AttestationResult, TokenError> {
        let m = self.claims()?;
        let c = Claims(&m);
        if c.text(K_ISS, "iss")? != "hallmark" {
            return Err(TokenError::Claim("iss"));
        }
        Ok(AttestationResult {
            device_id: c.text(K_SUB, "sub")?,
            pass: match c.get(K_VERDICT) {
                Some(Value::Bool(b)) => *b,
                _ => return Err(TokenError::Claim("verdict")),
            },
            firmware_version: c.text(K_FWVER, "firmware version")?,
            reason: c.text(K_REASON, "reason")?,
            iat: c.int(K_IAT, "iat")?,
            exp: c.int(K_EXP, "exp")?,
        })
    }
}

struct Claims<'a>(&'a [(Value, Value)]);

impl Claims<'_> {
    fn get(&self, k: i64) -> Option<&Value> {
        self.0.iter().find_map(|(key, v)| match key {
            Value::Integer(i) if i128::from(*i) == i128::from(k) => Some(v),
            _ => None,
        })
    }
    fn bytes(&self, k: i64, name: &'static str) -> Result<Vec<u8>, TokenError> {
        match self.get(k) {
            Some(Value::Bytes(b)) => Ok(b.clone()),
            _ => Err(TokenError::Claim(name)),
        }
    }
    fn text(&self, k: i64, name: &'static str) -> Result<String, TokenError> {
        match self.get(k) {
            Some(Value::Text(t)) => Ok(t.clone()),
            _ => Err(TokenError::Claim(name)),
        }
    }
    fn int(&self, k: i64, name: &'static str) -> Result<i64, TokenError> {
        match self.get(k) {
            Some(Value::Integer(i)) => i64::try_from(*i).map_err(|_| TokenError::Claim(name)),
            _ => Err(TokenError::Claim(name)),
        }
    }
}

/// Encodes and signs evidence (`sign` returns the COSE signature bytes).
pub fn sign_evidence(
    e: &Evidence,
    alg: Alg,
    sign: impl FnOnce(&[u8]) -> Result<Vec<u8>, String>,
) -> Result<Vec<u8>, String> {
    let mut ueid = vec![0x01];
    ueid.extend(uuid_bytes(&e.device_id).ok_or("device ID is not a UUID")?);
    let mut m = vec![
        (int(K_NONCE), Value::Bytes(e.nonce.clone())),
        (int(K_UEID), Value::Bytes(ueid)),
        (int(K_HWMODEL), Value::Bytes(e.hwmodel.as_bytes().to_vec())),
        (int(K_SWNAME), Value::Text(e.swname.clone())),
        (
            int(K_SWVERSION),
            Value::Array(vec![Value::Text(e.swversion.clone())]),
        ),
        (
            int(K_MEASUREMENTS),
            Value::Array(vec![Value::Array(vec![
                int(MEASUREMENT_SHA256),
                Value::Bytes(e.firmware_sha256.clone()),
            ])]),
        ),
        (int(K_SECBOOT), Value::Bool(e.secboot)),
        (int(K_DBGSTAT), int(i64::from(e.dbgstat))),
        (int(K_IAT), int(e.iat)),
    ];
    if let Some(d) = &e.op_key_sha256 {
        m.push((int(K_OPKEY), Value::Bytes(d.clone())));
    }
    sign1(alg, encode(m), sign)
}

/// Encodes and signs an attestation result.
pub fn sign_result(
    r: &AttestationResult,
    alg: Alg,
    sign: impl FnOnce(&[u8]) -> Result<Vec<u8>, String>,
) -> Result<Vec<u8>, String> {
    let m = vec![
        (int(K_ISS), Value::Text("hallmark".into())),
        (int(K_SUB), Value::Text(r.device_id.clone())),
        (int(K_IAT), int(r.iat)),
        (int(K_EXP), int(r.exp)),
        (int(K_VERDICT), Value::Bool(r.pass)),
        (int(K_FWVER), Value::Text(r.firmware_version.clone())),
        (int(K_REASON), Value::Text(r.reason.clone())),
    ];
    sign1(alg, encode(m), sign)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Evidence {
        Evidence {
            nonce: vec![9; 32],
            device_id: "0b6a8f4e-3c1d-4e2a-9f00-123456789abc".into(),
            hwmodel: "sensor-v1".into(),
            swname: "fw".into(),
            swversion: "1.2.3".into(),
            firmware_sha256: vec![7; 32],
            secboot: true,
            dbgstat: 3,
            iat: 1_800_000_000,
            op_key_sha256: Some(vec![1; 32]),
        }
    }

    /// A toy "signature" for format tests: the signed bytes reversed.
    fn toy_sign(d: &[u8]) -> Result<Vec<u8>, String> {
        Ok(d.iter().rev().copied().collect())
    }
    fn toy_verify(sig: &[u8], d: &[u8]) -> bool {
        sig.iter().rev().copied().collect::<Vec<_>>() == d
    }

    #[test]
    fn evidence_round_trips() {
        let bytes = sign_evidence(&sample(), Alg::Es256, toy_sign).unwrap();
        let s = Signed::parse(&bytes).unwrap();
        assert_eq!(s.alg, Alg::Es256);
        s.verify(toy_verify).unwrap();
        assert_eq!(s.evidence().unwrap(), sample());
        let mut plain = sample();
        plain.op_key_sha256 = None;
        let b = sign_evidence(&plain, Alg::EdDsa, toy_sign).unwrap();
        assert_eq!(Signed::parse(&b).unwrap().evidence().unwrap(), plain);
    }

    #[test]
    fn tampering_and_garbage_are_refused() {
        let mut bytes = sign_evidence(&sample(), Alg::Es256, toy_sign).unwrap();
        let pos = bytes.windows(5).position(|w| w == b"1.2.3").unwrap();
        bytes[pos + 4] = b'4';
        let s = Signed::parse(&bytes).unwrap();
        assert_eq!(s.verify(toy_verify), Err(TokenError::Signature));
        assert!(Signed::parse(b"\x00\x01garbage").is_err());
        assert!(matches!(
            Signed::parse(&vec![0u8; MAX_TOKEN_BYTES + 1]),
            Err(TokenError::TooLarge(_))
        ));
    }

    #[test]
    fn results_round_trip() {
        let r = AttestationResult {
            device_id: "d".into(),
            pass: false,
            firmware_version: "1.0".into(),
            reason: "firmware digest not registered".into(),
            iat: 1,
            exp: 2,
        };
        let b = sign_result(&r, Alg::Es256, toy_sign).unwrap();
        let s = Signed::parse(&b).unwrap();
        s.verify(toy_verify).unwrap();
        assert_eq!(s.attestation_result().unwrap(), r);
        assert!(s.evidence().is_err());
    }
}
