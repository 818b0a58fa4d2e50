//! The embedded default store on sled 0.34: one tree per table, a version
//! byte in every record, every change in one sled transaction, made durable
//! by the write-ahead journal (`journal.rs`) before it is acknowledged:
//! concurrent commits share one fdatasync of the journal (group commit).
//! sled itself is flushed — and its data file fdatasync'ed, since sled's own
//! flush uses sync_file_range, which does not survive power loss — at
//! checkpoints and on open, after replaying the journal.
use std::cell::RefCell;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::Serialize;
use serde::de::DeserializeOwned;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::{Transactional, Tree};
use zeroize::Zeroizing;

use super::group_sync::GroupSync;
use super::journal::{Entry, Journal, Op};
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

/// Journal sequence number of the last change applied (in the meta tree).
const SEQ_KEY: &[u8] = b"journal_seq";
/// A checkpoint flushes sled and empties the journal past this size.
const CHECKPOINT_BYTES: u64 = 64 * 1024 * 1024;

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
    Nonces,
}

const TREE_NAMES: [&str; 12] = [
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
    "nonces",
];

/// A sled database holding every Hallmark table.
pub struct SledStore {
    db: sled::Db,
    trees: Vec<Tree>,
    data_file: File,
    path: PathBuf,
    audit_key: Option<Zeroizing<Vec<u8>>>,
    clock: Arc<dyn Clock>,
    group: GroupSync,
    /// Changes run their transactions one at a time (every commit updates
    /// the audit head, so concurrent ones would only conflict and retry) and
    /// append to the journal in that order. The fdatasync that makes them
    /// durable is shared (`group`, through `journal_sync`).
    writer: Mutex<Writer>,
    journal_sync: File,
}

struct Writer {
    journal: Journal,
    next_seq: u64,
}

/// The trees of one transaction, recording every operation for the journal.
struct Recorder<'a> {
    trees: &'a [TransactionalTree],
    ops: RefCell<Vec<Op>>,
}

type TxResult<V> = std::result::Result<V, ConflictableTransactionError<Error>>;

impl Recorder<'_> {
    fn get(&self, t: T, key: impl AsRef<[u8]>) -> TxResult<Option<sled::IVec>> {
        Ok(self.trees[t as usize].get(key.as_ref())?)
    }

    fn insert(&self, t: T, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> TxResult<()> {
        let (key, value) = (key.as_ref(), value.as_ref());
        self.trees[t as usize].insert(key, value)?;
        self.ops.borrow_mut().push(Op {
            tree: t as u8,
            key: key.to_vec(),
            value: Some(value.to_vec()),
        });
        Ok(())
    }

    fn remove(&self, t: T, key: impl AsRef<[u8]>) -> TxResult<Option<sled::IVec>> {
        let key = key.as_ref();
        let old = self.trees[t as usize].remove(key)?;
        self.ops.borrow_mut().push(Op {
            tree: t as u8,
            key: key.to_vec(),
            value: None,
        });
        Ok(old)
    }
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

fn tx_error(e: TransactionError<Error>) -> Error {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => Error::Store(e),
    }
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
        let db = sled::Config::new()
            .path(path)
            .mode(sled::Mode::HighThroughput)
            .flush_every_ms(None)
            .open()
            .map_err(|e| match e {
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
        let data_path = path.join("db");
        let data_file = File::open(&data_path).map_err(|e| Error::io(&data_path, e))?;
        let (journal, entries) = Journal::open(&path.join("journal"))?;
        let journal_sync = journal.syncer()?;
        let store = SledStore {
            db,
            trees,
            data_file,
            path: path.to_path_buf(),
            audit_key,
            clock,
            group: GroupSync::default(),
            writer: Mutex::new(Writer {
                journal,
                next_seq: 0,
            }),
            journal_sync,
        };
        store.recover(entries)?;
        Ok(store)
    }

    /// Replays journal entries sled lost in a crash (those past its own
    /// sequence number), then checkpoints.
    fn recover(&self, entries: Vec<Entry>) -> Result<()> {
        let applied = self.applied_seq()?;
        let refs: Vec<&Tree> = self.trees.iter().collect();
        let mut last = applied;
        for e in entries.into_iter().filter(|e| e.seq > applied) {
            refs.as_slice()
                .transaction(|trees| {
                    for op in &e.ops {
                        let tree = trees.get(op.tree as usize).ok_or_else(|| {
                            ConflictableTransactionError::Abort(Error::CorruptRecord {
                                tree: "journal",
                                detail: format!("unknown tree {}", op.tree),
                            })
                        })?;
                        match &op.value {
                            Some(v) => tree.insert(op.key.as_slice(), v.as_slice())?,
                            None => tree.remove(op.key.as_slice())?,
                        };
                    }
                    trees[T::Meta as usize].insert(SEQ_KEY, &e.seq.to_be_bytes())?;
                    Ok(())
                })
                .map_err(tx_error)?;
            last = e.seq;
        }
        let mut w = self.lock_writer();
        w.next_seq = last + 1;
        self.checkpoint(&mut w)
    }

    fn applied_seq(&self) -> Result<u64> {
        Ok(self
            .tree(T::Meta)
            .get(SEQ_KEY)?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0))
    }

    fn lock_writer(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Flushes sled and fdatasyncs its data file, then empties the journal.
    fn checkpoint(&self, w: &mut Writer) -> Result<()> {
        self.db.flush()?;
        self.data_file
            .sync_data()
            .map_err(|e| Error::io(self.path.join("db"), e))?;
        w.journal.reset()
    }

    /// Runs `f` in one transaction over every tree, journals what it did and
    /// returns once that is durable.
    fn change<R>(&self, f: impl Fn(&Recorder) -> TxResult<R>) -> Result<R> {
        let refs: Vec<&Tree> = self.trees.iter().collect();
        let mut w = self.lock_writer();
        let seq = w.next_seq;
        let (result, ops) = refs
            .as_slice()
            .transaction(|trees| {
                let rec = Recorder {
                    trees,
                    ops: RefCell::new(vec![]),
                };
                let r = f(&rec)?;
                trees[T::Meta as usize].insert(SEQ_KEY, &seq.to_be_bytes())?;
                Ok((r, rec.ops.into_inner()))
            })
            .map_err(tx_error)?;
        w.journal.append(&Entry { seq, ops })?;
        w.next_seq += 1;
        if w.journal.len() > CHECKPOINT_BYTES {
            self.checkpoint(&mut w)?;
        }
        let ticket = self.group.ticket();
        drop(w);
        self.group.wait(ticket, || {
            self.journal_sync
                .sync_data()
                .map_err(|e| Error::io(self.path.join("journal"), e))
        })?;
        Ok(result)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn tree(&self, t: T) -> &Tree {
        &self.trees[t as usize]
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

fn apply(tx: &Recorder, w: &Write) -> TxResult<()> {
    match w {
        Write::InsertCert(c) => {
            let key = c.serial.as_bytes();
            if tx.get(T::Certs, key)?.is_some() {
                return abort(Error::AlreadyExists {
                    what: "certificate serial",
                    id: c.serial.to_string(),
                });
            }
            tx.insert(T::Certs, key, enc(c)?)?;
        }
        Write::InsertDevice(d) => {
            if tx.get(T::Devices, d.device_id.as_bytes())?.is_some() {
                return abort(Error::AlreadyExists {
                    what: "device ID",
                    id: d.device_id.clone(),
                });
            }
            let ik = index_key(&d.model, &d.hardware_serial);
            if tx.get(T::DeviceIndex, &ik)?.is_some() {
                return abort(Error::AlreadyExists {
                    what: "hardware serial",
                    id: format!("{}/{}", d.model, d.hardware_serial),
                });
            }
            tx.insert(T::DeviceIndex, ik, d.device_id.as_bytes())?;
            tx.insert(T::Devices, d.device_id.as_bytes(), enc(d)?)?;
        }
        Write::UpdateDevice(d) => {
            if tx.get(T::Devices, d.device_id.as_bytes())?.is_none() {
                return abort(Error::NotFound {
                    what: "device",
                    id: d.device_id.clone(),
                });
            }
            tx.insert(T::Devices, d.device_id.as_bytes(), enc(d)?)?;
        }
        Write::PutStation(s) => {
            tx.insert(T::Stations, s.station_id.as_bytes(), enc(s)?)?;
        }
        Write::PutRevocation(r) => {
            tx.insert(T::Revocations, r.serial.as_bytes(), enc(r)?)?;
        }
        Write::RemoveRevocation(s) => {
            tx.remove(T::Revocations, s.as_bytes())?;
        }
        Write::PutModel(m) => {
            tx.insert(T::Models, m.name.as_bytes(), enc(m)?)?;
        }
        Write::PutFirmware(f) => {
            tx.insert(T::Firmware, firmware_key(&f.model, &f.version), enc(f)?)?;
        }
        Write::InsertSetupCodeIndex(k) => {
            if tx.get(T::SetupCodes, k.as_bytes())?.is_some() {
                return abort(Error::AlreadyExists {
                    what: "setup code",
                    id: "(redacted)".into(),
                });
            }
            tx.insert(T::SetupCodes, k.as_bytes(), [1u8])?;
        }
        Write::ChargeQuota { key, limit } => {
            let used = tx
                .get(T::Counters, key.as_bytes())?
                .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            if used >= *limit {
                return abort(Error::QuotaExceeded(format!(
                    "quota {key} of {limit} is used up"
                )));
            }
            tx.insert(T::Counters, key.as_bytes(), (used + 1).to_be_bytes())?;
        }
    }
    Ok(())
}

impl Commit for SledStore {
    fn commit(&self, writes: Vec<Write>, event: AuditEvent) -> Result<AuditRecord> {
        let key = self.audit_key.as_ref().ok_or(Error::ReadOnly)?;
        let at = self.clock.now().unix_timestamp();
        self.change(|tx| {
            for w in &writes {
                apply(tx, w)?;
            }
            let head: Option<AuditHead> = match tx.get(T::Meta, HEAD_KEY)? {
                Some(b) => Some(decode("meta", &b).map_err(ConflictableTransactionError::Abort)?),
                None => None,
            };
            let rec = audit::next_record(head.as_ref(), at, event.clone())
                .map_err(ConflictableTransactionError::Abort)?;
            let sealed = audit::seal_head(key, &rec);
            tx.insert(T::Audit, rec.seq.to_be_bytes(), enc(&rec)?)?;
            tx.insert(T::Meta, HEAD_KEY, &enc(&sealed)?)?;
            Ok(rec)
        })
    }

    fn durability_stats(&self) -> (u64, u64) {
        self.group.stats()
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
        let value = encode(nonce)?;
        self.change(|tx| tx.insert(T::Nonces, &nonce.nonce, &value))
    }
    fn take_nonce(&self, nonce: &[u8]) -> Result<Option<NonceRecord>> {
        if self.tree(T::Nonces).get(nonce)?.is_none() {
            return Ok(None);
        }
        let taken = self.change(|tx| tx.remove(T::Nonces, nonce))?;
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

    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let p = e.unwrap().path();
            let dest = to.join(p.file_name().unwrap());
            if p.is_dir() {
                copy_dir(&p, &dest);
            } else {
                std::fs::copy(&p, &dest).unwrap();
            }
        }
    }

    #[test]
    fn changes_sled_lost_are_replayed_from_the_journal() {
        use super::super::conformance::station;
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("live");
        let snapshot = dir.path().join("snapshot");
        {
            let s = open(&live);
            s.commit(
                vec![Write::PutStation(station("st-1"))],
                AuditEvent::new("t", "station.add", "st-1"),
            )
            .unwrap();
        }
        // sled as a crash could leave it: an older state than the journal.
        copy_dir(&live, &snapshot);
        {
            let s = open(&live);
            for id in ["st-2", "st-3"] {
                s.commit(
                    vec![Write::PutStation(station(id))],
                    AuditEvent::new("t", "station.add", id),
                )
                .unwrap();
            }
            s.put_nonce(&NonceRecord {
                nonce: vec![7; 32],
                device_id: "d".into(),
                expires_at: 1,
            })
            .unwrap();
            // Keep the journal (the snapshot has none past st-1) and stop
            // without a checkpoint, as a crash would.
            std::fs::copy(live.join("journal"), snapshot.join("journal")).unwrap();
        }
        let s = open(&snapshot);
        for id in ["st-1", "st-2", "st-3"] {
            assert!(s.station(id).unwrap().is_some(), "{id} lost");
        }
        assert!(s.take_nonce(&[7; 32]).unwrap().is_some(), "nonce lost");
        let records = s.audit_records().unwrap();
        assert_eq!(records.len(), 3);
        crate::audit::verify(
            &records,
            s.audit_head().unwrap().as_ref(),
            b"k".repeat(32).as_slice(),
        )
        .unwrap();
        // Replayed once: reopening changes nothing more, and new commits
        // continue the same chain.
        drop(s);
        let s = open(&snapshot);
        assert_eq!(s.audit_records().unwrap().len(), 3);
        s.commit(
            vec![Write::PutStation(station("st-4"))],
            AuditEvent::new("t", "station.add", "st-4"),
        )
        .unwrap();
        let records = s.audit_records().unwrap();
        crate::audit::verify(
            &records,
            s.audit_head().unwrap().as_ref(),
            b"k".repeat(32).as_slice(),
        )
        .unwrap();
        assert!(
            s.take_nonce(&[7; 32]).unwrap().is_none(),
            "a nonce was taken twice"
        );
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
