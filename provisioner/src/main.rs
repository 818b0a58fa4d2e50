//! `hallmark-provisioner`: runs the Hallmark server.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hallmark_provisioner::server::{self, ServeOptions};

/// Hallmark server: factory provisioning, enrollment, administration and
/// verification over gRPC (mutual TLS 1.3), with health, metrics, CRLs and
/// OCSP over plain HTTP.
#[derive(Parser)]
#[command(name = "hallmark-provisioner", version, about, long_about)]
struct Cli {
    /// Log as JSON lines (for log shippers) instead of text.
    #[arg(long, global = true)]
    json_logs: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve a CA folder made by `hallmark-ca init` until SIGTERM or ctrl-c.
    Serve {
        #[arg(long)]
        dir: PathBuf,
        /// gRPC listen address (default: server.grpc_listen in hallmark.toml).
        #[arg(long)]
        grpc: Option<SocketAddr>,
        /// HTTP listen address (default: server.http_listen in hallmark.toml).
        #[arg(long)]
        http: Option<SocketAddr>,
    },
    /// Run the whole lifecycle in a temporary folder and print what happened:
    /// CA, station, devices provisioned, enrolled and attested, tampered
    /// firmware quarantined, a revoked device refused by cloud-side checks.
    Demo {
        /// Devices to provision and enroll (one more is the tampered one).
        #[arg(long, default_value_t = 20)]
        devices: usize,
    },
}

fn init_logging(json: bool, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        fmt.json().init();
    } else {
        fmt.init();
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo prints its own story; the server logs only warnings there.
    let default = if matches!(cli.command, Command::Demo { .. }) {
        "error"
    } else {
        "info"
    };
    init_logging(cli.json_logs, default);
    let result = match cli.command {
        Command::Serve { dir, grpc, http } => serve(ServeOptions { dir, grpc, http }).await,
        Command::Demo { devices } => hallmark_provisioner::demo::run(devices).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(opts: ServeOptions) -> anyhow::Result<()> {
    let running = server::start(opts).await?;
    println!(
        "{}",
        server::ready_line(running.grpc_addr, running.http_addr)
    );
    shutdown_signal().await;
    tracing::info!("shutting down");
    running.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
