//! The records Hallmark keeps: plain data, serialised with a version byte by
//! the store. No I/O here.
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::keys::KeyAlgorithm;
use crate::profile::{CaKind, Profile};
use crate::serial::Serial;

/// Byte strings (DER): hex in human-readable formats (JSON), a byte string
/// in binary ones (the store's CBOR).
pub mod hex_bytes {
    use serde::de::{Error, Visitor};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&hex::encode(b))
        } else {
            s.serialize_bytes(b)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            hex::decode(s).map_err(D::Error::custom)
        } else {
            d.deserialize_byte_buf(Bytes)
        }
    }

    struct Bytes;

    impl Visitor<'_> for Bytes {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a byte string")
        }
        fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }
    }
}

/// Every certificate Hallmark has signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertRecord {
    pub serial: Serial,
    pub profile: Profile,
    pub issuer: CaKind,
    /// Device ID, station ID, admin name or server name.
    pub subject: String,
    pub not_before: i64,
    pub not_after: i64,
    pub issued_at: i64,
    /// Who asked for it (`station:ID`, `admin:NAME`, `device:ID`, `ca-tool`).
    pub issued_by: String,
    #[serde(with = "hex_bytes")]
    pub der: Vec<u8>,
}

/// RFC 5280 5.3.1 reason codes Hallmark uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RevocationReason {
    Unspecified,
    KeyCompromise,
    CaCompromise,
    AffiliationChanged,
    Superseded,
    CessationOfOperation,
    CertificateHold,
    PrivilegeWithdrawn,
}

impl RevocationReason {
    pub const ALL: [RevocationReason; 8] = [
        RevocationReason::Unspecified,
        RevocationReason::KeyCompromise,
        RevocationReason::CaCompromise,
        RevocationReason::AffiliationChanged,
        RevocationReason::Superseded,
        RevocationReason::CessationOfOperation,
        RevocationReason::CertificateHold,
        RevocationReason::PrivilegeWithdrawn,
    ];

    /// The RFC 5280 CRLReason code.
    pub fn code(self) -> u8 {
        match self {
            RevocationReason::Unspecified => 0,
            RevocationReason::KeyCompromise => 1,
            RevocationReason::CaCompromise => 2,
            RevocationReason::AffiliationChanged => 3,
            RevocationReason::Superseded => 4,
            RevocationReason::CessationOfOperation => 5,
            RevocationReason::CertificateHold => 6,
            RevocationReason::PrivilegeWithdrawn => 9,
        }
    }

    /// The name RFC 5280 gives the reason (also what `openssl` prints, roughly).
    pub fn name(self) -> &'static str {
        match self {
            RevocationReason::Unspecified => "unspecified",
            RevocationReason::KeyCompromise => "keyCompromise",
            RevocationReason::CaCompromise => "cACompromise",
            RevocationReason::AffiliationChanged => "affiliationChanged",
            RevocationReason::Superseded => "superseded",
            RevocationReason::CessationOfOperation => "cessationOfOperation",
            RevocationReason::CertificateHold => "certificateHold",
            RevocationReason::PrivilegeWithdrawn => "privilegeWithdrawn",
        }
    }

    /// Accepts the RFC names, case-insensitively, and kebab/snake forms.
    pub fn parse(s: &str) -> Result<Self> {
        let norm: String = s
            .chars()
            .filter(|c| *c != '-' && *c != '_')
            .collect::<String>()
            .to_ascii_lowercase();
        RevocationReason::ALL
            .into_iter()
            .find(|r| r.name().to_ascii_lowercase() == norm)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "unknown revocation reason {s:?}; one of: {}",
                    RevocationReason::ALL.map(|r| r.name()).join(", ")
                ))
            })
    }

    pub fn from_code(code: i32) -> Option<Self> {
        RevocationReason::ALL
            .into_iter()
            .find(|r| i32::from(r.code()) == code)
    }
}

/// A revoked certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationRecord {
    pub serial: Serial,
    pub issuer: CaKind,
    pub reason: RevocationReason,
    pub revoked_at: i64,
    pub revoked_by: String,
    /// The certificate's notAfter: once past, the entry may leave the CRL
    /// (RFC 5280 3.3). 0 when unknown (kept).
    #[serde(default)]
    pub cert_not_after: i64,
}

/// A device's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceState {
    /// Birth certificate issued, not yet enrolled.
    Provisioned,
    /// Enrolled, holds an operational certificate.
    Active,
    /// Failed attestation; no certificate until released.
    Quarantined,
    /// Every certificate revoked.
    Revoked,
    /// Revoked and personal data erased.
    Decommissioned,
}

impl DeviceState {
    pub fn name(self) -> &'static str {
        match self {
            DeviceState::Provisioned => "provisioned",
            DeviceState::Active => "active",
            DeviceState::Quarantined => "quarantined",
            DeviceState::Revoked => "revoked",
            DeviceState::Decommissioned => "decommissioned",
        }
    }
}

/// The outcome of the last attestation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttestationSummary {
    pub passed: bool,
    pub at: i64,
    pub firmware_version: String,
    /// Why it failed, in plain words (empty on pass).
    pub reason: String,
}

/// A provisioned device. The setup code itself is never stored, only a keyed hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRecord {
    pub device_id: String,
    pub model: String,
    pub hardware_serial: String,
    pub station_id: String,
    pub lot: Option<String>,
    pub state: DeviceState,
    pub provisioned_at: i64,
    pub idevid_serial: Serial,
    /// Operational certificates, oldest first.
    pub ldevid_serials: Vec<Serial>,
    /// HMAC-SHA256 of the setup code under the setup-code key, hex.
    pub setup_code_mac: String,
    /// The fresh CSPRNG seed the setup code was drawn with (hex). Useless
    /// without the sealed setup-code key; lets an idempotent retry of the
    /// provisioning request return the same code without storing it.
    pub setup_code_seed: String,
    /// The idempotency key of the provisioning request, if any.
    pub idempotency_key: Option<String>,
    pub last_attestation: Option<AttestationSummary>,
    pub owner: Option<String>,
    /// Consecutive wrong setup codes in owner claims.
    #[serde(default)]
    pub claim_failures: u32,
    /// No claim is looked at before this time (Unix milliseconds).
    #[serde(default)]
    pub claim_not_before_ms: i64,
}

/// A factory test station.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StationRecord {
    pub station_id: String,
    /// Models it may provision. Checked when it provisions, so a station may
    /// name models that do not exist yet.
    pub models: Vec<String>,
    pub cert_serials: Vec<Serial>,
    pub created_at: i64,
    pub revoked: bool,
}

impl StationRecord {
    /// The record after issuing certificate `serial` for `models` to the
    /// station (`existing`, or a new station created at `now`).
    pub fn with_certificate(
        existing: Option<&StationRecord>,
        station_id: &str,
        models: &[String],
        serial: &Serial,
        now: i64,
    ) -> StationRecord {
        let mut rec = existing.cloned().unwrap_or(StationRecord {
            station_id: station_id.to_string(),
            models: vec![],
            cert_serials: vec![],
            created_at: now,
            revoked: false,
        });
        rec.models = models.to_vec();
        rec.cert_serials.push(serial.clone());
        rec
    }
}

/// How a model's setup codes look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SetupCodePolicy {
    /// 12 characters from an unambiguous upper-case alphabet.
    #[default]
    Alnum12,
    /// 8 digits (like a Matter passcode), never a trivial one.
    Numeric8,
}

impl SetupCodePolicy {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "alnum12" => Ok(SetupCodePolicy::Alnum12),
            "numeric8" => Ok(SetupCodePolicy::Numeric8),
            other => Err(Error::invalid(format!(
                "unknown setup-code policy {other:?} (alnum12 or numeric8)"
            ))),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            SetupCodePolicy::Alnum12 => "alnum12",
            SetupCodePolicy::Numeric8 => "numeric8",
        }
    }
}

/// A device model the factory builds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRecord {
    pub name: String,
    pub setup_code: SetupCodePolicy,
    pub key_algorithms: Vec<KeyAlgorithm>,
    pub server_keygen: bool,
    pub ldevid_validity_days: u32,
    pub active: bool,
}

/// A genuine firmware image (reference value for attestation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirmwareRecord {
    pub model: String,
    pub version: String,
    /// SHA-256 of the image, lower-case hex.
    pub digest_sha256: String,
    pub vulnerable: bool,
}

/// A single-use enrollment challenge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NonceRecord {
    #[serde(with = "hex_bytes")]
    pub nonce: Vec<u8>,
    pub device_id: String,
    pub expires_at: i64,
}
