//! A run's timeline as a Chrome trace (JSON "Trace Event Format"), which the Perfetto UI
//! (ui.perfetto.dev) and `chrome://tracing` open: one track per instance with its cold loads,
//! switches and inferences as complete (`X`) events, and a counter track of waiting requests.
//!
//! Times are microseconds with three decimals (exact nanoseconds).

use crate::engine::{Run, SpanKind};
use crate::error::{Error, Result};
use crate::metrics::timeline::kind_name;
use crate::time::Nanos;
use crate::workload::Workload;
use serde_json::{json, Value};

fn us(ns: Nanos) -> Value {
    // Microseconds as a JSON number with exactly the nanoseconds' precision.
    let text = format!("{}.{:03}", ns / 1000, ns % 1000);
    serde_json::from_str(&text).unwrap_or(Value::from(ns as f64 / 1000.0))
}

/// The trace of `run` (which must have recorded its timeline), named `title`.
pub fn trace_json(title: &str, instances: usize, workload: &Workload, run: &Run) -> Result<String> {
    let spans = run.timeline.as_deref().ok_or_else(|| {
        Error::invalid(
            "Perfetto trace",
            "the run did not record its phases (simulate with a timeline)",
        )
    })?;
    let mut events = vec![json!({
        "name": "process_name", "ph": "M", "pid": 0, "tid": 0, "args": {"name": title}
    })];
    for i in 0..instances {
        events.push(json!({
            "name": "thread_name", "ph": "M", "pid": 0, "tid": i,
            "args": {"name": format!("instance {i}")}
        }));
        events.push(json!({
            "name": "thread_sort_index", "ph": "M", "pid": 0, "tid": i, "args": {"sort_index": i}
        }));
    }
    let mut spans = spans.to_vec();
    spans.sort_by_key(|s| (s.start_ns, s.instance, s.end_ns));
    for s in &spans {
        let r = &workload.requests[s.request as usize];
        let tenant = &workload.tenants[r.tenant as usize].name;
        let cat = if s.kind == SpanKind::Inference {
            "inference"
        } else {
            "load"
        };
        events.push(json!({
            "name": format!("{} {tenant}", kind_name(Some(s.kind))),
            "cat": cat,
            "ph": "X",
            "pid": 0,
            "tid": s.instance,
            "ts": us(s.start_ns),
            "dur": us(s.end_ns - s.start_ns),
            "args": {"request": s.request, "tenant": tenant}
        }));
    }
    // Waiting requests over time: +1 at each arrival, −1 at each start.
    let mut changes: Vec<(Nanos, i64)> = Vec::with_capacity(2 * workload.requests.len());
    for (i, r) in workload.requests.iter().enumerate() {
        changes.push((r.arrival_ns, 1));
        changes.push((run.start_ns[i], -1));
    }
    changes.sort();
    let mut waiting = 0i64;
    let mut k = 0;
    while k < changes.len() {
        let t = changes[k].0;
        while k < changes.len() && changes[k].0 == t {
            waiting += changes[k].1;
            k += 1;
        }
        events.push(json!({
            "name": "waiting requests", "ph": "C", "pid": 0, "ts": us(t),
            "args": {"waiting": waiting}
        }));
    }
    let trace = json!({"traceEvents": events, "displayTimeUnit": "ms"});
    Ok(trace.to_string())
}
