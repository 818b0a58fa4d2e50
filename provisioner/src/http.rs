//! Plain HTTP: GET /healthz (200 once ready), GET /metrics (Prometheus),
//! GET /crl/<ca>.crl (DER CRLs), OCSP at POST /ocsp and GET /ocsp/<base64>.
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use hallmark_ca::profile::CaKind;

use crate::state::AppState;

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/crl/{file}", get(crl))
        .route("/ocsp", post(ocsp_post))
        .route("/ocsp/{*request}", get(ocsp_get))
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
    let (durable, flushes) = state.store.durability_stats();
    let store = format!(
        "# TYPE hallmark_store_durable_changes_total counter\n\
         hallmark_store_durable_changes_total {durable}\n\
         # TYPE hallmark_store_flushes_total counter\n\
         hallmark_store_flushes_total {flushes}\n"
    );
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render() + &store,
    )
}

async fn ocsp_answer(state: Arc<AppState>, request: Vec<u8>) -> Response {
    let st = state.clone();
    match tokio::task::spawn_blocking(move || st.ocsp.respond(&st, &request)).await {
        Ok(der) => ([(header::CONTENT_TYPE, "application/ocsp-response")], der).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// POST /ocsp with a DER OCSPRequest body (RFC 6960 A.1).
async fn ocsp_post(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    ocsp_answer(state, body.to_vec()).await
}

/// GET /ocsp/<base64 of the DER OCSPRequest, URL-encoded> (RFC 6960 A.1).
async fn ocsp_get(State(state): State<Arc<AppState>>, Path(encoded): Path<String>) -> Response {
    let b64 = encoded
        .replace("%2B", "+")
        .replace("%2F", "/")
        .replace("%3D", "=");
    match base64::engine::general_purpose::STANDARD.decode(b64.trim_start_matches('/')) {
        Ok(req) => ocsp_answer(state, req).await,
        Err(_) => ocsp_answer(state, vec![]).await,
    }
}
