//! `hallmark-bench`: the measurements behind BENCHMARKS.md. Every scenario
//! but `crl`, `crypto` and `store` drives the real server binary
//! (`hallmark-provisioner serve`, durability on) over the real gRPC/mTLS or
//! HTTP path from this process, and prints a table: throughput, p50/p99
//! latency, the server's CPU time and peak memory. Peers (cfssl, openssl)
//! are set up by scripts/bench-peers.sh and measured with the same load
//! generators in the same run.
//!
//! - `provision`: K stations over ProvisionStream (`--cfssl`: cfssl's sign API);
//! - `enroll-storm`: N devices enrolling at once with fresh handshakes;
//! - `ocsp`: OCSP responses per second (`--peer`: other responders);
//! - `verify`: Verify calls per second;
//! - `crl`: CRL generation time and size for N revoked entries;
//! - `store`: 1,000,000 device records: lookup latency, disk size, open time;
//! - `crypto`: ECDSA P-256 sign/verify rates of the crypto provider (the bound).
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clap::{Parser, Subcommand};
use hallmark_ca::authority::Authority;
use hallmark_ca::keys::{self, KeyAlgorithm};
use hallmark_ca::profile::{self, CaKind, Template};
use hallmark_ca::records::{RevocationReason, RevocationRecord};
use hallmark_ca::serial::Serial;
use hallmark_ca::signer::SoftwareSigner;

#[derive(Parser)]
#[command(name = "hallmark-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

mod crypto;
mod http_load;
mod lab;
mod ocsp;
mod provision;
mod report;
mod store;
mod storm;
mod verify;

#[derive(Subcommand)]
enum Scenario {
    /// Durable provisioning throughput: K stations over ProvisionStream.
    Provision {
        /// Concurrent stations (one stream each).
        #[arg(long, default_value_t = 4)]
        stations: usize,
        /// Devices in all.
        #[arg(long, default_value_t = 4000)]
        devices: usize,
        /// Also sign the same CSRs with `cfssl serve` at HOST:PORT, at the
        /// same concurrency (scripts/bench-peers.sh starts one).
        #[arg(long)]
        cfssl: Option<String>,
    },
    /// N provisioned devices enroll at once (fresh mTLS handshake,
    /// challenge, evidence, Enroll), retrying backpressure.
    EnrollStorm {
        #[arg(long, default_value_t = 10_000)]
        devices: usize,
    },
    /// OCSP responses per second over HTTP.
    Ocsp {
        #[arg(long, default_value_t = 20_000)]
        requests: usize,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Another responder to load the same way:
        /// NAME=HOST:PORT/PATH=REQUEST.der (repeatable).
        #[arg(long)]
        peer: Vec<String>,
    },
    /// Verify calls per second from a cloud verifier.
    Verify {
        #[arg(long, default_value_t = 20_000)]
        requests: usize,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
    },
    /// The store at fleet scale.
    Store {
        #[arg(long, default_value_t = 1_000_000)]
        devices: usize,
        /// Records per durable commit while loading.
        #[arg(long, default_value_t = 1000)]
        batch: usize,
        #[arg(long, default_value_t = 100_000)]
        lookups: usize,
    },
    /// ECDSA P-256 sign and verify rates of ring: the physical limit.
    Crypto {
        /// Seconds per figure.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
    },
    /// CRL generation time and size for each entry count.
    Crl {
        /// Entry counts, comma separated.
        #[arg(long, value_delimiter = ',', default_values_t = vec![10_000usize, 100_000, 1_000_000])]
        entries: Vec<usize>,
        /// Also write the largest CRL (DER) here, e.g. to parse it with openssl.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.scenario {
        Scenario::Crl { .. } | Scenario::Store { .. } | Scenario::Crypto { .. } => run(cli),
        _ => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(run_async(cli))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run_async(cli: Cli) -> anyhow::Result<()> {
    match cli.scenario {
        Scenario::Provision {
            stations,
            devices,
            cfssl,
        } => provision::run(stations, devices, cfssl).await,
        Scenario::EnrollStorm { devices } => storm::run(devices).await,
        Scenario::Ocsp {
            requests,
            concurrency,
            peer,
        } => {
            let peers = peer
                .iter()
                .map(|p| ocsp::parse_peer(p))
                .collect::<anyhow::Result<Vec<_>>>()?;
            ocsp::run(requests, concurrency, peers).await
        }
        Scenario::Verify {
            requests,
            concurrency,
        } => verify::run(requests, concurrency).await,
        _ => run(cli),
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.scenario {
        Scenario::Store {
            devices,
            batch,
            lookups,
        } => store::run(devices, batch, lookups)?,
        Scenario::Crypto { seconds } => crypto::run(seconds)?,
        Scenario::Provision { .. }
        | Scenario::EnrollStorm { .. }
        | Scenario::Ocsp { .. }
        | Scenario::Verify { .. } => anyhow::bail!("this scenario runs on the async runtime"),
        Scenario::Crl { entries, out } => {
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
            for n in entries {
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
                let der =
                    hallmark_ca::crl::build(&auth, &revoked, now, time::Duration::hours(24), 1)?;
                let ms = t.elapsed().as_secs_f64() * 1000.0;
                println!(
                    "{n:>10} {ms:>12.1} {:>12.1} {:>14.1}",
                    der.len() as f64 / 1024.0,
                    der.len() as f64 / n.max(1) as f64
                );
                if n == max
                    && let Some(p) = &out
                {
                    std::fs::write(p, &der)?;
                }
            }
        }
    }
    Ok(())
}
