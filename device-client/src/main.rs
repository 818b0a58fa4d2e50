//! `hallmark-device`: the device side, as a command (a simulator on a PC,
//! or the agent on a Linux device).
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hallmark_device::device::{Device, Firmware};
use hallmark_device::keystore::KeyType;
use hallmark_device::runner::{self, Backoff};

/// Hallmark device agent: makes the device's birth key, enrolls it over
/// mutual TLS with attestation, keeps its operational certificate fresh, and
/// wipes it on factory reset.
#[derive(Parser)]
#[command(name = "hallmark-device", version, about, long_about)]
struct Cli {
    /// The device's state folder.
    #[arg(long)]
    state: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make the birth key pair and DEVDIR/csr.pem for the station.
    Init {
        #[arg(long)]
        model: String,
        #[arg(long)]
        serial: String,
        /// p256 (default), p384 or ed25519.
        #[arg(long, default_value = "p256")]
        key_type: String,
    },
    /// First-boot enrollment: attest the firmware, get an operational certificate.
    Enroll {
        /// Enrollment endpoint (default: the one the station wrote).
        #[arg(long)]
        server: Option<String>,
        /// The firmware image whose SHA-256 is the measurement.
        #[arg(long)]
        firmware: PathBuf,
        #[arg(long)]
        firmware_version: String,
        /// Report secure boot as off (testing).
        #[arg(long)]
        no_secure_boot: bool,
    },
    /// Fresh evidence; prints and saves the signed attestation result.
    Attest {
        #[arg(long)]
        server: Option<String>,
    },
    /// Re-attest and replace the operational certificate now.
    Renew {
        #[arg(long)]
        server: Option<String>,
    },
    /// Stay enrolled: renew at about 2/3 of the certificate's life, retry
    /// with backoff and jitter. Stops on ctrl-c or SIGTERM.
    Run {
        #[arg(long)]
        server: Option<String>,
    },
    /// Factory reset: wipe the operational identity and user data; keep the
    /// birth identity.
    Reset,
    /// Identity, certificate expiry and last attestation.
    Status {
        #[arg(long)]
        json: bool,
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

fn when(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| t.to_string())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let device = Device::open(&cli.state);
    match cli.command {
        Command::Init {
            model,
            serial,
            key_type,
        } => {
            device.init(&model, &serial, KeyType::parse(&key_type)?)?;
            println!(
                "birth key made; CSR for the station in {}",
                cli.state.join("csr.pem").display()
            );
        }
        Command::Enroll {
            server,
            firmware,
            firmware_version,
            no_secure_boot,
        } => {
            let server = device.server(server.as_deref())?;
            let fw = Firmware {
                image: firmware,
                version: firmware_version,
                secboot: !no_secure_boot,
                dbgstat: 3,
            };
            let e = device.enroll(&server, &fw, false).await?;
            println!(
                "enrolled: operational certificate {} valid until {}, renewal after {}",
                e.serial,
                when(e.not_after),
                when(e.renew_after)
            );
        }
        Command::Attest { server } => {
            let server = device.server(server.as_deref())?;
            let r = device.attest(&server, &device.saved_firmware()?).await?;
            println!(
                "attestation {}: firmware {}, result valid until {}",
                if r.pass { "passed" } else { "failed" },
                r.firmware_version,
                when(r.exp)
            );
        }
        Command::Renew { server } => {
            let server = device.server(server.as_deref())?;
            let e = device
                .enroll(&server, &device.saved_firmware()?, true)
                .await?;
            println!(
                "renewed: operational certificate {} valid until {}",
                e.serial,
                when(e.not_after)
            );
        }
        Command::Run { server } => {
            let server = device.server(server.as_deref())?;
            let fw = device.saved_firmware()?;
            runner::run(&device, &server, &fw, Backoff::default(), async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
        }
        Command::Reset => {
            device.reset()?;
            println!(
                "factory reset: operational identity and user data wiped; birth identity kept"
            );
        }
        Command::Status { json } => {
            let s = device.status();
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                println!(
                    "device:      {}",
                    s.device_id.as_deref().unwrap_or("(not provisioned)")
                );
                println!("state:       {}", s.state);
                if let Some(m) = &s.model {
                    println!("model:       {m}");
                }
                if let Some(v) = &s.idevid_serial {
                    println!("birth cert:  {v}");
                }
                if let (Some(v), Some(na)) = (&s.ldevid_serial, s.ldevid_not_after) {
                    println!("operational: {v}, valid until {}", when(na));
                }
                if let Some(r) = s.renew_after {
                    println!("renews:      after {}", when(r));
                }
                if let (Some(at), Some(v)) = (s.last_attested_at, &s.last_verdict) {
                    println!("attested:    {v} at {}", when(at));
                }
            }
        }
    }
    Ok(())
}
