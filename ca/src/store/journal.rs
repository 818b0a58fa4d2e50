//! The write-ahead journal in front of sled. Every change the store makes is
//! first applied to sled in memory, then appended here as the physical
//! operations it performed (tree, key, new value or removal) under a
//! sequence number; a change is acknowledged once the journal is
//! fdatasync'ed — one small sequential write shared by concurrent commits,
//! instead of a flush of sled's page cache per commit. sled is flushed to
//! disk at checkpoints (and at open), after which the journal starts over.
//!
//! Frames: `len u32 LE | crc32 u32 LE | payload`; payload: `seq u64 LE`, then
//! per operation `tree u8 | key len u32 | key | 0 (remove) or 1 + value len
//! u32 + value`. A torn or corrupt tail (a crash mid-append) ends the
//! journal: what follows it was never acknowledged.
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
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

/// Largest frame accepted when reading (a change is a few KiB).
const MAX_FRAME: usize = 64 * 1024 * 1024;

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

/// Encodes an entry as one frame.
pub fn encode(e: &Entry) -> Vec<u8> {
    let mut payload = Vec::with_capacity(64);
    payload.extend_from_slice(&e.seq.to_le_bytes());
    for op in &e.ops {
        payload.push(op.tree);
        put_bytes(&mut payload, &op.key);
        match &op.value {
            None => payload.push(0),
            Some(v) => {
                payload.push(1);
                put_bytes(&mut payload, v);
            }
        }
    }
    let mut frame = Vec::with_capacity(payload.len() + 8);
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    frame.extend_from_slice(&payload);
    frame
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
    fn bytes(&mut self) -> Option<Vec<u8>> {
        let n = self.u32()? as usize;
        Some(self.take(n)?.to_vec())
    }
}

fn decode_payload(p: &[u8]) -> Option<Entry> {
    let mut r = Reader(p);
    let seq = u64::from_le_bytes(r.take(8)?.try_into().ok()?);
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

/// Decodes frames until the end or the first torn or corrupt one. Returns
/// the entries and the length of the good prefix.
pub fn decode_all(bytes: &[u8]) -> (Vec<Entry>, usize) {
    let mut entries = vec![];
    let mut at = 0;
    while bytes.len() - at >= 8 {
        let len = u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        let crc = u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]]);
        let len = len as usize;
        if len > MAX_FRAME || bytes.len() - at - 8 < len {
            break;
        }
        let payload = &bytes[at + 8..at + 8 + len];
        if crc32fast::hash(payload) != crc {
            break;
        }
        let Some(e) = decode_payload(payload) else {
            break;
        };
        entries.push(e);
        at += 8 + len;
    }
    (entries, at)
}

/// The journal file.
pub struct Journal {
    file: File,
    path: PathBuf,
    bytes: u64,
}

impl Journal {
    /// Opens the journal at `path` and returns it with its entries; a torn
    /// tail is cut off.
    pub fn open(path: &Path) -> Result<(Journal, Vec<Entry>)> {
        let io = |e| Error::io(path, e);
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(io)?;
        let mut bytes = vec![];
        file.read_to_end(&mut bytes).map_err(io)?;
        let (entries, good) = decode_all(&bytes);
        if good < bytes.len() {
            file.set_len(good as u64).map_err(io)?;
            file.sync_data().map_err(io)?;
        }
        Ok((
            Journal {
                file,
                path: path.to_path_buf(),
                bytes: good as u64,
            },
            entries,
        ))
    }

    /// Appends one entry (not yet durable: see [`Journal::sync`]).
    pub fn append(&mut self, e: &Entry) -> Result<()> {
        let frame = encode(e);
        self.file
            .write_all(&frame)
            .map_err(|err| Error::io(&self.path, err))?;
        self.bytes += frame.len() as u64;
        Ok(())
    }

    /// A handle that can fdatasync the journal while others append.
    pub fn syncer(&self) -> Result<File> {
        self.file.try_clone().map_err(|e| Error::io(&self.path, e))
    }

    pub fn len(&self) -> u64 {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    /// Empties the journal (after a checkpoint made its entries durable in sled).
    pub fn reset(&mut self) -> Result<()> {
        let io = |e| Error::io(&self.path, e);
        self.file.set_len(0).map_err(io)?;
        self.file.sync_data().map_err(io)?;
        self.bytes = 0;
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

    #[test]
    fn entries_round_trip_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("journal");
        {
            let (mut j, old) = Journal::open(&p).unwrap();
            assert!(old.is_empty());
            for s in 1..=3 {
                j.append(&entry(s)).unwrap();
            }
            j.syncer().unwrap().sync_data().unwrap();
        }
        let (_, got) = Journal::open(&p).unwrap();
        assert_eq!(got, vec![entry(1), entry(2), entry(3)]);
    }

    #[test]
    fn a_torn_or_corrupt_tail_ends_the_journal_and_is_cut_off() {
        let frames: Vec<Vec<u8>> = (1..=3).map(|s| encode(&entry(s))).collect();
        let all = frames.concat();
        // Torn: the last frame is cut anywhere inside.
        for cut in 1..frames[2].len() {
            let (got, good) = decode_all(&all[..all.len() - cut]);
            assert_eq!(got, vec![entry(1), entry(2)], "cut {cut}");
            assert_eq!(good, frames[0].len() + frames[1].len());
        }
        // Corrupt: a flipped bit in the second frame's payload.
        let mut bad = all.clone();
        bad[frames[0].len() + 12] ^= 0x10;
        assert_eq!(decode_all(&bad).0, vec![entry(1)]);
        // The file is cut back to its good prefix on open.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("journal");
        std::fs::write(&p, &all[..all.len() - 3]).unwrap();
        let (mut j, got) = Journal::open(&p).unwrap();
        assert_eq!(got.len(), 2);
        j.append(&entry(9)).unwrap();
        drop(j);
        let (_, got) = Journal::open(&p).unwrap();
        assert_eq!(got, vec![entry(1), entry(2), entry(9)]);
    }
}
