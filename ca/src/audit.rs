//! The append-only, hash-chained audit log: pure logic. Each record's hash
//! covers its content and the previous record's hash; the head (last seq and
//! hash) is kept apart and sealed with an HMAC under the audit key, so an
//! edited, deleted, reordered or truncated record — or a rewritten chain —
//! is detected by [`verify`].
use std::collections::BTreeMap;

use ring::{digest, hmac};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Hash of "no previous record".
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What happened, before it is sequenced. Never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Who did it: `station:ID`, `admin:NAME`, `device:ID`, `ca-tool`, `server`.
    pub actor: String,
    /// What kind of change: `ca.init`, `device.provision`, `cert.revoke`, ...
    pub action: String,
    /// What it was about (device ID, serial, station ID, ...).
    pub subject: String,
    pub details: BTreeMap<String, String>,
}

impl AuditEvent {
    pub fn new(
        actor: impl Into<String>,
        action: impl Into<String>,
        subject: impl Into<String>,
    ) -> Self {
        AuditEvent {
            actor: actor.into(),
            action: action.into(),
            subject: subject.into(),
            details: BTreeMap::new(),
        }
    }

    pub fn with(mut self, key: &str, value: impl Into<String>) -> Self {
        self.details.insert(key.to_string(), value.into());
        self
    }
}

/// A sequenced, chained audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub seq: u64,
    pub at: i64,
    #[serde(flatten)]
    pub event: AuditEvent,
    /// Hash of the previous record (GENESIS for the first).
    pub prev: String,
    /// SHA-256 over everything above, hex.
    pub hash: String,
}

/// The newest record's position and hash, sealed with the audit key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditHead {
    pub seq: u64,
    pub hash: String,
    pub mac: String,
}

#[derive(Serialize)]
struct Hashed<'a> {
    seq: u64,
    at: i64,
    event: &'a AuditEvent,
    prev: &'a str,
}

fn content_hash(seq: u64, at: i64, event: &AuditEvent, prev: &str) -> Result<String> {
    let bytes = serde_json::to_vec(&Hashed {
        seq,
        at,
        event,
        prev,
    })
    .map_err(|e| Error::AuditBroken(e.to_string()))?;
    Ok(hex::encode(digest::digest(&digest::SHA256, &bytes)))
}

/// Chains `event` after `head` (or starts the log).
pub fn next_record(head: Option<&AuditHead>, at: i64, event: AuditEvent) -> Result<AuditRecord> {
    let (seq, prev) = match head {
        Some(h) => (h.seq + 1, h.hash.clone()),
        None => (1, GENESIS.to_string()),
    };
    let hash = content_hash(seq, at, &event, &prev)?;
    Ok(AuditRecord {
        seq,
        at,
        event,
        prev,
        hash,
    })
}

/// The sealed head after `record`.
pub fn seal_head(key: &[u8], record: &AuditRecord) -> AuditHead {
    AuditHead {
        seq: record.seq,
        hash: record.hash.clone(),
        mac: head_mac(key, record.seq, &record.hash),
    }
}

fn head_message(seq: u64, hash: &str) -> Vec<u8> {
    let mut msg = b"hallmark audit head v1".to_vec();
    msg.extend_from_slice(&seq.to_be_bytes());
    msg.extend_from_slice(hash.as_bytes());
    msg
}

fn head_mac(key: &[u8], seq: u64, hash: &str) -> String {
    let k = hmac::Key::new(hmac::HMAC_SHA256, key);
    hex::encode(hmac::sign(&k, &head_message(seq, hash)).as_ref())
}

fn head_mac_ok(key: &[u8], head: &AuditHead) -> bool {
    let k = hmac::Key::new(hmac::HMAC_SHA256, key);
    hex::decode(&head.mac)
        .map(|tag| hmac::verify(&k, &head_message(head.seq, &head.hash), &tag).is_ok())
        .unwrap_or(false)
}

/// What `audit verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditReport {
    pub records: u64,
    pub head_hash: String,
}

/// Checks the whole log: sequence without gaps, every hash, every link, and
/// the sealed head. `records` must be in store order (by seq).
pub fn verify(
    records: &[AuditRecord],
    head: Option<&AuditHead>,
    key: &[u8],
) -> Result<AuditReport> {
    let broken = |m: String| Error::AuditBroken(m);
    let mut prev = GENESIS.to_string();
    for (i, r) in records.iter().enumerate() {
        let want_seq = i as u64 + 1;
        if r.seq != want_seq {
            return Err(broken(format!(
                "record {want_seq} is missing (found {} in its place): a record was deleted or reordered",
                r.seq
            )));
        }
        if r.prev != prev {
            return Err(broken(format!(
                "record {} does not link to record {}",
                r.seq,
                r.seq - 1
            )));
        }
        let h = content_hash(r.seq, r.at, &r.event, &r.prev)?;
        if h != r.hash {
            return Err(broken(format!(
                "record {} was modified (hash mismatch)",
                r.seq
            )));
        }
        prev = r.hash.clone();
    }
    let n = records.len() as u64;
    match head {
        None if n == 0 => Ok(AuditReport {
            records: 0,
            head_hash: GENESIS.into(),
        }),
        None => Err(broken("the log has records but no sealed head".into())),
        Some(h) => {
            if !head_mac_ok(key, h) {
                return Err(broken(
                    "the sealed head does not verify with the audit key: the log was rewritten"
                        .into(),
                ));
            }
            if h.seq != n || h.hash != prev {
                return Err(broken(format!(
                    "the sealed head names record {} but the log ends at record {n}: records were deleted",
                    h.seq
                )));
            }
            Ok(AuditReport {
                records: n,
                head_hash: prev,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn log(n: usize) -> (Vec<AuditRecord>, AuditHead) {
        let mut recs: Vec<AuditRecord> = Vec::new();
        let mut head = None;
        for i in 0..n {
            let r = next_record(
                head.as_ref(),
                1_700_000_000 + i as i64,
                AuditEvent::new("ca-tool", "test", format!("s{i}")).with("k", "v"),
            )
            .unwrap();
            head = Some(seal_head(KEY, &r));
            recs.push(r);
        }
        (recs, head.unwrap())
    }

    #[test]
    fn intact_log_verifies() {
        let (recs, head) = log(5);
        let rep = verify(&recs, Some(&head), KEY).unwrap();
        assert_eq!(rep.records, 5);
        assert!(verify(&[], None, KEY).is_ok());
    }

    #[test]
    fn edits_deletions_and_rewrites_are_detected() {
        let (recs, head) = log(5);
        let mut edited = recs.clone();
        edited[2].event.subject = "other".into();
        assert!(verify(&edited, Some(&head), KEY).is_err());

        let mut deleted = recs.clone();
        deleted.remove(2);
        assert!(verify(&deleted, Some(&head), KEY).is_err());

        let truncated = &recs[..4];
        assert!(verify(truncated, Some(&head), KEY).is_err());

        // A full rewrite with recomputed hashes still fails without the key.
        let (mut forged, _) = log(4);
        forged[0].event.subject = "forged".into();
        let mut h = None;
        let rebuilt: Vec<_> = forged
            .into_iter()
            .map(|r| {
                let n = next_record(h.as_ref(), r.at, r.event).unwrap();
                h = Some(seal_head(b"attacker key attacker key 123456", &n));
                n
            })
            .collect();
        assert!(verify(&rebuilt, h.as_ref(), KEY).is_err());
        assert!(verify(&recs, None, KEY).is_err());
    }
}
