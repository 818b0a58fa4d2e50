//! Plain HTTP: GET /healthz (200 once ready), GET /metrics (Prometheus),
//! GET /crl/<ca>.crl (DER CRLs).
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hallmark_ca::profile::CaKind;

use crate::state::AppState;

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/crl/{file}", get(crl))
        .with_state(state)
}

/// GET /crl/<ca>.crl: the CA's current CRL, DER.
async fn crl(State(state): State<Arc<AppState>>, Path(file): Path<String>) -> Response {
    let kind = file
        .strip_suffix(".crl")
        .and_then(|n| CaKind::parse(n).ok());
    match kind.and_then(|k| state.publisher.crl(k)) {
        Some(der) => (
            [
                (header::CONTENT_TYPE, "application/pkix-crl"),
                // Relying parties may cache briefly; revocations publish at once.
                (header::CACHE_CONTROL, "public, max-age=60, must-revalidate"),
            ],
            der.as_ref().clone(),
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "no such CRL; try root.crl, manufacturing.crl, operational.crl or service.crl\n",
        )
            .into_response(),
    }
}

async fn healthz() -> impl IntoResponse {
    (StatusCode::OK, "ok\n")
}

async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
