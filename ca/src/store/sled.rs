//! The embedded default store on sled 0.34: one tree per table, a version
//! byte in every record. Writers go through a group commit
//! (`group_commit.rs`): the leader checks a whole batch of changes against
//! sled and the batch's earlier changes (keys a writer inserts it has looked
//! up itself; the leader checks those only against the batches applied
//! since), appends their physical operations
//! to the write-ahead journal (`journal.rs`) and fdatasyncs it once, then
//! applies the batch to sled in one transaction, and only then answers. So
//! nothing is visible or acknowledged before it is durable, and one
//! fdatasync covers every change that arrived while the previous batch ran.
//! sled itself is flushed — and its data file fdatasync'ed, since sled's own
//! flush uses sync_file_range, which does not survive power loss — at
//! checkpoints and on open, after replaying the journal.
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::Serialize;
use serde::de::DeserializeOwned;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::{Transactional, Tree};
use zeroize::Zeroizing;

use super::group_commit::GroupCommit;
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

/// Records are CBOR after this version byte.
const VERSION: u8 = 2;
/// Records written by earlier builds: JSON. Still read, never written.
const VERSION_JSON: u8 = 1;
const HEAD_KEY: &[u8] = b"audit_head";

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
    /// Audit record numbers by event subject: `subject \0 seq`, no value.
    AuditBySubject,
}

const TREE_NAMES: [&str; 13] = [
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
    "audit_by_subject",
];

/// One writer's change, queued for the group commit.
enum Change {
    /// Writes and their audit record, stamped `at`.
    Commit {
        writes: Vec<Prepared>,
        event: AuditEvent,
        at: i64,
    },
    PutNonce {
        nonce: Vec<u8>,
        record: Vec<u8>,
    },
    TakeNonce(Vec<u8>),
}

/// What a change gives back.
enum Outcome {
    Audit(AuditRecord),
    Stored,
    Taken(Option<Vec<u8>>),
}

/// The final value of every key a batch writes, per tree (None: removed).
type Overlay = Vec<HashMap<Vec<u8>, Option<Vec<u8>>>>;

/// A sled database holding every Hallmark table.
pub struct SledStore {
    db: sled::Db,
    trees: Vec<Tree>,
    data_file: File,
    path: PathBuf,
    audit_key: Option<Zeroizing<Vec<u8>>>,
    clock: Arc<dyn Clock>,
    group: GroupCommit<Change, Result<Outcome>>,
    /// The journal; locked by the group commit's leader only.
    writer: Mutex<Writer>,
    /// A journal write, flush or apply failed: the store refuses every read
    /// and change until it is reopened (and its journal replayed), rather
    /// than guess what reached the disk.
    failed: AtomicBool,
    /// Batches applied to sled since open. A writer reads it before it looks
    /// up the keys it inserts, so the leader need only check those keys
    /// against the batches applied since (kept in [`Writer::recent`]).
    batches_applied: AtomicU64,
    /// Batches applied that changed a revocation or a station.
    revocation_epoch: AtomicU64,
    /// Changes made durable, and journal flushes: the batching achieved.
    durable: AtomicU64,
    flushes: AtomicU64,
}

struct Writer {
    journal: Journal,
    next_seq: u64,
    /// What the last few batches applied to sled wrote, newest last, by
    /// batch number (see [`SledStore::batches_applied`]).
    recent: VecDeque<(u64, Overlay)>,
}

/// Batches whose writes stay in [`Writer::recent`] after they are applied.
const RECENT_BATCHES: usize = 8;

/// One change being checked inside its batch: reads see the change's own
/// writes, then the batch's earlier changes, then sled; writes are recorded
/// as physical operations for the journal.
struct Recorder<'a> {
    trees: &'a [Tree],
    batch: &'a Overlay,
    recent: &'a VecDeque<(u64, Overlay)>,
    /// Batches applied to sled so far.
    applied: u64,
    ops: Vec<Op>,
}

impl Recorder<'_> {
    /// The key's value as this change and the batch's earlier ones left it,
    /// if they wrote it.
    fn written(&self, t: T, key: &[u8]) -> Option<Option<Vec<u8>>> {
        let tree = t as u8;
        if let Some(op) = self
            .ops
            .iter()
            .rev()
            .find(|op| op.tree == tree && op.key == key)
        {
            return Some(op.value.clone());
        }
        self.batch[t as usize].get(key).cloned()
    }

    fn get(&self, t: T, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>> {
        let key = key.as_ref();
        match self.written(t, key) {
            Some(v) => Ok(v),
            None => Ok(self.trees[t as usize].get(key)?.map(|v| v.to_vec())),
        }
    }

    /// Whether the key exists. `absent_after`: its writer found it absent in
    /// sled once that many batches were applied, so unless the batches
    /// applied since have left [`Writer::recent`], only they are looked at.
    fn exists(&self, t: T, key: &[u8], absent_after: Option<u64>) -> Result<bool> {
        if let Some(v) = self.written(t, key) {
            return Ok(v.is_some());
        }
        if let Some(seen) = absent_after {
            let since = || self.recent.iter().filter(move |(n, _)| *n > seen);
            if self.applied.checked_sub(seen) == Some(since().count() as u64) {
                return Ok(since().any(|(_, o)| matches!(o[t as usize].get(key), Some(Some(_)))));
            }
        }
        Ok(self.trees[t as usize].get(key)?.is_some())
    }

    fn insert(&mut self, t: T, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push(Op {
            tree: t as u8,
            key: key.into(),
            value: Some(value.into()),
        });
    }

    fn remove(&mut self, t: T, key: Vec<u8>) -> Result<Option<Vec<u8>>> {
        let old = self.get(t, &key)?;
        self.ops.push(Op {
            tree: t as u8,
            key,
            value: None,
        });
        Ok(old)
    }
}

fn encode<V: Serialize>(v: &V) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(512);
    out.push(VERSION);
    ciborium::into_writer(v, &mut out).map_err(|e| Error::CorruptRecord {
        tree: "encode",
        detail: e.to_string(),
    })?;
    Ok(out)
}

fn decode<V: DeserializeOwned>(tree: &'static str, bytes: &[u8]) -> Result<V> {
    let corrupt = |detail: String| Error::CorruptRecord { tree, detail };
    match bytes.split_first() {
        Some((&VERSION, rest)) => ciborium::from_reader(rest).map_err(|e| corrupt(e.to_string())),
        Some((&VERSION_JSON, rest)) => {
            serde_json::from_slice(rest).map_err(|e| corrupt(e.to_string()))
        }
        Some((v, _)) => Err(corrupt(format!("unknown record version {v}"))),
        None => Err(corrupt("empty record".into())),
    }
}

/// A two-part key: `first`, a NUL, then `rest`; with `rest` empty, the
/// prefix of every key under `first` (hardware-serial index, firmware,
/// audit index by subject).
fn nul_key(first: &str, rest: &[u8]) -> Vec<u8> {
    [first.as_bytes(), b"\0", rest].concat()
}

fn tx_error(e: TransactionError<Error>) -> Error {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => Error::Store(e),
    }
}

fn empty_overlay() -> Overlay {
    vec![HashMap::new(); TREE_NAMES.len()]
}

/// Folds a change's operations into the batch's final values.
fn fold(batch: &mut Overlay, ops: Vec<Op>) -> Result<()> {
    for op in ops {
        let tree = batch
            .get_mut(op.tree as usize)
            .ok_or_else(|| Error::CorruptRecord {
                tree: "journal",
                detail: format!("unknown tree {}", op.tree),
            })?;
        tree.insert(op.key, op.value);
    }
    Ok(())
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
        let store = SledStore {
            db,
            trees,
            data_file,
            path: path.to_path_buf(),
            audit_key,
            clock,
            group: GroupCommit::default(),
            writer: Mutex::new(Writer {
                journal,
                next_seq: 0,
                recent: VecDeque::new(),
            }),
            batches_applied: AtomicU64::new(0),
            revocation_epoch: AtomicU64::new(0),
            failed: AtomicBool::new(false),
            durable: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
        };
        store.recover(entries)?;
        store.index_audit_subjects()?;
        Ok(store)
    }

    /// Builds the audit index by subject for a log written before it
    /// existed (the index is derived data: rebuilding it is harmless).
    fn index_audit_subjects(&self) -> Result<()> {
        let index = self.tree(T::AuditBySubject);
        let audit = self.tree(T::Audit);
        if !index.is_empty() || audit.is_empty() {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for kv in audit.iter() {
            let (_, v) = kv?;
            let r: AuditRecord = decode("audit", &v)?;
            batch.insert(nul_key(&r.event.subject, &r.seq.to_be_bytes()), Vec::new());
        }
        index.apply_batch(batch)?;
        let mut w = self.lock_writer();
        self.checkpoint(&mut w)
    }

    /// Replays every change journaled since the last checkpoint, then
    /// checkpoints. Each operation writes a whole value or removes a key,
    /// and only journaled changes ever reach sled, so replaying changes sled
    /// already holds is harmless and the result is the journaled state.
    fn recover(&self, entries: Vec<Entry>) -> Result<()> {
        let mut batch = empty_overlay();
        let next_seq = entries.last().map_or(0, |e| e.seq + 1);
        for e in entries {
            fold(&mut batch, e.ops)?;
        }
        self.apply_to_sled(&batch)?;
        let mut w = self.lock_writer();
        w.next_seq = next_seq;
        self.checkpoint(&mut w)
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

    /// Applies a batch's final values to sled in one transaction over the
    /// trees it touches, so a reader sees each change whole or not at all.
    fn apply_to_sled(&self, batch: &Overlay) -> Result<()> {
        let touched: Vec<usize> = (0..batch.len()).filter(|&t| !batch[t].is_empty()).collect();
        if touched.is_empty() {
            return Ok(());
        }
        let trees: Vec<&Tree> = touched.iter().map(|&t| &self.trees[t]).collect();
        trees
            .as_slice()
            .transaction(|tx| {
                for (tree, &t) in tx.iter().zip(&touched) {
                    for (key, value) in &batch[t] {
                        match value {
                            Some(v) => tree.insert(key.as_slice(), v.as_slice())?,
                            None => tree.remove(key.as_slice())?,
                        };
                    }
                }
                Ok::<_, ConflictableTransactionError<Error>>(())
            })
            .map_err(tx_error)
    }

    /// Queues `change` for the group commit and returns its outcome once it
    /// is durable and visible.
    fn change(&self, change: Change) -> Result<Outcome> {
        self.group
            .submit(change, |batch| self.run_batch(batch))
            .map_err(|_| Error::StoreFailed("the commit leader failed".into()))?
    }

    fn refuse_if_failed(&self) -> Result<()> {
        if self.failed.load(Ordering::Acquire) {
            return Err(Error::StoreFailed(
                "a journal write or flush failed earlier".into(),
            ));
        }
        Ok(())
    }

    /// Marks the store failed, so it refuses everything until reopened, and
    /// turns the batch's outcomes into that refusal.
    fn fail(&self, e: &Error, outcomes: Vec<Result<Outcome>>) -> Vec<Result<Outcome>> {
        self.failed.store(true, Ordering::Release);
        tracing::error!(error = %e, "store write failed; refusing changes until reopened");
        let msg = e.to_string();
        outcomes
            .into_iter()
            .map(|o| o.and(Err(Error::StoreFailed(msg.clone()))))
            .collect()
    }

    /// Checks every change of a batch in arrival order, journals and
    /// fdatasyncs those that pass in one write, applies them to sled, and
    /// returns one outcome per change. A refused change writes nothing.
    fn run_batch(&self, changes: Vec<Change>) -> Vec<Result<Outcome>> {
        let mut w = self.lock_writer();
        let start = self.refuse_if_failed().and_then(|()| {
            if w.journal.len() > CHECKPOINT_BYTES {
                self.checkpoint(&mut w)
            } else {
                Ok(())
            }
        });
        if let Err(e) = start {
            return self.fail(&e, changes.iter().map(|_| Ok(Outcome::Stored)).collect());
        }
        let mut batch = empty_overlay();
        // Each change that passes is framed for the journal, then its
        // operations move into the batch.
        let mut frames = vec![];
        let mut written = 0u64;
        let mut outcomes = Vec::with_capacity(changes.len());
        let applied = self.batches_applied.load(Ordering::Acquire);
        for change in changes {
            let mut rec = Recorder {
                trees: &self.trees,
                batch: &batch,
                recent: &w.recent,
                applied,
                ops: vec![],
            };
            let outcome = self.check(&mut rec, change);
            let ops = rec.ops;
            outcomes.push(match outcome {
                Ok(o) if !ops.is_empty() => {
                    let entry = Entry {
                        seq: w.next_seq,
                        ops,
                    };
                    w.journal.encode(&entry, &mut frames);
                    w.next_seq += 1;
                    written += 1;
                    fold(&mut batch, entry.ops).map(|()| o)
                }
                other => other,
            });
        }
        if written == 0 {
            return outcomes;
        }
        let durable = w
            .journal
            .append_frames(&frames)
            .and_then(|()| w.journal.sync())
            .and_then(|()| self.apply_to_sled(&batch));
        match durable {
            Ok(()) => {
                if !batch[T::Revocations as usize].is_empty()
                    || !batch[T::Stations as usize].is_empty()
                {
                    self.revocation_epoch.fetch_add(1, Ordering::AcqRel);
                }
                w.recent.push_back((applied + 1, batch));
                if w.recent.len() > RECENT_BATCHES {
                    w.recent.pop_front();
                }
                self.batches_applied.store(applied + 1, Ordering::Release);
                self.durable.fetch_add(written, Ordering::Relaxed);
                self.flushes.fetch_add(1, Ordering::Relaxed);
                outcomes
            }
            Err(e) => self.fail(&e, outcomes),
        }
    }

    /// Checks one change against the store as the batch has left it, and
    /// records its operations.
    fn check(&self, rec: &mut Recorder, change: Change) -> Result<Outcome> {
        match change {
            Change::Commit { writes, event, at } => {
                let key = self.audit_key.as_ref().ok_or(Error::ReadOnly)?;
                for w in writes {
                    apply(rec, w)?;
                }
                let head: Option<AuditHead> = rec
                    .get(T::Meta, HEAD_KEY)?
                    .map(|b| decode("meta", &b))
                    .transpose()?;
                let record = audit::next_record(head.as_ref(), at, event)?;
                let sealed = audit::seal_head(key, &record);
                rec.insert(T::Audit, record.seq.to_be_bytes(), encode(&record)?);
                rec.insert(
                    T::AuditBySubject,
                    nul_key(&record.event.subject, &record.seq.to_be_bytes()),
                    Vec::new(),
                );
                rec.insert(T::Meta, HEAD_KEY, encode(&sealed)?);
                Ok(Outcome::Audit(record))
            }
            Change::PutNonce { nonce, record } => {
                rec.insert(T::Nonces, nonce, record);
                Ok(Outcome::Stored)
            }
            Change::TakeNonce(nonce) => Ok(Outcome::Taken(rec.remove(T::Nonces, nonce)?)),
        }
    }

    /// Looks up the keys a change inserts in the writer's own thread: one
    /// already taken refuses the change before it queues; the others are
    /// marked absent as of now, so the leader checks them only against what
    /// was applied since.
    fn look_up_inserts(&self, prepared: &mut [Prepared]) -> Result<()> {
        let seen = self.batches_applied.load(Ordering::Acquire);
        for p in prepared {
            if let Prepared::Checked {
                exists: false,
                tree,
                key,
                what,
                id,
                absent_after,
                ..
            } = p
            {
                if self.raw(*tree, key)?.is_some() {
                    return Err(Error::AlreadyExists {
                        what,
                        id: std::mem::take(id),
                    });
                }
                *absent_after = Some(seen);
            }
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn tree(&self, t: T) -> &Tree {
        &self.trees[t as usize]
    }

    fn raw(&self, t: T, key: &[u8]) -> Result<Option<sled::IVec>> {
        self.refuse_if_failed()?;
        Ok(self.tree(t).get(key)?)
    }

    fn get<V: DeserializeOwned>(&self, t: T, key: &[u8]) -> Result<Option<V>> {
        self.raw(t, key)?
            .map(|v| decode(TREE_NAMES[t as usize], &v))
            .transpose()
    }

    fn all<V: DeserializeOwned>(&self, t: T) -> Result<Vec<V>> {
        self.scan(t, b"")
    }

    fn scan<V: DeserializeOwned>(&self, t: T, prefix: &[u8]) -> Result<Vec<V>> {
        self.refuse_if_failed()?;
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

/// A clean close checkpoints, so the next open has no journal to replay
/// (after a crash it replays at most [`CHECKPOINT_BYTES`] of it).
impl Drop for SledStore {
    fn drop(&mut self) {
        if self.failed.load(Ordering::Acquire) {
            return;
        }
        let mut w = self.lock_writer();
        if !w.journal.is_empty()
            && let Err(e) = self.checkpoint(&mut w)
        {
            tracing::warn!(error = %e, "checkpoint at close failed; the journal is replayed at next open");
        }
    }
}

fn counter_value(v: Option<&[u8]>) -> u64 {
    v.and_then(|v| <[u8; 8]>::try_from(v).ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

/// A write with its keys and value encoded by the writer's own thread, so
/// the commit leader only checks and records it.
enum Prepared {
    /// Written if `key` is absent and `exists` is false (an insert, else
    /// AlreadyExists `what`/`id`), or present and `exists` is true (an
    /// update, else NotFound `what`/`id`).
    Checked {
        tree: T,
        key: Vec<u8>,
        value: Vec<u8>,
        exists: bool,
        what: &'static str,
        id: String,
        /// Set by the writer's own look-up (see [`Recorder::exists`]).
        absent_after: Option<u64>,
    },
    Put {
        tree: T,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Remove {
        tree: T,
        key: Vec<u8>,
    },
    /// Adds one to the counter; refused (QuotaExceeded) past `limit`.
    Charge {
        key: String,
        limit: u64,
    },
}

/// Encodes one write into what the leader checks and records.
fn prepare(w: &Write, out: &mut Vec<Prepared>) -> Result<()> {
    let put = |tree, key: &[u8], value| Prepared::Put {
        tree,
        key: key.to_vec(),
        value,
    };
    // An insert (`exists` false) or an update (true) of `key`.
    let checked = |exists, tree, key: Vec<u8>, value, what, id| Prepared::Checked {
        tree,
        key,
        value,
        exists,
        what,
        id,
        absent_after: None,
    };
    match w {
        Write::InsertCert(c) => out.push(checked(
            false,
            T::Certs,
            c.serial.as_bytes().to_vec(),
            encode(c)?,
            "certificate serial",
            c.serial.to_string(),
        )),
        Write::InsertDevice(d) => {
            out.push(checked(
                false,
                T::Devices,
                d.device_id.as_bytes().to_vec(),
                encode(d)?,
                "device ID",
                d.device_id.clone(),
            ));
            out.push(checked(
                false,
                T::DeviceIndex,
                nul_key(&d.model, d.hardware_serial.as_bytes()),
                d.device_id.as_bytes().to_vec(),
                "hardware serial",
                format!("{}/{}", d.model, d.hardware_serial),
            ));
        }
        Write::UpdateDevice(d) => out.push(checked(
            true,
            T::Devices,
            d.device_id.as_bytes().to_vec(),
            encode(d)?,
            "device",
            d.device_id.clone(),
        )),
        Write::PutStation(st) => out.push(put(T::Stations, st.station_id.as_bytes(), encode(st)?)),
        Write::PutRevocation(r) => out.push(put(T::Revocations, r.serial.as_bytes(), encode(r)?)),
        Write::RemoveRevocation(serial) => out.push(Prepared::Remove {
            tree: T::Revocations,
            key: serial.as_bytes().to_vec(),
        }),
        Write::PutModel(m) => out.push(put(T::Models, m.name.as_bytes(), encode(m)?)),
        Write::PutFirmware(f) => out.push(put(
            T::Firmware,
            &nul_key(&f.model, f.version.as_bytes()),
            encode(f)?,
        )),
        Write::InsertSetupCodeIndex(k) => out.push(checked(
            false,
            T::SetupCodes,
            k.as_bytes().to_vec(),
            vec![1],
            "setup code",
            "(redacted)".into(),
        )),
        Write::ChargeQuota { key, limit } => out.push(Prepared::Charge {
            key: key.clone(),
            limit: *limit,
        }),
    }
    Ok(())
}

/// Checks one prepared write against the store as the batch has left it,
/// and records it; refuses what the write's rule forbids.
fn apply(rec: &mut Recorder, p: Prepared) -> Result<()> {
    match p {
        Prepared::Checked {
            tree,
            key,
            value,
            exists,
            what,
            id,
            absent_after,
        } => match (rec.exists(tree, &key, absent_after)?, exists) {
            (true, false) => return Err(Error::AlreadyExists { what, id }),
            (false, true) => return Err(Error::NotFound { what, id }),
            _ => rec.insert(tree, key, value),
        },
        Prepared::Put { tree, key, value } => rec.insert(tree, key, value),
        Prepared::Remove { tree, key } => {
            rec.remove(tree, key)?;
        }
        Prepared::Charge { key, limit } => {
            let used = counter_value(rec.get(T::Counters, key.as_bytes())?.as_deref());
            if used >= limit {
                return Err(Error::QuotaExceeded(format!(
                    "quota {key} of {limit} is used up"
                )));
            }
            rec.insert(T::Counters, key.as_bytes(), (used + 1).to_be_bytes());
        }
    }
    Ok(())
}

impl Commit for SledStore {
    fn commit(&self, writes: Vec<Write>, event: AuditEvent) -> Result<AuditRecord> {
        if self.audit_key.is_none() {
            return Err(Error::ReadOnly);
        }
        let at = self.clock.now().unix_timestamp();
        let mut prepared = Vec::with_capacity(writes.len() + 1);
        for w in &writes {
            prepare(w, &mut prepared)?;
        }
        self.look_up_inserts(&mut prepared)?;
        let change = Change::Commit {
            writes: prepared,
            event,
            at,
        };
        match self.change(change)? {
            Outcome::Audit(record) => Ok(record),
            _ => Err(Error::StoreFailed("commit without its audit record".into())),
        }
    }

    fn durability_stats(&self) -> (u64, u64) {
        (
            self.durable.load(Ordering::Relaxed),
            self.flushes.load(Ordering::Relaxed),
        )
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
    fn revocation_epoch(&self) -> Option<u64> {
        Some(self.revocation_epoch.load(Ordering::Acquire))
    }
}

impl DeviceStore for SledStore {
    fn device(&self, device_id: &str) -> Result<Option<DeviceRecord>> {
        self.get(T::Devices, device_id.as_bytes())
    }
    fn device_by_hardware_serial(&self, model: &str, serial: &str) -> Result<Option<DeviceRecord>> {
        match self.raw(T::DeviceIndex, &nul_key(model, serial.as_bytes()))? {
            Some(id) => self.get(T::Devices, &id),
            None => Ok(None),
        }
    }
    fn devices(&self) -> Result<Vec<DeviceRecord>> {
        self.all(T::Devices)
    }
    fn devices_after(
        &self,
        after: Option<&str>,
        limit: usize,
        keep: &dyn Fn(&DeviceRecord) -> bool,
    ) -> Result<Vec<DeviceRecord>> {
        use std::ops::Bound;
        self.refuse_if_failed()?;
        let from = after.map_or(Bound::Unbounded, |a| Bound::Excluded(a.as_bytes()));
        let mut page = Vec::new();
        for kv in self
            .tree(T::Devices)
            .range::<&[u8], _>((from, Bound::Unbounded))
        {
            if page.len() >= limit {
                break;
            }
            let (_, v) = kv?;
            let d: DeviceRecord = decode("devices", &v)?;
            if keep(&d) {
                page.push(d);
            }
        }
        Ok(page)
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
        self.get(T::Firmware, &nul_key(model, version.as_bytes()))
    }
    fn firmwares(&self, model: &str) -> Result<Vec<FirmwareRecord>> {
        self.scan(T::Firmware, &nul_key(model, b""))
    }
}

impl NonceStore for SledStore {
    fn put_nonce(&self, nonce: &NonceRecord) -> Result<()> {
        let change = Change::PutNonce {
            nonce: nonce.nonce.clone(),
            record: encode(nonce)?,
        };
        self.change(change).map(|_| ())
    }
    fn take_nonce(&self, nonce: &[u8]) -> Result<Option<NonceRecord>> {
        if self.raw(T::Nonces, nonce)?.is_none() {
            return Ok(None);
        }
        match self.change(Change::TakeNonce(nonce.to_vec()))? {
            Outcome::Taken(taken) => taken.map(|v| decode("nonces", &v)).transpose(),
            _ => Err(Error::StoreFailed("take without its outcome".into())),
        }
    }
}

impl CounterStore for SledStore {
    fn counter(&self, key: &str) -> Result<u64> {
        Ok(counter_value(
            self.raw(T::Counters, key.as_bytes())?.as_deref(),
        ))
    }
}

impl AuditLog for SledStore {
    fn audit_records(&self) -> Result<Vec<AuditRecord>> {
        self.all(T::Audit)
    }
    fn audit_head(&self) -> Result<Option<AuditHead>> {
        self.get(T::Meta, HEAD_KEY)
    }
    fn audit_records_about(&self, subject: &str) -> Result<Vec<AuditRecord>> {
        self.refuse_if_failed()?;
        let mut out = Vec::new();
        for kv in self
            .tree(T::AuditBySubject)
            .scan_prefix(nul_key(subject, b""))
        {
            let (k, _) = kv?;
            let seq = k
                .len()
                .checked_sub(8)
                .map(|at| &k[at..])
                .unwrap_or_default();
            let record: Option<AuditRecord> = self.get(T::Audit, seq)?;
            // A subject holding NUL could share the prefix: keep exact ones.
            match record {
                Some(r) if r.event.subject == subject => out.push(r),
                Some(_) => {}
                None => {
                    return Err(Error::CorruptRecord {
                        tree: "audit_by_subject",
                        detail: format!("indexes a missing audit record for {subject}"),
                    });
                }
            }
        }
        Ok(out)
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

    /// The store's audit log, checked to verify as a chain under the test key.
    fn verified_audit(s: &SledStore) -> Vec<AuditRecord> {
        let records = s.audit_records().unwrap();
        crate::audit::verify(
            &records,
            s.audit_head().unwrap().as_ref(),
            b"k".repeat(32).as_slice(),
        )
        .unwrap();
        records
    }

    #[test]
    fn records_are_cbor_with_der_as_bytes_and_json_records_still_read() {
        let serial = Serial::random().unwrap();
        let mut cert = super::super::conformance::cert(&serial, "d1");
        cert.der = vec![0x30; 600];
        let cbor = encode(&cert).unwrap();
        assert_eq!(cbor[0], VERSION);
        // The DER is one CBOR byte string, not 1,200 hex characters.
        assert!(cbor.len() < 600 + 200, "{} bytes", cbor.len());
        assert_eq!(decode::<CertRecord>("certs", &cbor).unwrap(), cert);
        let json = [&[VERSION_JSON][..], &serde_json::to_vec(&cert).unwrap()].concat();
        assert_eq!(decode::<CertRecord>("certs", &json).unwrap(), cert);
        let unknown = decode::<CertRecord>("certs", &[9, 0]).unwrap_err();
        assert!(unknown.to_string().contains("version 9"), "{unknown}");
    }

    #[test]
    fn an_audit_log_without_its_subject_index_is_indexed_at_open() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let s = open(tmp.path());
            for subject in ["dev-1", "dev-2", "dev-1"] {
                s.commit(vec![], AuditEvent::new("t", "x", subject))
                    .unwrap();
            }
            // As a store written before the index existed.
            s.tree(T::AuditBySubject).clear().unwrap();
            assert!(s.audit_records_about("dev-1").unwrap().is_empty());
        }
        let s = open(tmp.path());
        let seqs: Vec<u64> = s
            .audit_records_about("dev-1")
            .unwrap()
            .iter()
            .map(|r| r.seq)
            .collect();
        assert_eq!(seqs, [1, 3]);
        assert_eq!(s.audit_records_about("dev-2").unwrap().len(), 1);
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
        assert_eq!(verified_audit(&s).len(), 3);
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
        verified_audit(&s);
        assert!(
            s.take_nonce(&[7; 32]).unwrap().is_none(),
            "a nonce was taken twice"
        );
    }

    #[test]
    fn a_failed_journal_write_acknowledges_nothing_and_fails_the_store_closed() {
        use super::super::conformance::station;
        let dir = tempfile::tempdir().unwrap();
        let add = |s: &SledStore, id: &str| {
            s.commit(
                vec![Write::PutStation(station(id))],
                AuditEvent::new("t", "station.add", id),
            )
        };
        {
            let s = open(dir.path());
            add(&s, "st-kept").unwrap();
            s.lock_writer().journal.fail_next_append = true;
            assert!(matches!(add(&s, "st-lost"), Err(Error::StoreFailed(_))));
            // Closed: no read answers and no later change is taken, even
            // though the disk would now accept it.
            assert!(matches!(s.station("st-kept"), Err(Error::StoreFailed(_))));
            assert!(matches!(add(&s, "st-later"), Err(Error::StoreFailed(_))));
            assert_eq!(s.durability_stats().0, 1);
        }
        let s = open(dir.path());
        assert!(s.station("st-kept").unwrap().is_some());
        assert!(s.station("st-lost").unwrap().is_none());
        assert!(s.station("st-later").unwrap().is_none());
        assert_eq!(verified_audit(&s).len(), 1);
        add(&s, "st-after-reopen").unwrap();
    }

    #[test]
    fn an_insert_looked_up_before_a_rival_was_applied_is_still_refused() {
        use super::super::conformance::cert;
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        // Both writers look the serial up while it is free; the rival
        // commits first, then `batches` more batches are applied before the
        // late writer's change reaches the leader (past RECENT_BATCHES the
        // leader reads sled instead of the recent batches).
        for batches in [0, 3, RECENT_BATCHES + 2] {
            let serial = Serial::random().unwrap();
            let mut late = vec![];
            prepare(&Write::InsertCert(cert(&serial, "late")), &mut late).unwrap();
            s.look_up_inserts(&mut late).unwrap();
            s.commit(
                vec![Write::InsertCert(cert(&serial, "rival"))],
                AuditEvent::new("t", "rival", "x"),
            )
            .unwrap();
            for i in 0..batches {
                s.put_nonce(&NonceRecord {
                    nonce: vec![i as u8; 8],
                    device_id: "d".into(),
                    expires_at: 1,
                })
                .unwrap();
            }
            let change = Change::Commit {
                writes: late,
                event: AuditEvent::new("t", "late", "x"),
                at: 1,
            };
            let refused = matches!(
                s.change(change),
                Err(Error::AlreadyExists {
                    what: "certificate serial",
                    ..
                })
            );
            assert!(refused, "not refused after {batches} batches");
            assert_eq!(s.cert(&serial).unwrap().unwrap().subject, "rival");
        }
        // A writer that finds the key taken is refused before it queues.
        let serial = Serial::random().unwrap();
        let first = vec![Write::InsertCert(cert(&serial, "first"))];
        s.commit(first.clone(), AuditEvent::new("t", "first", "x"))
            .unwrap();
        let flushes = s.durability_stats().1;
        assert!(matches!(
            s.commit(first, AuditEvent::new("t", "again", "x")),
            Err(Error::AlreadyExists { .. })
        ));
        assert_eq!(s.durability_stats().1, flushes);
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
