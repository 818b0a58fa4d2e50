//! The gRPC services: thin layers that authenticate the caller, check its
//! role, run the domain operation off the async runtime, and map errors to
//! statuses in one place ([`call`]).
use std::sync::Arc;
use std::time::Instant;

use rustls::pki_types::CertificateDer;
use tonic::{Request, Status};

use crate::admission::Stage;
use crate::auth::{Caller, RoleKind};
use crate::error::{Error, Result, blocking};
use crate::state::AppState;

pub mod admin;
pub mod enrollment;
pub mod ownership;
pub mod provisioning;
pub mod verification;

type PeerCerts = Option<Arc<Vec<CertificateDer<'static>>>>;

/// The client certificates the TLS layer verified for this request.
pub fn peer<T>(req: &Request<T>) -> PeerCerts {
    req.peer_certs()
}

/// Authenticates, authorises (`allowed` roles for `rpc`), runs `f` on the
/// blocking pool, records metrics and maps the error to a status.
pub async fn call<T: Send + 'static>(
    state: &Arc<AppState>,
    peer: PeerCerts,
    rpc: &'static str,
    allowed: &'static [RoleKind],
    f: impl FnOnce(&AppState, &Caller) -> Result<T> + Send + 'static,
) -> std::result::Result<T, Status> {
    let st = state.clone();
    let start = Instant::now();
    let result = blocking(move || {
        let now = st.now().unix_timestamp();
        let peer = peer.as_deref().map(Vec::as_slice);
        let caller = st.auth_cache.authenticate(st.store.as_ref(), peer, now)?;
        caller.require(allowed, rpc)?;
        // Stations have their own (higher) rate, checked where they provision.
        if caller.role.kind() != RoleKind::Station
            && let Err(wait) = st.peer_limiter.check(&caller.actor())
        {
            return Err(Error::RateLimited {
                what: format!("{} is over its request rate", caller.actor()),
                retry_after_ms: wait,
            });
        }
        f(&st, &caller)
    })
    .await;
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    state
        .metrics
        .observe_ms("hallmark_rpc_seconds", &[("rpc", rpc)], ms);
    result.map_err(|e| refused(state, rpc, e))
}

/// [`call`] for an enrollment call: admitted first by the storm gate
/// ([`crate::admission`]), before any work is done for it.
pub async fn admitted_call<T: Send + 'static>(
    state: &Arc<AppState>,
    stage: Stage,
    peer: PeerCerts,
    rpc: &'static str,
    allowed: &'static [RoleKind],
    f: impl FnOnce(&AppState, &Caller) -> Result<T> + Send + 'static,
) -> std::result::Result<T, Status> {
    let _permit = state.admission.enter(stage).map_err(|wait| {
        refused(
            state,
            rpc,
            Error::RateLimited {
                what: "the server is busy enrolling other devices".into(),
                retry_after_ms: wait,
            },
        )
    })?;
    call(state, peer, rpc, allowed, f).await
}

/// Counts and logs a refusal, and turns it into the status the caller sees.
/// Backpressure is logged at debug: a storm would otherwise flood the log.
fn refused(state: &AppState, rpc: &'static str, e: Error) -> Status {
    state.metrics.inc(
        "hallmark_rpc_refusals_total",
        &[("rpc", rpc), ("reason", e.reason())],
    );
    if matches!(e, Error::RateLimited { .. }) {
        tracing::debug!(rpc, reason = e.reason(), error = %e, "request refused");
    } else {
        tracing::info!(rpc, reason = e.reason(), error = %e, "request refused");
    }
    e.into()
}
