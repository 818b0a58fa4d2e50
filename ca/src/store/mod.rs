//! Storage: small read traits per concern, and one [`Commit`] that applies a
//! set of writes together with their audit record atomically and durably.
//! [`sled::SledStore`] is the embedded default; every backend must pass
//! [`conformance::run_all`].
use crate::audit::{AuditEvent, AuditHead, AuditRecord};
use crate::error::Result;
use crate::profile::CaKind;
use crate::records::*;
use crate::serial::Serial;

pub mod conformance;
pub mod group_commit;
pub mod journal;
pub mod sled;

/// One change inside a [`Commit`]. Inserts refuse what already exists, updates
/// refuse what does not, so races between callers cannot double-issue.
#[derive(Debug, Clone)]
pub enum Write {
    /// Refuses a serial that was ever used.
    InsertCert(CertRecord),
    /// Refuses an existing device ID or an already provisioned
    /// (model, hardware serial).
    InsertDevice(DeviceRecord),
    /// The device must exist.
    UpdateDevice(DeviceRecord),
    PutStation(StationRecord),
    PutRevocation(RevocationRecord),
    RemoveRevocation(Serial),
    PutModel(ModelRecord),
    PutFirmware(FirmwareRecord),
    /// Claims a setup code's uniqueness-index key; refuses one in use.
    InsertSetupCodeIndex(String),
    /// Adds one to the counter `key`; refuses (QuotaExceeded) past `limit`.
    ChargeQuota {
        key: String,
        limit: u64,
    },
}

/// Certificates ever issued.
pub trait CertStore {
    fn cert(&self, serial: &Serial) -> Result<Option<CertRecord>>;
    fn certs(&self) -> Result<Vec<CertRecord>>;
}

/// Revoked certificates.
pub trait RevocationStore {
    fn revocation(&self, serial: &Serial) -> Result<Option<RevocationRecord>>;
    /// Every revocation of certificates issued by `issuer`.
    fn revocations(&self, issuer: CaKind) -> Result<Vec<RevocationRecord>>;
    /// A number that changes whenever a revocation or a station record
    /// changes — visible before the change is acknowledged — so a caller
    /// may keep what it derived from them (an authenticated caller) while
    /// the number stays the same. None: the backend cannot tell, and
    /// nothing may be kept.
    fn revocation_epoch(&self) -> Option<u64> {
        None
    }
}

/// Devices and their lookup by (model, hardware serial).
pub trait DeviceStore {
    fn device(&self, device_id: &str) -> Result<Option<DeviceRecord>>;
    fn device_by_hardware_serial(&self, model: &str, serial: &str) -> Result<Option<DeviceRecord>>;
    fn devices(&self) -> Result<Vec<DeviceRecord>>;

    /// Up to `limit` devices that `keep` accepts, in device-ID order,
    /// starting after `after` (from the first if None): one page of a
    /// listing, read without loading the fleet. The default sorts
    /// [`DeviceStore::devices`]; a backend with ordered keys should override it.
    fn devices_after(
        &self,
        after: Option<&str>,
        limit: usize,
        keep: &dyn Fn(&DeviceRecord) -> bool,
    ) -> Result<Vec<DeviceRecord>> {
        let mut all: Vec<DeviceRecord> = self
            .devices()?
            .into_iter()
            .filter(|d| after.is_none_or(|a| d.device_id.as_str() > a) && keep(d))
            .collect();
        all.sort_by(|a, b| a.device_id.cmp(&b.device_id));
        all.truncate(limit);
        Ok(all)
    }
}

/// Stations, models and firmware reference values.
pub trait CatalogStore {
    fn station(&self, station_id: &str) -> Result<Option<StationRecord>>;
    fn stations(&self) -> Result<Vec<StationRecord>>;
    fn model(&self, name: &str) -> Result<Option<ModelRecord>>;
    fn models(&self) -> Result<Vec<ModelRecord>>;
    fn firmware(&self, model: &str, version: &str) -> Result<Option<FirmwareRecord>>;
    fn firmwares(&self, model: &str) -> Result<Vec<FirmwareRecord>>;
}

/// Single-use challenges. Taking one removes it durably, so a nonce can never
/// be used twice, even across a restart.
pub trait NonceStore {
    fn put_nonce(&self, nonce: &NonceRecord) -> Result<()>;
    fn take_nonce(&self, nonce: &[u8]) -> Result<Option<NonceRecord>>;
}

/// Counters charged by [`Write::ChargeQuota`].
pub trait CounterStore {
    fn counter(&self, key: &str) -> Result<u64>;
}

/// The audit log, read side.
pub trait AuditLog {
    fn audit_records(&self) -> Result<Vec<AuditRecord>>;
    fn audit_head(&self) -> Result<Option<AuditHead>>;

    /// The records whose event subject is exactly `subject`, oldest first.
    /// The default scans the log; a backend should keep an index.
    fn audit_records_about(&self, subject: &str) -> Result<Vec<AuditRecord>> {
        Ok(self
            .audit_records()?
            .into_iter()
            .filter(|r| r.event.subject == subject)
            .collect())
    }
}

/// Applies writes and appends their audit record in one transaction, and
/// returns only once all of it is durable on disk.
pub trait Commit {
    fn commit(&self, writes: Vec<Write>, event: AuditEvent) -> Result<AuditRecord>;

    /// (commits made durable, flushes to disk) since the store was opened:
    /// how well concurrent commits share flushes. (0, 0) if not tracked.
    fn durability_stats(&self) -> (u64, u64) {
        (0, 0)
    }
}

/// Everything a Hallmark server needs from its store.
pub trait Store:
    CertStore
    + RevocationStore
    + DeviceStore
    + CatalogStore
    + NonceStore
    + CounterStore
    + AuditLog
    + Commit
    + Send
    + Sync
{
}

impl<T> Store for T where
    T: CertStore
        + RevocationStore
        + DeviceStore
        + CatalogStore
        + NonceStore
        + CounterStore
        + AuditLog
        + Commit
        + Send
        + Sync
{
}
