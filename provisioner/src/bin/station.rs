//! `hallmark-station`: the factory test station's tool.
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use hallmark_proto::v1 as pb;
use hallmark_proto::v1::provisioning_client::ProvisioningClient;
use hallmark_provisioner::station::{self, DeviceDir};

/// Hallmark factory station: provisions devices with a unique identity and
/// setup code over mutual TLS.
#[derive(Parser)]
#[command(name = "hallmark-station", version, about, long_about)]
struct Cli {
    /// The Hallmark server, https://host:port.
    #[arg(long)]
    server: String,
    /// This station's identity folder (key.pem, cert.pem, chain.pem, ca.pem).
    #[arg(long)]
    identity: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Provision one device from its CSR and write what to flash into DEVDIR:
    /// idevid/ (cert.pem, chain.pem, ca.pem), setup-code (0600), label.txt
    /// and device.json.
    Provision {
        #[arg(long)]
        model: String,
        /// The device's hardware serial number.
        #[arg(long)]
        serial: String,
        /// The device's PKCS#10 CSR (PEM or DER). Omit with --server-keygen.
        #[arg(long, required_unless_present = "server_keygen")]
        csr: Option<PathBuf>,
        /// Have the server make the key (only for models that allow it); it is
        /// written once to DEVDIR/idevid/key.pem (0600) and kept nowhere else.
        #[arg(long)]
        server_keygen: bool,
        #[arg(long)]
        out: PathBuf,
        /// Production lot, for revocation by lot.
        #[arg(long, default_value = "")]
        lot: String,
    },
    /// Provision every device of a CSV (`serial,csr[,lot]`, CSR paths relative
    /// to the CSV) over one stream, into DIR/<serial>/. Safe to re-run after an
    /// interruption: finished devices are skipped, lost answers are repeated.
    Batch {
        #[arg(long)]
        model: String,
        #[arg(long)]
        csv: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn status(e: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", e.code(), e.message())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let channel = hallmark_ca::client::connect(&cli.server, &cli.identity).await?;
    let mut client = ProvisioningClient::new(channel);
    match cli.command {
        Command::Provision {
            model,
            serial,
            csr,
            server_keygen,
            out,
            lot,
        } => {
            let csr_der = match &csr {
                Some(p) => station::read_csr(p)?,
                None => vec![],
            };
            let dir = DeviceDir::new(&out);
            if dir.is_complete() {
                bail!("{} already holds a provisioned device", out.display());
            }
            let r = client
                .provision(pb::ProvisionRequest {
                    idempotency_key: station::idempotency_key(&model, &serial, &csr_der),
                    model: model.clone(),
                    hardware_serial: serial,
                    csr_der,
                    server_keygen,
                    lot,
                })
                .await
                .map_err(status)?
                .into_inner();
            let info = dir.write(&model, &r)?;
            println!(
                "provisioned {} ({} {}), birth certificate {}, written to {}",
                info.device_id,
                model,
                info.hardware_serial,
                info.certificate_serial,
                out.display()
            );
        }
        Command::Batch { model, csv, out } => batch(&mut client, &model, &csv, &out).await?,
    }
    Ok(())
}

async fn batch(
    client: &mut ProvisioningClient<tonic::transport::Channel>,
    model: &str,
    csv: &std::path::Path,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(csv).with_context(|| format!("reading {}", csv.display()))?;
    let base = csv.parent().unwrap_or(std::path::Path::new("."));
    let rows = station::parse_csv(&text, base)?;
    let total = rows.len();
    let mut requests = vec![];
    let mut skipped = 0;
    for row in &rows {
        if DeviceDir::new(out.join(&row.serial)).is_complete() {
            skipped += 1;
            continue;
        }
        let csr_der = match &row.csr {
            Some(p) => station::read_csr(p).with_context(|| format!("line {}", row.line))?,
            None => vec![],
        };
        requests.push(pb::ProvisionRequest {
            idempotency_key: station::idempotency_key(model, &row.serial, &csr_der),
            model: model.to_string(),
            hardware_serial: row.serial.clone(),
            server_keygen: csr_der.is_empty(),
            csr_der,
            lot: row.lot.clone(),
        });
    }
    eprintln!(
        "{total} devices in {}: {skipped} already done, provisioning {}",
        csv.display(),
        requests.len()
    );
    let todo = requests.len();
    let started = Instant::now();
    let mut results = client
        .provision_stream(tokio_stream::iter(requests))
        .await
        .map_err(status)?
        .into_inner();
    let (mut ok, mut failed) = (0usize, vec![]);
    while let Some(r) = results.message().await.map_err(status)? {
        match r.response {
            Some(resp) if r.code == 0 => {
                DeviceDir::new(out.join(&r.hardware_serial)).write(model, &resp)?;
                ok += 1;
            }
            _ => failed.push(format!("{}: {}", r.hardware_serial, r.message)),
        }
        let done = ok + failed.len();
        eprint!(
            "\r[{done:>6}/{todo}] {:>5.1}%  ok {ok}  failed {}",
            100.0 * done as f64 / todo.max(1) as f64,
            failed.len()
        );
        let _ = std::io::stderr().flush();
    }
    eprintln!();
    println!(
        "batch done in {:.1}s: {ok} provisioned, {skipped} already done, {} failed",
        started.elapsed().as_secs_f64(),
        failed.len()
    );
    for f in &failed {
        println!("  failed {f}");
    }
    if ok + failed.len() != todo {
        bail!(
            "the stream ended after {} of {todo} devices; re-run to resume",
            ok + failed.len()
        );
    }
    if !failed.is_empty() {
        bail!("{} devices failed", failed.len());
    }
    Ok(())
}
