//! The server: gRPC over mutually authenticated TLS 1.3, and plain HTTP.
//! [`start`] binds, serves in the background and returns the bound
//! addresses; [`Running::shutdown`] stops both gracefully.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hallmark_proto::v1::FILE_DESCRIPTOR_SET;
use hallmark_proto::v1::admin_server::AdminServer;
use hallmark_proto::v1::enrollment_server::EnrollmentServer;
use hallmark_proto::v1::ownership_server::OwnershipServer;
use hallmark_proto::v1::provisioning_server::ProvisioningServer;
use hallmark_proto::v1::verification_server::VerificationServer;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;

use crate::error::{Error, Result, blocking};
use crate::service::admin::AdminService;
use crate::service::enrollment::EnrollmentService;
use crate::service::ownership::OwnershipService;
use crate::service::provisioning::ProvisioningService;
use crate::service::verification::VerificationService;
use crate::state::AppState;

/// Largest gRPC message accepted (a CSR is a few hundred bytes).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Connections are closed after this long, so a revocation reaches
/// long-lived connections too.
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(600);

/// The arguments of `hallmark-provisioner` that serve the CA folder `dir`
/// on free loopback ports; tools that start the server as a process read
/// the ports from its [`ready_line`].
pub fn loopback_serve_args(dir: &std::path::Path) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = [
        "serve",
        "--grpc",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--dir",
    ]
    .into_iter()
    .map(Into::into)
    .collect();
    args.push(dir.into());
    args
}

/// The line `hallmark-provisioner serve` prints on stdout once it serves.
pub fn ready_line(grpc: SocketAddr, http: SocketAddr) -> String {
    format!("serving gRPC on {grpc} and HTTP on {http}")
}

/// The (gRPC, HTTP) addresses in a [`ready_line`], for tools that start
/// the server as a process.
pub fn parse_ready_line(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["serving", "gRPC", "on", grpc, "and", "HTTP", "on", http] => {
            Some((grpc.parse().ok()?, http.parse().ok()?))
        }
        _ => None,
    }
}

/// Where to serve.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub dir: PathBuf,
    /// Overrides hallmark.toml's server.grpc_listen (port 0: any free port).
    pub grpc: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
}

/// A server running in the background.
pub struct Running {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub state: Arc<AppState>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stops accepting, lets in-flight calls finish, and returns.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Opens the CA folder, binds both listeners and starts serving.
pub async fn start(opts: ServeOptions) -> Result<Running> {
    let dir = opts.dir.clone();
    let state = Arc::new(blocking(move || AppState::open(&dir)).await?);
    let s = &state.config.settings.server;
    let limits = state.config.settings.limits.clone();
    let grpc_listener = listen(opts.grpc.unwrap_or(s.grpc_listen), limits.listen_backlog)?;
    let http_listener = listen(opts.http.unwrap_or(s.http_listen), limits.listen_backlog)?;
    let grpc_addr = grpc_listener.local_addr()?;
    let http_addr = http_listener.local_addr()?;
    let (stop, stopped) = watch::channel(false);

    let (conn_tx, conn_rx) = mpsc::channel(256);
    let accept = tokio::spawn(accept_loop(
        grpc_listener,
        state.clone(),
        conn_tx,
        stopped.clone(),
    ));
    let publisher = tokio::spawn(publish_loop(state.clone(), stopped.clone()));

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<ProvisioningServer<ProvisioningService>>()
        .await;
    health.set_serving::<AdminServer<AdminService>>().await;
    health
        .set_serving::<EnrollmentServer<EnrollmentService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| Error::Internal(format!("reflection: {e}")))?;
    let provisioning = ProvisioningServer::new(ProvisioningService {
        state: state.clone(),
    })
    .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let admin = AdminServer::new(AdminService {
        state: state.clone(),
    })
    .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let enrollment = EnrollmentServer::new(EnrollmentService {
        state: state.clone(),
    })
    .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let verification = VerificationServer::new(VerificationService {
        state: state.clone(),
    })
    .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let ownership = OwnershipServer::new(OwnershipService {
        state: state.clone(),
    })
    .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let mut grpc_stop = stopped.clone();
    let grpc = tokio::spawn(async move {
        let result = tonic::transport::Server::builder()
            .max_connection_age(MAX_CONNECTION_AGE)
            .max_concurrent_streams(Some(limits.streams_per_connection))
            .add_service(health_service)
            .add_service(reflection)
            .add_service(provisioning)
            .add_service(admin)
            .add_service(enrollment)
            .add_service(verification)
            .add_service(ownership)
            .serve_with_incoming_shutdown(ReceiverStream::new(conn_rx), async move {
                let _ = grpc_stop.wait_for(|s| *s).await;
            })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "gRPC server stopped with an error");
        }
    });

    let router = crate::http::router(state.clone());
    let mut http_stop = stopped.clone();
    let http = tokio::spawn(async move {
        let result = axum::serve(http_listener, router)
            .with_graceful_shutdown(async move {
                let _ = http_stop.wait_for(|s| *s).await;
            })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "HTTP server stopped with an error");
        }
    });
    tracing::info!(%grpc_addr, %http_addr, "hallmark server ready");
    Ok(Running {
        grpc_addr,
        http_addr,
        state,
        stop,
        tasks: vec![accept, grpc, http, publisher],
    })
}

/// Binds `addr` with room for `backlog` connections not yet accepted, so a
/// storm of devices waits in the kernel instead of being dropped.
fn listen(addr: SocketAddr, backlog: u32) -> Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    Ok(socket.listen(backlog)?)
}

type Conn = std::result::Result<TlsStream<TcpStream>, std::io::Error>;

/// Accepts TCP connections and completes each TLS handshake in its own task
/// (with a timeout), so a slow client never holds up the others. At most
/// `pending_handshakes` run at once; further connections wait in the
/// kernel's listen backlog, which bounds memory in a reconnect storm.
async fn accept_loop(
    listener: TcpListener,
    state: Arc<AppState>,
    conns: mpsc::Sender<Conn>,
    mut stopped: watch::Receiver<bool>,
) {
    let limits = &state.config.settings.limits;
    let timeout = Duration::from_millis(limits.handshake_timeout_ms);
    let pending = Arc::new(Semaphore::new(limits.pending_handshakes as usize));
    loop {
        let permit = tokio::select! {
            p = pending.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = stopped.changed() => break,
        };
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped.changed() => break,
        };
        let _ = tcp.set_nodelay(true);
        // The current configuration: CRLs published since start apply.
        let acceptor = match state.publisher.tls() {
            Ok(cfg) => TlsAcceptor::from(cfg),
            Err(e) => {
                tracing::error!(error = %e, "no TLS configuration");
                continue;
            }
        };
        let conns = conns.clone();
        let state = state.clone();
        tokio::spawn(async move {
            // A failed handshake is counted before its connection closes, so
            // the metric is never behind what the client sees.
            let accept = acceptor.accept(tcp).into_fallible();
            tokio::pin!(accept);
            let handshake = tokio::time::timeout(timeout, &mut accept).await;
            drop(permit);
            match handshake {
                Ok(Ok(tls)) => {
                    let _ = conns.send(Ok(tls)).await;
                }
                Ok(Err((e, _tcp))) => {
                    state
                        .metrics
                        .inc("hallmark_tls_handshake_failures_total", &[]);
                    tracing::info!(%peer, error = %e, "TLS handshake refused");
                }
                Err(_) => {
                    state
                        .metrics
                        .inc("hallmark_tls_handshake_failures_total", &[]);
                    tracing::info!(%peer, "TLS handshake timed out");
                }
            }
        });
    }
}

/// Re-publishes CRLs shortly after bulk revocation changes (debounced) and
/// at half their validity, so relying parties never hold an expired CRL.
async fn publish_loop(state: Arc<AppState>, mut stopped: watch::Receiver<bool>) {
    let refresh =
        Duration::from_secs(u64::from(state.config.settings.pki.crl_validity_hours) * 1800);
    loop {
        tokio::select! {
            _ = state.publisher.dirty.notified() => {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            _ = tokio::time::sleep(refresh) => {}
            _ = stopped.changed() => break,
        }
        let st = state.clone();
        if let Err(e) = blocking(move || st.publish()).await {
            tracing::error!(error = %e, "publishing CRLs failed");
        }
    }
}
