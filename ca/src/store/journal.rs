//! The write-ahead journal in front of sled. Every change the store makes is
//! appended here first, as the physical operations it performs (tree, key,
//! new value or removal) under a sequence number, and reaches sled only once
//! the journal is fdatasync'ed — one sequential write shared by a batch of
//! commits, instead of a flush of sled's page cache per commit. sled is
//! flushed to disk at checkpoints (and at open), after which the journal
//! starts over.
//!
//! The file is zero-filled ahead of the writes (in [`GROW_BYTES`] steps) and
//! written in place, so a commit's fdatasync flushes data pages only: the
//! file's size and blocks do not change, and the filesystem need not commit
//! its own journal — which on ext4 would also flush every other file's
//! freshly written data (sled's) first.
//!
//! Layout: a header `"HMJ2" | generation u64 LE | crc32 u32 LE` (crc of the
//! 12 bytes before it), then frames `len u32 LE | crc32 u32 LE | payload`;
//! payload: `generation u64 LE | seq u64 LE`, then per operation `tree u8 |
//! key len u32 | key | 0 (remove) or 1 + value len u32 + value`. Starting
//! over writes a header with the next generation, so the frames of earlier
//! generations still in the file end the journal where they begin, like a
//! torn or corrupt frame (a crash mid-append) or the zero fill does: nothing
//! after that point was acknowledged.
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// One physical operation on a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    pub tree: u8,
    pub key: Vec<u8>,
    /// None: the key was removed.
    pub value: Option<Vec<u8>>,
}

/// The operations of one change, in the order they were made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub seq: u64,
    pub ops: Vec<Op>,
}

const MAGIC: &[u8; 4] = b"HMJ2";
const HEADER_BYTES: u64 = 16;
/// Largest frame accepted when reading (a change is a few KiB).
const MAX_FRAME: usize = 64 * 1024 * 1024;
/// The zero fill ahead of the writes grows by this much at a time.
pub const GROW_BYTES: u64 = 4 * 1024 * 1024;

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

/// Appends `e` as one frame of `generation` to `out`.
pub fn encode_into(out: &mut Vec<u8>, generation: u64, e: &Entry) {
    let start = out.len();
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&generation.to_le_bytes());
    out.extend_from_slice(&e.seq.to_le_bytes());
    for op in &e.ops {
        out.push(op.tree);
        put_bytes(out, &op.key);
        match &op.value {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                put_bytes(out, v);
            }
        }
    }
    let payload = start + 8;
    let len = (out.len() - payload) as u32;
    let crc = crc32fast::hash(&out[payload..]);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..payload].copy_from_slice(&crc.to_le_bytes());
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn bytes(&mut self) -> Option<Vec<u8>> {
        let n = self.u32()? as usize;
        Some(self.take(n)?.to_vec())
    }
}

/// Decodes a payload of `generation`; None if it is of another generation
/// or malformed.
fn decode_payload(p: &[u8], generation: u64) -> Option<Entry> {
    let mut r = Reader(p);
    if r.u64()? != generation {
        return None;
    }
    let seq = r.u64()?;
    let mut ops = vec![];
    while !r.0.is_empty() {
        let tree = *r.take(1)?.first()?;
        let key = r.bytes()?;
        let value = match r.take(1)?.first()? {
            0 => None,
            1 => Some(r.bytes()?),
            _ => return None,
        };
        ops.push(Op { tree, key, value });
    }
    Some(Entry { seq, ops })
}

/// Decodes the frames of `generation` at the start of `bytes` until the
/// first torn, corrupt, foreign or out-of-sequence one. Returns the entries
/// and the length of the good prefix.
pub fn decode_all(bytes: &[u8], generation: u64) -> (Vec<Entry>, usize) {
    let mut entries: Vec<Entry> = vec![];
    let mut r = Reader(bytes);
    let mut good = 0;
    while let (Some(len), Some(crc)) = (r.u32(), r.u32()) {
        let len = len as usize;
        if len == 0 || len > MAX_FRAME {
            break;
        }
        let Some(payload) = r.take(len) else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        let Some(e) = decode_payload(payload, generation) else {
            break;
        };
        if entries.last().is_some_and(|last| e.seq != last.seq + 1) {
            break;
        }
        entries.push(e);
        good += 8 + len;
    }
    (entries, good)
}

fn header(generation: u64) -> [u8; HEADER_BYTES as usize] {
    let mut h = [0u8; HEADER_BYTES as usize];
    h[..4].copy_from_slice(MAGIC);
    h[4..12].copy_from_slice(&generation.to_le_bytes());
    let crc = crc32fast::hash(&h[..12]);
    h[12..].copy_from_slice(&crc.to_le_bytes());
    h
}

fn parse_header(bytes: &[u8]) -> Option<u64> {
    let h = bytes.get(..HEADER_BYTES as usize)?;
    let crc = u32::from_le_bytes(h[12..].try_into().ok()?);
    if &h[..4] != MAGIC || crc32fast::hash(&h[..12]) != crc {
        return None;
    }
    Some(u64::from_le_bytes(h[4..12].try_into().ok()?))
}

/// The journal file.
pub struct Journal {
    file: File,
    path: PathBuf,
    generation: u64,
    /// Where the next frame goes.
    end: u64,
    /// Bytes of the file already zero-filled or written.
    allocated: u64,
    /// Opened with frames that the caller must checkpoint before appending.
    must_reset: bool,
    /// Test hook: the next append fails as a full or broken disk would.
    #[cfg(test)]
    pub(crate) fail_next_append: bool,
}

impl Journal {
    /// Opens the journal at `path` (creating it) and returns it with the
    /// entries of its current generation. Once the caller has made those
    /// durable elsewhere it calls [`Journal::reset`]; appending before that
    /// is refused, since new frames could otherwise end next to old ones of
    /// the same generation.
    pub fn open(path: &Path) -> Result<(Journal, Vec<Entry>)> {
        let io = |e| Error::io(path, e);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io)?;
        let mut bytes = vec![];
        file.read_to_end(&mut bytes).map_err(io)?;
        // Shorter than a header: created, and nothing journaled yet.
        let (generation, entries) = if bytes.len() < HEADER_BYTES as usize {
            file.write_all_at(&header(1), 0).map_err(io)?;
            file.sync_all().map_err(io)?;
            (1, vec![])
        } else {
            let generation = parse_header(&bytes).ok_or_else(|| Error::CorruptRecord {
                tree: "journal",
                detail: format!("{} has no valid journal header", path.display()),
            })?;
            let (entries, _) = decode_all(&bytes[HEADER_BYTES as usize..], generation);
            (generation, entries)
        };
        let journal = Journal {
            allocated: (bytes.len() as u64).max(HEADER_BYTES),
            file,
            path: path.to_path_buf(),
            generation,
            end: HEADER_BYTES,
            must_reset: true,
            #[cfg(test)]
            fail_next_append: false,
        };
        Ok((journal, entries))
    }

    /// Appends entries in one write (not yet durable: see [`Journal::sync`]).
    pub fn append(&mut self, entries: &[Entry]) -> Result<()> {
        let mut frames = Vec::with_capacity(entries.len() * 4096);
        for e in entries {
            self.encode(e, &mut frames);
        }
        self.append_frames(&frames)
    }

    /// Appends `e` to `out` as a frame of the current generation, for
    /// [`Journal::append_frames`].
    pub fn encode(&self, e: &Entry, out: &mut Vec<u8>) {
        encode_into(out, self.generation, e);
    }

    /// Appends frames made by [`Journal::encode`] in one write (not yet
    /// durable: see [`Journal::sync`]).
    pub fn append_frames(&mut self, frames: &[u8]) -> Result<()> {
        #[cfg(test)]
        if std::mem::take(&mut self.fail_next_append) {
            return Err(Error::io(
                &self.path,
                std::io::Error::other("injected write failure"),
            ));
        }
        if self.must_reset {
            return Err(Error::StoreFailed(
                "the journal was opened and not reset before appending".into(),
            ));
        }
        let end = self.end + frames.len() as u64;
        if end > self.allocated {
            self.zero_fill(end.div_ceil(GROW_BYTES) * GROW_BYTES)?;
        }
        self.file
            .write_all_at(frames, self.end)
            .map_err(|e| Error::io(&self.path, e))?;
        self.end = end;
        Ok(())
    }

    /// Zero-fills the file up to `size` bytes; the next sync makes the new
    /// size durable (the only syncs that carry file metadata).
    fn zero_fill(&mut self, size: u64) -> Result<()> {
        const CHUNK: usize = 1024 * 1024;
        let zeros = vec![0u8; CHUNK];
        while self.allocated < size {
            let n = (size - self.allocated).min(CHUNK as u64) as usize;
            self.file
                .write_all_at(&zeros[..n], self.allocated)
                .map_err(|e| Error::io(&self.path, e))?;
            self.allocated += n as u64;
        }
        Ok(())
    }

    /// Makes everything appended so far durable (fdatasync).
    pub fn sync(&self) -> Result<()> {
        self.file.sync_data().map_err(|e| Error::io(&self.path, e))
    }

    /// Bytes of frames in the current generation.
    pub fn len(&self) -> u64 {
        self.end - HEADER_BYTES
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Starts over with the next generation (after a checkpoint made the
    /// entries durable in sled). Durable before it returns.
    pub fn reset(&mut self) -> Result<()> {
        let next = self.generation + 1;
        if self.allocated < GROW_BYTES {
            self.zero_fill(GROW_BYTES)?;
        }
        let io = |e| Error::io(&self.path, e);
        self.file.write_all_at(&header(next), 0).map_err(io)?;
        self.file.sync_data().map_err(io)?;
        self.generation = next;
        self.end = HEADER_BYTES;
        self.must_reset = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64) -> Entry {
        Entry {
            seq,
            ops: vec![
                Op {
                    tree: 2,
                    key: format!("k{seq}").into_bytes(),
                    value: Some(vec![seq as u8; 40]),
                },
                Op {
                    tree: 11,
                    key: b"gone".to_vec(),
                    value: None,
                },
            ],
        }
    }

    fn frames(generation: u64, seqs: impl IntoIterator<Item = u64>) -> Vec<Vec<u8>> {
        seqs.into_iter()
            .map(|s| {
                let mut f = vec![];
                encode_into(&mut f, generation, &entry(s));
                f
            })
            .collect()
    }

    fn reopen(p: &Path) -> (Journal, Vec<Entry>) {
        Journal::open(p).unwrap()
    }

    #[test]
    fn entries_round_trip_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("journal");
        {
            let (mut j, old) = reopen(&p);
            assert!(old.is_empty());
            j.reset().unwrap();
            j.append(&[entry(1)]).unwrap();
            j.append(&[entry(2), entry(3)]).unwrap();
            j.sync().unwrap();
        }
        let (_, got) = reopen(&p);
        assert_eq!(got, vec![entry(1), entry(2), entry(3)]);
    }

    #[test]
    fn a_torn_corrupt_foreign_or_out_of_sequence_frame_ends_the_journal() {
        let all = frames(7, 1..=3);
        let (first, second) = (all[0].len(), all[1].len());
        let bytes = all.concat();
        // Torn: the last frame is cut anywhere inside.
        for cut in 1..all[2].len() {
            let (got, good) = decode_all(&bytes[..bytes.len() - cut], 7);
            assert_eq!(got, vec![entry(1), entry(2)], "cut {cut}");
            assert_eq!(good, first + second);
        }
        // Corrupt: a flipped bit in the second frame's payload.
        let mut bad = bytes.clone();
        bad[first + 20] ^= 0x10;
        assert_eq!(decode_all(&bad, 7).0, vec![entry(1)]);
        // An earlier generation's frames, and the zero fill, end it too.
        let stale = [frames(7, [1]), frames(6, [2])].concat().concat();
        assert_eq!(decode_all(&stale, 7).0, vec![entry(1)]);
        let zeros = [frames(7, [1]).concat(), vec![0; 64]].concat();
        assert_eq!(decode_all(&zeros, 7).0, vec![entry(1)]);
        // A gap in the sequence.
        let gap = frames(7, [1, 3]).concat();
        assert_eq!(decode_all(&gap, 7).0, vec![entry(1)]);
    }

    #[test]
    fn starting_over_hides_the_previous_generation_and_the_file_does_not_shrink() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("journal");
        let (mut j, _) = reopen(&p);
        j.reset().unwrap();
        j.append(&[entry(1), entry(2)]).unwrap();
        j.sync().unwrap();
        let size = std::fs::metadata(&p).unwrap().len();
        assert!(size >= GROW_BYTES, "zero-filled ahead: {size}");
        j.reset().unwrap();
        assert!(j.is_empty());
        drop(j);
        let (mut j, got) = reopen(&p);
        assert!(got.is_empty(), "old frames came back: {got:?}");
        // A torn write after the reset: only the whole frames come back.
        j.reset().unwrap();
        j.append(&[entry(5)]).unwrap();
        let torn = frames(j.generation, [6]).concat();
        j.file.write_all_at(&torn[..torn.len() / 2], j.end).unwrap();
        drop(j);
        assert_eq!(reopen(&p).1, vec![entry(5)]);
        assert_eq!(std::fs::metadata(&p).unwrap().len(), size);
    }

    #[test]
    fn appending_before_the_reset_after_open_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = reopen(&dir.path().join("journal"));
        assert!(matches!(j.append(&[entry(1)]), Err(Error::StoreFailed(_))));
    }

    #[test]
    fn a_file_without_a_journal_header_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("journal");
        std::fs::write(&p, b"not a journal at all").unwrap();
        assert!(matches!(
            Journal::open(&p),
            Err(Error::CorruptRecord { .. })
        ));
    }
}
