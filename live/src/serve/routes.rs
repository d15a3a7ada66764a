//! The routes (axum): `POST /v1/infer`, `GET /v1/tenants`, `GET /metrics`; the guard and the
//! counting middleware around them; JSON bodies for every refusal.
//!
//! A `/v1/infer` body is read with a size limit and a timeout, then parsed and tokenized on
//! the blocking pool (never on the two async threads), sent to the coordinator and answered
//! with its outcome.

use super::api::{body_limit_bytes, parse_infer, ApiError, InferAnswer, RowAnswer, TenantInfo};
use super::guard::Guard;
use super::http::HttpOptions;
use super::metrics::{route_of, Metrics};
use super::to_request;
use crate::coordinator::{Msg, Refusal};
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{mpsc, Arc};

/// What the server shares with its HTTP handlers.
pub struct AppState {
    /// Tenants by id.
    pub tenants: Vec<TenantInfo>,
    /// Tenant ids by name.
    pub by_name: BTreeMap<String, u32>,
    /// To the coordinator.
    pub tx: mpsc::Sender<Msg>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Default deadline, ms.
    pub deadline_ms: f64,
    /// Who may talk to the server.
    pub guard: Guard,
    /// Read timeouts and the grace period.
    pub options: HttpOptions,
    /// Largest body taken, bytes.
    pub body_limit_bytes: usize,
    /// Set when the grace period ended: requests still waiting are refused.
    abandon: tokio::sync::watch::Sender<bool>,
    /// Set when the server must stop at once (the coordinator failed).
    stop_now: tokio::sync::watch::Sender<bool>,
    /// Set when the grace period ended (read by the coordinator).
    pub abandoned: AtomicBool,
    /// Set when every connection is closed (read by the coordinator).
    pub http_done: AtomicBool,
}

impl AppState {
    /// The state of a server of `tenants` reporting to `tx`.
    pub fn new(
        tenants: Vec<TenantInfo>,
        tx: mpsc::Sender<Msg>,
        metrics: Arc<Metrics>,
        deadline_ms: f64,
        guard: Guard,
        options: HttpOptions,
    ) -> Self {
        let by_name = tenants
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i as u32))
            .collect();
        let max_tokens = tenants
            .iter()
            .map(|t| t.cfg.max_tokens())
            .max()
            .unwrap_or(1);
        AppState {
            tenants,
            by_name,
            tx,
            metrics,
            deadline_ms,
            guard,
            options,
            body_limit_bytes: body_limit_bytes(max_tokens),
            abandon: tokio::sync::watch::channel(false).0,
            stop_now: tokio::sync::watch::channel(false).0,
            abandoned: AtomicBool::new(false),
            http_done: AtomicBool::new(false),
        }
    }

    /// The stop: the coordinator refuses new requests from now on.
    pub fn drain(&self) {
        let _ = self.tx.send(Msg::Drain);
    }

    /// The grace period ended: requests waiting for the coordinator are refused.
    pub fn abandon(&self) {
        self.abandoned.store(true, Relaxed);
        self.abandon.send_replace(true);
    }

    /// The coordinator failed: stop accepting, refuse whatever waits, close.
    pub fn stop_now(&self) {
        self.abandon();
        self.stop_now.send_replace(true);
    }

    /// Resolves once [`stop_now`](Self::stop_now) was called.
    pub async fn stopped_now(&self) {
        let _ = self.stop_now.subscribe().wait_for(|s| *s).await;
    }

    /// Every connection is closed: the coordinator may stop.
    pub fn finish(&self) {
        self.http_done.store(true, Relaxed);
        let _ = self.tx.send(Msg::Drain);
    }
}

/// The application: routes, guard, counting.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/infer", post(infer))
        .route("/v1/tenants", get(tenants))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .layer(middleware::from_fn_with_state(state.clone(), count))
        .with_state(state)
}

/// Counts every response by route and status; gives the router's bodiless refusals (405) a
/// JSON body like the others.
async fn count(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route = route_of(req.uri().path());
    let method = req.method().clone();
    let mut resp = next.run(req).await;
    let status = resp.status();
    if status == StatusCode::METHOD_NOT_ALLOWED {
        let allowed = if route == 0 { "POST" } else { "GET" };
        resp = api_error(ApiError {
            status: 405,
            error: format!("method {method} not allowed here (allowed: {allowed})"),
            field: None,
        });
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allowed));
    }
    state.metrics.response(route, resp.status().as_u16());
    resp
}

async fn guard(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    match state.guard.check(req.headers()) {
        Ok(()) => next.run(req).await,
        Err(e) => {
            let unauthorized = e.status == 401;
            let mut resp = api_error(e);
            if unauthorized {
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            resp
        }
    }
}

async fn not_found(req: Request) -> Response {
    api_error(ApiError {
        status: 404,
        error: format!(
            "no route {} {} (routes: POST /v1/infer, GET /v1/tenants, GET /metrics)",
            req.method(),
            req.uri().path()
        ),
        field: None,
    })
}

/// A refusal as a JSON response.
pub fn api_error(e: ApiError) -> Response {
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

/// Reads a body of at most `state.body_limit_bytes` within the body timeout.
async fn read_body(state: &AppState, req: Request) -> Result<Bytes, ApiError> {
    let limit = state.body_limit_bytes;
    let too_large = || ApiError {
        status: 413,
        error: format!(
            "the body is over {limit} bytes (the most for {} texts of the zoo's longest \
             tokens, see the README)",
            super::api::MAX_TEXTS
        ),
        field: None,
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let timeout = state.options.body_timeout;
    let collect = Limited::new(req.into_body(), limit).collect();
    match tokio::time::timeout(timeout, collect).await {
        Err(_) => Err(ApiError {
            status: 408,
            error: format!(
                "the body did not arrive within {} ms (the server's --body-timeout-ms)",
                timeout.as_millis()
            ),
            field: None,
        }),
        Ok(Err(e)) if e.is::<LengthLimitError>() => Err(too_large()),
        Ok(Err(e)) => Err(ApiError::bad("body", format!("cannot read the body: {e}"))),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

async fn infer(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let body = match read_body(&state, req).await {
        Ok(b) => b,
        Err(e) => {
            let timed_out = e.status == 408;
            let mut resp = api_error(e);
            if timed_out {
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            return resp;
        }
    };
    let parsing = state.clone();
    let parsed = tokio::task::spawn_blocking(move || {
        let s = &parsing;
        parse_infer(
            &body,
            &s.tenants,
            |name| s.by_name.get(name).copied(),
            s.deadline_ms,
        )
    })
    .await;
    let mut request = match parsed {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return api_error(e),
        Err(e) => {
            return api_error(ApiError {
                status: 500,
                error: format!("parsing the request failed: {e}"),
                field: None,
            })
        }
    };
    let (reply, answer) = tokio::sync::oneshot::channel();
    let arrival = to_request(&request);
    // The token ids go to the coordinator and come back in the answer: shared, not copied.
    let rows = Arc::new(std::mem::take(&mut request.rows));
    let msg = Msg::Arrive {
        request: arrival,
        rows: rows.clone(),
        reply,
    };
    let mut abandon = state.abandon.subscribe();
    // A closed channel or a dropped reply both mean the coordinator is shutting down.
    let outcome = if state.tx.send(msg).is_err() {
        Err(Refusal::Draining)
    } else {
        tokio::select! {
            a = answer => a.unwrap_or(Err(Refusal::Draining)),
            () = async { let _ = abandon.wait_for(|a| *a).await; } => {
                state.metrics.abandoned.fetch_add(1, Relaxed);
                return api_error(ApiError {
                    status: 503,
                    error: "the server is shutting down: its grace period ended before this \
                            request ran"
                        .into(),
                    field: None,
                });
            }
        }
    };
    let served = match outcome {
        Ok(served) => served,
        Err(refusal) => return api_error(refused(refusal)),
    };
    let tenant = &state.tenants[request.tenant as usize];
    let deadline_ns = ptm_sim::time::ms_to_ns(request.deadline_ms);
    state.metrics.completed(served.latency_ns, deadline_ns);
    Json(InferAnswer {
        cold_load: served.cold_load,
        deadline_ms: request.deadline_ms,
        instance: served.instance,
        labels: &tenant.labels,
        latency_ms: served.latency_ns as f64 / 1e6,
        outputs: rows
            .iter()
            .zip(&served.outputs)
            .map(|(ids, out)| RowAnswer {
                shape: &out.shape,
                token_ids: ids,
                values: &out.values,
            })
            .collect(),
        switched: served.switched,
        task: tenant.task,
        tenant: &tenant.name,
        wait_ms: served.wait_ns as f64 / 1e6,
    })
    .into_response()
}

async fn tenants(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let list: Vec<_> = state
        .tenants
        .iter()
        .map(|t| {
            json!({
                "name": t.name,
                "task": t.task,
                "labels": t.labels,
                "max_tokens": t.cfg.max_tokens(),
                "max_text_bytes": super::api::max_text_bytes(t.cfg.max_tokens()),
            })
        })
        .collect();
    Json(json!({ "tenants": list }))
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}
