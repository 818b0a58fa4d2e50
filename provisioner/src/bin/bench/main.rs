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

use clap::{Parser, Subcommand};

/// Hallmark's benchmarks: the real server, side by side with its peers.
#[derive(Parser)]
#[command(name = "hallmark-bench", version)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

mod crl;
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
    let result = match Cli::parse().scenario {
        Scenario::Provision {
            stations,
            devices,
            cfssl,
        } => on_runtime(2, provision::run(stations, devices, cfssl)),
        // Thousands of simulated devices share this process; the device
        // library does its (small, blocking) file work inline, as a device
        // would, so give the runtime threads to spare while one waits on disk.
        Scenario::EnrollStorm { devices } => on_runtime(32, storm::run(devices)),
        Scenario::Ocsp {
            requests,
            concurrency,
            peer,
        } => peer
            .iter()
            .map(|p| ocsp::parse_peer(p))
            .collect::<anyhow::Result<Vec<_>>>()
            .and_then(|peers| on_runtime(2, ocsp::run(requests, concurrency, peers))),
        Scenario::Verify {
            requests,
            concurrency,
        } => on_runtime(2, verify::run(requests, concurrency)),
        Scenario::Store {
            devices,
            batch,
            lookups,
        } => store::run(devices, batch, lookups),
        Scenario::Crypto { seconds } => crypto::run(seconds),
        Scenario::Crl { entries, out } => crl::run(&entries, out.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a scenario that drives the server on a runtime with `workers` threads.
fn on_runtime(
    workers: usize,
    scenario: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()?
        .block_on(scenario)
}
