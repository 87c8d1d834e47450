//! The HTTP server (`http.listener`): `/metrics` in Prometheus text format,
//! `/healthz` (the process is alive and its runtime responsive) and
//! `/readyz` (the broker has loaded its metadata and opened its logs and is
//! serving clients).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// What the HTTP server reports on: implemented by the broker, so this
/// module needs nothing from it.
pub trait Observed: Send + Sync + 'static {
    /// Whether the broker serves clients (`/readyz`).
    fn is_ready(&self) -> bool;
    /// Every metric in Prometheus text format (`/metrics`).
    fn metrics_text(&self) -> String;
}

pub async fn serve(
    listener: TcpListener,
    observed: Arc<dyn Observed>,
    mut shutdown: watch::Receiver<bool>,
) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(observed);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.changed().await;
        })
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "HTTP server failed");
    }
}

async fn metrics(State(observed): State<Arc<dyn Observed>>) -> impl IntoResponse {
    let body = observed.metrics_text();
    ([("content-type", "text/plain; version=0.0.4")], body)
}

async fn readyz(State(observed): State<Arc<dyn Observed>>) -> impl IntoResponse {
    if observed.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
    }
}
