//! The HTTP layer (axum on a tokio runtime): routes, status codes, graceful shutdown.

use super::api::{parse_infer, ApiError};
use super::{to_request, AppState};
use crate::coordinator::{Msg, Refusal};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;

/// Serves on `listener` until SIGINT or SIGTERM, answers every accepted request, then tells
/// the coordinator to drain.
pub fn run(listener: std::net::TcpListener, state: Arc<AppState>) -> anyhow::Result<()> {
    listener.set_nonblocking(true)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = rt.block_on(async {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let app = Router::new()
            .route("/v1/infer", post(infer))
            .route("/v1/tenants", get(tenants))
            .route("/metrics", get(metrics))
            .with_state(state.clone());
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown_signal())
            .await
    });
    // Every handler has returned: nothing accepted is left unanswered.
    let _ = state.tx.send(Msg::Drain);
    Ok(result?)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

fn error(state: &AppState, e: ApiError) -> Response {
    state.metrics.response(e.status);
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(e)).into_response()
}

/// The HTTP answer to a refusal: 429 rejected, 503 draining, 500 failed.
fn refused(refusal: Refusal) -> ApiError {
    let (status, error) = match refusal {
        Refusal::Rejected(why) => (429, why),
        Refusal::Draining => (503, "the server is shutting down".to_string()),
        Refusal::Failed(why) => (500, format!("inference failed: {why}")),
    };
    ApiError {
        status,
        error,
        field: None,
    }
}

async fn infer(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let find = |name: &str| state.by_name.get(name).copied();
    let request = match parse_infer(&body, &state.tenants, find, state.deadline_ms) {
        Ok(r) => r,
        Err(e) => return error(&state, e),
    };
    let (reply, answer) = tokio::sync::oneshot::channel();
    let rows = Arc::new(request.rows.clone());
    let msg = Msg::Arrive {
        request: to_request(&request),
        rows,
        reply,
    };
    // A closed channel or a dropped reply both mean the coordinator is shutting down.
    let outcome = if state.tx.send(msg).is_err() {
        Err(Refusal::Draining)
    } else {
        answer.await.unwrap_or(Err(Refusal::Draining))
    };
    let served = match outcome {
        Ok(served) => served,
        Err(refusal) => return error(&state, refused(refusal)),
    };
    let tenant = &state.tenants[request.tenant as usize];
    state.metrics.latency(served.latency_ns);
    if served.latency_ns as f64 > request.deadline_ms * 1e6 {
        state
            .metrics
            .overtimes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    state.metrics.response(200);
    let outputs: Vec<_> = request
        .rows
        .iter()
        .zip(&served.outputs)
        .map(|(ids, out)| json!({"token_ids": ids, "shape": out.shape, "values": out.values}))
        .collect();
    Json(json!({
        "tenant": tenant.name,
        "task": tenant.task,
        "labels": tenant.labels,
        "instance": served.instance,
        "switched": served.switched,
        "cold_load": served.cold_load,
        "wait_ms": served.wait_ns as f64 / 1e6,
        "latency_ms": served.latency_ns as f64 / 1e6,
        "deadline_ms": request.deadline_ms,
        "outputs": outputs,
    }))
    .into_response()
}

async fn tenants(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let list: Vec<_> = state
        .tenants
        .iter()
        .map(|t| json!({"name": t.name, "task": t.task, "labels": t.labels, "max_tokens": t.cfg.max_tokens()}))
        .collect();
    Json(json!({ "tenants": list }))
}

async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
