//! `crl`: CRL generation time and size for N revoked entries, signed by a
//! fresh P-256 root (no server: this is the CA library alone).
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use hallmark_ca::authority::Authority;
use hallmark_ca::keys::{self, KeyAlgorithm};
use hallmark_ca::profile::{self, CaKind, Template};
use hallmark_ca::records::{RevocationReason, RevocationRecord};
use hallmark_ca::serial::Serial;
use hallmark_ca::signer::SoftwareSigner;

pub fn run(entries: &[usize], out: Option<&Path>) -> anyhow::Result<()> {
    let now = time::OffsetDateTime::now_utc();
    let key = keys::generate(KeyAlgorithm::P256)?;
    let cert = profile::build(
        &Template::Root {
            org: "Bench".into(),
        },
        &Serial::random()?,
        now,
        None,
    )?
    .self_signed(&key)?
    .der()
    .to_vec();
    let auth = Authority::new(
        CaKind::Root,
        cert,
        Arc::new(SoftwareSigner::new(KeyAlgorithm::P256, key)),
    )?;
    println!(
        "{:>10} {:>12} {:>12} {:>14}",
        "entries", "build (ms)", "size (KiB)", "bytes/entry"
    );
    let max = entries.iter().copied().max().unwrap_or(0);
    for &n in entries {
        let revoked: Vec<RevocationRecord> = (0..n)
            .map(|i| {
                Ok(RevocationRecord {
                    serial: Serial::random()?,
                    issuer: CaKind::Root,
                    reason: if i % 2 == 0 {
                        RevocationReason::KeyCompromise
                    } else {
                        RevocationReason::Superseded
                    },
                    revoked_at: now.unix_timestamp() - (i as i64 % 86_400),
                    revoked_by: "bench".into(),
                    cert_not_after: now.unix_timestamp() + 86_400,
                })
            })
            .collect::<hallmark_ca::Result<_>>()?;
        let t = Instant::now();
        let der = hallmark_ca::crl::build(&auth, &revoked, now, time::Duration::hours(24), 1)?;
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        println!(
            "{n:>10} {ms:>12.1} {:>12.1} {:>14.1}",
            der.len() as f64 / 1024.0,
            der.len() as f64 / n.max(1) as f64
        );
        if n == max
            && let Some(p) = out
        {
            std::fs::write(p, &der)?;
        }
    }
    Ok(())
}
