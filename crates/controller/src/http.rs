//! The controller's HTTP endpoints: `/healthz`, `/readyz` and `/metrics`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

/// What the endpoints read.
#[derive(Clone)]
pub struct Probes {
    registry: Arc<Registry>,
    ready: watch::Receiver<bool>,
}

impl Probes {
    /// `ready` turns true once the controller has synced its caches (and, for
    /// a standby replica, is able to take over).
    pub fn new(registry: Arc<Registry>, ready: watch::Receiver<bool>) -> Self {
        Self { registry, ready }
    }
}

/// Serves the endpoints on `addr` until `shutdown` fires.
pub async fn serve(
    addr: SocketAddr,
    probes: Probes,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(probes);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /healthz /readyz /metrics");
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await
}

async fn readyz(State(probes): State<Probes>) -> impl IntoResponse {
    if *probes.ready.borrow() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

async fn metrics(State(probes): State<Probes>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &probes.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response(),
    }
}
