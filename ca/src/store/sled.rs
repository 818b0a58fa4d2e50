//! The embedded default store on sled 0.34: one tree per table, a version
//! byte in every record, multi-record changes in one transaction, and an
//! fdatasync of sled's data file before a commit returns (sled's own flush
//! uses sync_file_range, which does not survive power loss).
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::{Transactional, Tree};
use zeroize::Zeroizing;

use super::{
    AuditLog, CatalogStore, CertStore, Commit, CounterStore, DeviceStore, NonceStore,
    RevocationStore, Write,
};
use crate::audit::{self, AuditEvent, AuditHead, AuditRecord};
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::profile::CaKind;
use crate::records::*;
use crate::serial::Serial;

const VERSION: u8 = 1;
const HEAD_KEY: &[u8] = b"audit_head";

#[derive(Clone, Copy)]
enum T {
    Certs = 0,
    Revocations,
    Devices,
    DeviceIndex,
    Stations,
    Models,
    Firmware,
    Audit,
    Meta,
    Counters,
    SetupCodes,
}

const TREE_NAMES: [&str; 11] = [
    "certs",
    "revocations",
    "devices",
    "device_index",
    "stations",
    "models",
    "firmware",
    "audit",
    "meta",
    "counters",
    "setup_codes",
];

/// A sled database holding every Hallmark table.
pub struct SledStore {
    db: sled::Db,
    trees: Vec<Tree>,
    nonces: Tree,
    data_file: File,
    path: PathBuf,
    audit_key: Option<Zeroizing<Vec<u8>>>,
    clock: Arc<dyn Clock>,
}

fn encode<V: Serialize>(v: &V) -> Result<Vec<u8>> {
    let mut out = vec![VERSION];
    serde_json::to_writer(&mut out, v).map_err(|e| Error::CorruptRecord {
        tree: "encode",
        detail: e.to_string(),
    })?;
    Ok(out)
}

fn decode<V: DeserializeOwned>(tree: &'static str, bytes: &[u8]) -> Result<V> {
    match bytes.split_first() {
        Some((&VERSION, rest)) => serde_json::from_slice(rest).map_err(|e| Error::CorruptRecord {
            tree,
            detail: e.to_string(),
        }),
        Some((v, _)) => Err(Error::CorruptRecord {
            tree,
            detail: format!("unknown record version {v}"),
        }),
        None => Err(Error::CorruptRecord {
            tree,
            detail: "empty record".into(),
        }),
    }
}

fn index_key(model: &str, serial: &str) -> Vec<u8> {
    [model.as_bytes(), b"\0", serial.as_bytes()].concat()
}

fn firmware_key(model: &str, version: &str) -> Vec<u8> {
    [model.as_bytes(), b"\0", version.as_bytes()].concat()
}

/// Encodes inside a transaction.
fn enc<V: Serialize>(v: &V) -> std::result::Result<Vec<u8>, ConflictableTransactionError<Error>> {
    encode(v).map_err(ConflictableTransactionError::Abort)
}

/// Aborts a transaction with a domain error.
fn abort<V>(e: Error) -> std::result::Result<V, ConflictableTransactionError<Error>> {
    Err(ConflictableTransactionError::Abort(e))
}

impl SledStore {
    /// Opens (or creates) the store at `path`. Without an audit key the store
    /// can be read but not written.
    pub fn open(
        path: &Path,
        audit_key: Option<Zeroizing<Vec<u8>>>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self> {
        let db = sled::Config::new().path(path).open().map_err(|e| match e {
            sled::Error::Io(io)
                if io.kind() == std::io::ErrorKind::WouldBlock
                    || io.to_string().contains("lock") =>
            {
                Error::StoreLocked(path.display().to_string())
            }
            other => Error::Store(other),
        })?;
        let trees = TREE_NAMES
            .iter()
            .map(|n| db.open_tree(n))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let nonces = db.open_tree("nonces")?;
        let data_path = path.join("db");
        let data_file = File::open(&data_path).map_err(|e| Error::io(&data_path, e))?;
        Ok(SledStore {
            db,
            trees,
            nonces,
            data_file,
            path: path.to_path_buf(),
            audit_key,
            clock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn tree(&self, t: T) -> &Tree {
        &self.trees[t as usize]
    }

    /// Makes everything written so far durable.
    fn sync(&self) -> Result<()> {
        self.db.flush()?;
        self.data_file
            .sync_data()
            .map_err(|e| Error::io(self.path.join("db"), e))
    }

    fn get<V: DeserializeOwned>(&self, t: T, key: &[u8]) -> Result<Option<V>> {
        self.tree(t)
            .get(key)?
            .map(|v| decode(TREE_NAMES[t as usize], &v))
            .transpose()
    }

    fn all<V: DeserializeOwned>(&self, t: T) -> Result<Vec<V>> {
        self.scan(t, b"")
    }

    fn scan<V: DeserializeOwned>(&self, t: T, prefix: &[u8]) -> Result<Vec<V>> {
        self.tree(t)
            .scan_prefix(prefix)
            .map(|kv| {
                let (_, v) = kv?;
                decode(TREE_NAMES[t as usize], &v)
            })
            .collect()
    }

    /// Test hook: the raw audit tree, so tests can tamper with it.
    #[doc(hidden)]
    pub fn raw_audit_tree(&self) -> &Tree {
        self.tree(T::Audit)
    }
}

fn apply(
    trees: &[TransactionalTree],
    w: &Write,
) -> std::result::Result<(), ConflictableTransactionError<Error>> {
    let tx = |t: T| &trees[t as usize];
    match w {
        Write::InsertCert(c) => {
            let key = c.serial.as_bytes();
            if tx(T::Certs).get(key)?.is_some() {
                return abort(Error::AlreadyExists {
                    what: "certificate serial",
                    id: c.serial.to_string(),
                });
            }
            tx(T::Certs).insert(key, enc(c)?)?;
        }
        Write::InsertDevice(d) => {
            if tx(T::Devices).get(d.device_id.as_bytes())?.is_some() {
                return abort(Error::AlreadyExists {
                    what: "device ID",
                    id: d.device_id.clone(),
                });
            }
            let ik = index_key(&d.model, &d.hardware_serial);
            if tx(T::DeviceIndex).get(&ik)?.is_some() {
                return abort(Error::AlreadyExists {
                    what: "hardware serial",
                    id: format!("{}/{}", d.model, d.hardware_serial),
                });
            }
            tx(T::DeviceIndex).insert(ik, d.device_id.as_bytes())?;
            tx(T::Devices).insert(d.device_id.as_bytes(), enc(d)?)?;
        }
        Write::UpdateDevice(d) => {
            if tx(T::Devices).get(d.device_id.as_bytes())?.is_none() {
                return abort(Error::NotFound {
                    what: "device",
                    id: d.device_id.clone(),
                });
            }
            tx(T::Devices).insert(d.device_id.as_bytes(), enc(d)?)?;
        }
        Write::PutStation(s) => {
            tx(T::Stations).insert(s.station_id.as_bytes(), enc(s)?)?;
        }
        Write::PutRevocation(r) => {
            tx(T::Revocations).insert(r.serial.as_bytes(), enc(r)?)?;
        }
        Write::RemoveRevocation(s) => {
            tx(T::Revocations).remove(s.as_bytes())?;
        }
        Write::PutModel(m) => {
            tx(T::Models).insert(m.name.as_bytes(), enc(m)?)?;
        }
        Write::PutFirmware(f) => {
            tx(T::Firmware).insert(firmware_key(&f.model, &f.version), enc(f)?)?;
        }
        Write::InsertSetupCodeIndex(k) => {
            if tx(T::SetupCodes).get(k.as_bytes())?.is_some() {
                return abort(Error::AlreadyExists {
                    what: "setup code",
                    id: "(redacted)".into(),
                });
            }
            tx(T::SetupCodes).insert(k.as_bytes(), &[1u8])?;
        }
        Write::ChargeQuota { key, limit } => {
            let used = tx(T::Counters)
                .get(key.as_bytes())?
                .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            if used >= *limit {
                return abort(Error::QuotaExceeded(format!(
                    "quota {key} of {limit} is used up"
                )));
            }
            tx(T::Counters).insert(key.as_bytes(), &(used + 1).to_be_bytes())?;
        }
    }
    Ok(())
}

impl Commit for SledStore {
    fn commit(&self, writes: Vec<Write>, event: AuditEvent) -> Result<AuditRecord> {
        let key = self.audit_key.as_ref().ok_or(Error::ReadOnly)?;
        let at = self.clock.now().unix_timestamp();
        let refs: Vec<&Tree> = self.trees.iter().collect();
        let record = refs
            .as_slice()
            .transaction(|trees| {
                for w in &writes {
                    apply(trees, w)?;
                }
                let meta = &trees[T::Meta as usize];
                let head: Option<AuditHead> = match meta.get(HEAD_KEY)? {
                    Some(b) => {
                        Some(decode("meta", &b).map_err(ConflictableTransactionError::Abort)?)
                    }
                    None => None,
                };
                let rec = audit::next_record(head.as_ref(), at, event.clone())
                    .map_err(ConflictableTransactionError::Abort)?;
                let sealed = audit::seal_head(key, &rec);
                trees[T::Audit as usize].insert(&rec.seq.to_be_bytes(), enc(&rec)?)?;
                meta.insert(HEAD_KEY, enc(&sealed)?)?;
                Ok(rec)
            })
            .map_err(|e| match e {
                TransactionError::Abort(e) => e,
                TransactionError::Storage(e) => Error::Store(e),
            })?;
        self.sync()?;
        Ok(record)
    }
}

impl CertStore for SledStore {
    fn cert(&self, serial: &Serial) -> Result<Option<CertRecord>> {
        self.get(T::Certs, serial.as_bytes())
    }
    fn certs(&self) -> Result<Vec<CertRecord>> {
        self.all(T::Certs)
    }
}

impl RevocationStore for SledStore {
    fn revocation(&self, serial: &Serial) -> Result<Option<RevocationRecord>> {
        self.get(T::Revocations, serial.as_bytes())
    }
    fn revocations(&self, issuer: CaKind) -> Result<Vec<RevocationRecord>> {
        Ok(self
            .all::<RevocationRecord>(T::Revocations)?
            .into_iter()
            .filter(|r| r.issuer == issuer)
            .collect())
    }
}

impl DeviceStore for SledStore {
    fn device(&self, device_id: &str) -> Result<Option<DeviceRecord>> {
        self.get(T::Devices, device_id.as_bytes())
    }
    fn device_by_hardware_serial(&self, model: &str, serial: &str) -> Result<Option<DeviceRecord>> {
        match self.tree(T::DeviceIndex).get(index_key(model, serial))? {
            Some(id) => self.get(T::Devices, &id),
            None => Ok(None),
        }
    }
    fn devices(&self) -> Result<Vec<DeviceRecord>> {
        self.all(T::Devices)
    }
}

impl CatalogStore for SledStore {
    fn station(&self, station_id: &str) -> Result<Option<StationRecord>> {
        self.get(T::Stations, station_id.as_bytes())
    }
    fn stations(&self) -> Result<Vec<StationRecord>> {
        self.all(T::Stations)
    }
    fn model(&self, name: &str) -> Result<Option<ModelRecord>> {
        self.get(T::Models, name.as_bytes())
    }
    fn models(&self) -> Result<Vec<ModelRecord>> {
        self.all(T::Models)
    }
    fn firmware(&self, model: &str, version: &str) -> Result<Option<FirmwareRecord>> {
        self.get(T::Firmware, &firmware_key(model, version))
    }
    fn firmwares(&self, model: &str) -> Result<Vec<FirmwareRecord>> {
        self.scan(T::Firmware, &[model.as_bytes(), b"\0"].concat())
    }
}

impl NonceStore for SledStore {
    fn put_nonce(&self, nonce: &NonceRecord) -> Result<()> {
        self.nonces.insert(&nonce.nonce, encode(nonce)?)?;
        self.sync()
    }
    fn take_nonce(&self, nonce: &[u8]) -> Result<Option<NonceRecord>> {
        let taken = self.nonces.remove(nonce)?;
        self.sync()?;
        taken.map(|v| decode("nonces", &v)).transpose()
    }
}

impl CounterStore for SledStore {
    fn counter(&self, key: &str) -> Result<u64> {
        Ok(self
            .tree(T::Counters)
            .get(key.as_bytes())?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0))
    }
}

impl AuditLog for SledStore {
    fn audit_records(&self) -> Result<Vec<AuditRecord>> {
        self.all(T::Audit)
    }
    fn audit_head(&self) -> Result<Option<AuditHead>> {
        self.get(T::Meta, HEAD_KEY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;

    fn open(dir: &Path) -> SledStore {
        SledStore::open(
            dir,
            Some(Zeroizing::new(b"k".repeat(32))),
            Arc::new(SystemClock),
        )
        .unwrap()
    }

    #[test]
    fn sled_store_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        super::super::conformance::run_all(&store, b"k".repeat(32).as_slice());
    }

    #[test]
    fn committed_records_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = open(dir.path());
            s.commit(
                vec![Write::PutStation(super::super::conformance::station(
                    "st-1",
                ))],
                AuditEvent::new("t", "station.add", "st-1"),
            )
            .unwrap();
        }
        let s = open(dir.path());
        assert!(s.station("st-1").unwrap().is_some());
        assert_eq!(s.audit_records().unwrap().len(), 1);
    }

    #[test]
    fn read_only_store_refuses_writes() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path(), None, Arc::new(SystemClock)).unwrap();
        assert!(matches!(
            s.commit(vec![], AuditEvent::new("t", "x", "y")),
            Err(Error::ReadOnly)
        ));
    }
}
