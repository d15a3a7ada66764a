//! One load process: its clients on a single-threaded tokio runtime, each a keep-alive
//! HTTP/1 connection (hyper) that sends one request at a time and reconnects when the server
//! closes it.

use super::{process_cpu_s, LoadOptions, LoadReport};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{handshake, SendRequest};
use hyper::Request;
use hyper_util::rt::TokioIo;
use rand::{Rng as _, SeedableRng as _};
use rand_distr::{Distribution as _, Zipf};
use rand_pcg::Pcg64;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Words the texts are drawn from.
const WORDS: [&str; 48] = [
    "the",
    "model",
    "serves",
    "many",
    "tenants",
    "on",
    "one",
    "device",
    "while",
    "requests",
    "arrive",
    "online",
    "each",
    "with",
    "a",
    "deadline",
    "switching",
    "weights",
    "costs",
    "time",
    "so",
    "good",
    "schedules",
    "keep",
    "hot",
    "models",
    "resident",
    "and",
    "batch",
    "similar",
    "work",
    "together",
    "latency",
    "matters",
    "more",
    "than",
    "throughput",
    "for",
    "users",
    "who",
    "wait",
    "review",
    "great",
    "terrible",
    "movie",
    "service",
    "quick",
    "slow",
];

fn authority(url: &str) -> anyhow::Result<String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow::anyhow!("--url {url}: expected http://HOST:PORT"))?;
    Ok(rest.trim_end_matches('/').to_string())
}

async fn connect(addr: &str) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

fn request(
    addr: &str,
    path: &str,
    token: Option<&str>,
    body: Option<String>,
) -> anyhow::Result<Request<Full<Bytes>>> {
    let mut b = Request::builder()
        .method(if body.is_some() { "POST" } else { "GET" })
        .uri(path)
        .header("host", addr);
    if body.is_some() {
        b = b.header("content-type", "application/json");
    }
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    Ok(b.body(Full::new(Bytes::from(body.unwrap_or_default())))?)
}

async fn tenant_names(addr: &str, token: Option<&str>) -> anyhow::Result<Vec<String>> {
    let mut sender = connect(addr).await?;
    let resp = sender
        .send_request(request(addr, "/v1/tenants", token, None)?)
        .await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    anyhow::ensure!(
        status.is_success(),
        "GET /v1/tenants: {status}: {}",
        String::from_utf8_lossy(&body)
    );
    let json: serde_json::Value = serde_json::from_slice(&body)?;
    let names: Vec<String> = json["tenants"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    anyhow::ensure!(!names.is_empty(), "GET /v1/tenants listed no tenant");
    Ok(names)
}

/// Runs this process's share of the load (`o.concurrency` clients, `o.requests` requests);
/// `progress` counts answers as they come.
pub fn run_in_process(
    o: &LoadOptions,
    progress: Option<Arc<AtomicU64>>,
) -> anyhow::Result<LoadReport> {
    let addr = authority(&o.url)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let cpu_before = process_cpu_s().unwrap_or(0.0);
    let mut report = rt.block_on(async {
        let names = Arc::new(tenant_names(&addr, o.token.as_deref()).await?);
        let zipf = Zipf::new(names.len() as f64, o.zipf)
            .map_err(|e| anyhow::anyhow!("--zipf {}: {e}", o.zipf))?;
        let next = Arc::new(AtomicU64::new(0));
        let start = unix_ns();
        let mut tasks = tokio::task::JoinSet::new();
        for c in 0..o.concurrency {
            let (o, addr, names, next, progress) = (
                o.clone(),
                addr.clone(),
                names.clone(),
                next.clone(),
                progress.clone(),
            );
            tasks.spawn(async move {
                let mut rng = Pcg64::seed_from_u64(o.seed ^ (c as u64).wrapping_mul(0xA24B_AED4));
                let mut report = LoadReport::default();
                let mut sender: Option<SendRequest<Full<Bytes>>> = None;
                while next.fetch_add(1, Relaxed) < o.requests {
                    let tenant = &names[(zipf.sample(&mut rng) as usize).clamp(1, names.len()) - 1];
                    let texts: Vec<String> = (0..o.texts)
                        .map(|_| {
                            (0..o.words)
                                .map(|_| WORDS[rng.random_range(0..WORDS.len())])
                                .collect::<Vec<_>>()
                                .join(" ")
                        })
                        .collect();
                    let mut body = serde_json::json!({"tenant": tenant, "texts": texts});
                    if let Some(d) = o.deadline_ms {
                        body["deadline_ms"] = d.into();
                    }
                    let t = Instant::now();
                    let status = send(&mut sender, &addr, &o, body.to_string()).await;
                    let us = t.elapsed().as_micros() as u64;
                    report.requests += 1;
                    let key = status.map_or_else(|| "error".to_string(), |s| s.to_string());
                    *report.statuses.entry(key).or_default() += 1;
                    if let Some(s) = status {
                        report.latency.record(us);
                        if s == 200 {
                            report.latency_ok.record(us);
                        }
                    }
                    if let Some(p) = &progress {
                        p.fetch_add(1, Relaxed);
                    }
                }
                report
            });
        }
        let mut report = LoadReport::default();
        while let Some(r) = tasks.join_next().await {
            let r = r?;
            report.requests += r.requests;
            for (k, v) in &r.statuses {
                *report.statuses.entry(k.clone()).or_default() += v;
            }
            report.latency.merge(&r.latency);
            report.latency_ok.merge(&r.latency_ok);
        }
        report.start_unix_ns = start;
        report.end_unix_ns = unix_ns();
        anyhow::Ok(report)
    })?;
    report.cpu_s = process_cpu_s().unwrap_or(0.0) - cpu_before;
    report.processes = 1;
    Ok(report)
}

/// Sends one request on the client's connection (made or remade as needed); the status, or
/// `None` when the connection failed.
async fn send(
    sender: &mut Option<SendRequest<Full<Bytes>>>,
    addr: &str,
    o: &LoadOptions,
    body: String,
) -> Option<u16> {
    if sender.as_ref().is_none_or(|s| s.is_closed()) {
        *sender = connect(addr).await.ok();
    }
    let s = sender.as_mut()?;
    if s.ready().await.is_err() {
        *sender = connect(addr).await.ok();
    }
    let s = sender.as_mut()?;
    let req = request(addr, "/v1/infer", o.token.as_deref(), Some(body)).ok()?;
    let result = async {
        let resp = s.send_request(req).await?;
        let status = resp.status().as_u16();
        resp.into_body().collect().await?;
        anyhow::Ok(status)
    }
    .await;
    match result {
        Ok(status) => Some(status),
        Err(_) => {
            *sender = None;
            None
        }
    }
}

fn unix_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}
