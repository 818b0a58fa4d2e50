//! `hallmark-ca`: the offline CA tool (init, issue, audit, inspect). Online
//! administration of a running server goes through `--server URL --identity DIR`.
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod online;
use hallmark_ca::keys::KeyAlgorithm;
use hallmark_ca::ops::{self, InitOptions, Offline};
use hallmark_ca::serial::Serial;

/// Hallmark CA: creates and runs the device-identity PKI.
///
/// Offline commands (init, issue, audit verify, list, show) work on a CA
/// folder while the server is stopped. CA keys are unlocked with the
/// passphrase file named by HALLMARK_CA_PASSPHRASE_FILE or by hallmark.toml,
/// never from the command line.
#[derive(Parser)]
#[command(name = "hallmark-ca", version, about, long_about)]
struct Cli {
    /// Administer a running server at this URL (https://host:port) instead of
    /// a CA folder; needs --identity.
    #[arg(long, global = true, requires = "identity")]
    server: Option<String>,
    /// Admin identity folder (key.pem, cert.pem, chain.pem, ca.pem) for --server.
    #[arg(long, global = true)]
    identity: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a CA folder: root, manufacturing, operational and service CAs,
    /// the server's TLS certificate, the store and hallmark.toml.
    ///
    /// Without HALLMARK_CA_PASSPHRASE_FILE a random passphrase is written to
    /// DIR/passphrase (0600) and recorded in hallmark.toml. Move it away (or
    /// into a secrets manager) for production.
    Init {
        /// Folder to create; must not exist or be empty.
        #[arg(long)]
        dir: PathBuf,
        /// Organisation (manufacturer) name for the CA certificates.
        #[arg(long, default_value = "Hallmark Demo")]
        org: String,
        /// gRPC listen address written into hallmark.toml.
        #[arg(long, default_value = "127.0.0.1:8443")]
        grpc: std::net::SocketAddr,
        /// HTTP (CRL, OCSP, health) listen address written into hallmark.toml.
        #[arg(long, default_value = "127.0.0.1:8080")]
        http: std::net::SocketAddr,
        /// Public base URL for CRL and OCSP (default http://<--http>).
        #[arg(long)]
        public_http_url: Option<String>,
        /// Public enrollment endpoint (default https://<--grpc>).
        #[arg(long)]
        public_grpc_url: Option<String>,
        /// CA key type: p256 or p384.
        #[arg(long, default_value = "p256")]
        key_algorithm: String,
    },
    /// Issue a station or admin identity folder (server stopped).
    Issue {
        #[command(subcommand)]
        what: IssueCommand,
    },
    /// The audit log.
    Audit {
        #[command(subcommand)]
        what: AuditCommand,
    },
    /// Re-sign the offline root's CRL (DIR/ca/root.crl) with the root key.
    /// Do it before a year has passed (its nextUpdate), server stopped.
    Crl {
        #[arg(long)]
        dir: PathBuf,
    },
    /// List every certificate the CA has issued (server stopped).
    List {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Show one certificate by serial (hex), as PEM with its status.
    Show {
        #[arg(long)]
        dir: PathBuf,
        /// Certificate serial in hex (colons allowed).
        serial: String,
    },
    #[command(flatten)]
    Online(online::OnlineCommand),
}

#[derive(Subcommand)]
enum IssueCommand {
    /// A factory test station allowed to provision the given models.
    Station {
        #[arg(long)]
        dir: PathBuf,
        /// Station ID (letters, digits, '.', '_', '-').
        #[arg(long)]
        id: String,
        /// Models it may provision, comma separated (may not exist yet).
        #[arg(long, value_delimiter = ',', required = true)]
        models: Vec<String>,
        /// Identity folder to write (key.pem 0600, cert.pem, chain.pem, ca.pem).
        #[arg(long)]
        out: PathBuf,
    },
    /// A cloud service that verifies device identities (Verification API).
    Verifier {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// An administrator of the PKI.
    Admin {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the whole hash chain and its sealed head (server stopped).
    Verify {
        #[arg(long)]
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Online(cmd) => {
            let (Some(server), Some(identity)) = (cli.server, cli.identity) else {
                anyhow::bail!(
                    "this command talks to a running server: give --server URL --identity ADMINDIR"
                );
            };
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(online::run(&server, &identity, cmd))?;
        }
        Command::Init {
            dir,
            org,
            grpc,
            http,
            public_http_url,
            public_grpc_url,
            key_algorithm,
        } => {
            let report = ops::init(
                &dir,
                &InitOptions {
                    org,
                    grpc_listen: grpc,
                    http_listen: http,
                    public_grpc_url,
                    public_http_url,
                    ca_key_algorithm: KeyAlgorithm::parse(&key_algorithm)?,
                },
            )?;
            println!("Created CA folder {}", report.dir.display());
            println!("  root serial {}", report.root_serial);
            match report.generated_passphrase {
                Some(p) => println!(
                    "  generated a random CA passphrase in {} (0600) and recorded it in hallmark.toml;\n  keep it secret and move it off this machine for production",
                    p.display()
                ),
                None => println!(
                    "  CA keys are sealed with the passphrase from $HALLMARK_CA_PASSPHRASE_FILE; set it for every command that unlocks them"
                ),
            }
        }
        Command::Issue { what } => match what {
            IssueCommand::Station {
                dir,
                id,
                models,
                out,
            } => {
                let c = Offline::open(&dir)?.issue_station(&id, &models, &out)?;
                println!(
                    "Issued station {id} (models {}) serial {} into {}",
                    models.join(","),
                    c.serial,
                    out.display()
                );
            }
            IssueCommand::Verifier { dir, name, out } => {
                let c = Offline::open(&dir)?.issue_verifier(&name, &out)?;
                println!(
                    "Issued verifier {name} serial {} into {}",
                    c.serial,
                    out.display()
                );
            }
            IssueCommand::Admin { dir, name, out } => {
                let c = Offline::open(&dir)?.issue_admin(&name, &out)?;
                println!(
                    "Issued admin {name} serial {} into {}",
                    c.serial,
                    out.display()
                );
            }
        },
        Command::Audit {
            what: AuditCommand::Verify { dir },
        } => {
            let r = ops::audit_verify(&dir)?;
            println!(
                "audit log OK: {} records, chain intact, head {}",
                r.records, r.head_hash
            );
        }
        Command::Crl { dir } => {
            let n = ops::sign_root_crl(&dir)?;
            println!(
                "root CRL re-signed with {n} entries, valid for {} days: {}",
                ops::ROOT_CRL_VALIDITY.whole_days(),
                dir.join("ca/root.crl").display()
            );
        }
        Command::List { dir } => {
            let rows = ops::list(&dir)?;
            println!(
                "{:<34} {:<13} {:<14} {:<38} {:<20} status",
                "serial", "profile", "issuer", "subject", "not after"
            );
            for (c, r) in &rows {
                let status = match r {
                    Some(r) => format!("revoked ({})", r.reason.name()),
                    None => "valid".into(),
                };
                println!(
                    "{:<34} {:<13} {:<14} {:<38} {:<20} {status}",
                    c.serial.to_string(),
                    c.profile.name(),
                    c.issuer.name(),
                    c.subject,
                    fmt_time(c.not_after)
                );
            }
            println!("{} certificates", rows.len());
        }
        Command::Show { dir, serial } => {
            let (c, r) = ops::show(&dir, &Serial::parse(&serial)?)?;
            println!("serial:     {}", c.serial);
            println!("profile:    {}", c.profile.name());
            println!("issuer:     {} CA", c.issuer.name());
            println!("subject:    {}", c.subject);
            println!("not before: {}", fmt_time(c.not_before));
            println!("not after:  {}", fmt_time(c.not_after));
            println!("issued by:  {}", c.issued_by);
            match r {
                Some(r) => println!(
                    "status:     revoked at {} ({})",
                    fmt_time(r.revoked_at),
                    r.reason.name()
                ),
                None => println!("status:     valid"),
            }
            print!("{}", hallmark_ca::identity::cert_pem(&c.der));
        }
    }
    Ok(())
}

fn fmt_time(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| t.to_string())
}
