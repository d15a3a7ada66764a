//! The per-request CSV: one row per request of a run, what happened to it and where.
//!
//! Columns: `policy,seed,request,tenant,arrival_ms,start_ms,end_ms,wait_ms,latency_ms,
//! deadline_ms,overtime,instance,load,load_source,batch`.
//! - `load`: what the instance did before running it: `none`, `switch` or `cold_load`;
//! - `load_source`: the tier the weights came from — empty today: the serving model has one
//!   source (the host cache); issue 14's tiers (GPU pool, host, file) will fill it;
//! - `batch`: the pass the request shared with others — empty today: every request runs alone;
//!   issue 14's batching will fill it.
//!
//! Times are milliseconds with six decimals (exact nanoseconds).

use crate::engine::{Run, Span, SpanKind};
use crate::error::{Error, Result};
use crate::time::format_ms_exact;
use crate::workload::Workload;
use std::fmt::Write as _;

/// The CSV header line (with its newline).
pub const HEADER: &str =
    "policy,seed,request,tenant,arrival_ms,start_ms,end_ms,wait_ms,latency_ms,\
deadline_ms,overtime,instance,load,load_source,batch\n";

/// The load before each request (`None`: the instance held its weights), from a run's phases.
pub fn loads(requests: usize, spans: &[Span]) -> Vec<Option<SpanKind>> {
    let mut out = vec![None; requests];
    for s in spans {
        if s.kind != SpanKind::Inference {
            if let Some(slot) = out.get_mut(s.request as usize) {
                *slot = Some(s.kind);
            }
        }
    }
    out
}

/// Appends one row per request of `run` (which must have recorded its timeline) to `out`.
pub fn write_rows(
    out: &mut String,
    policy: &str,
    seed: u64,
    workload: &Workload,
    run: &Run,
) -> Result<()> {
    let spans = run.timeline.as_deref().ok_or_else(|| {
        Error::invalid(
            "per-request rows",
            "the run did not record its phases (simulate with a timeline)",
        )
    })?;
    let loads = loads(workload.requests.len(), spans);
    for (i, r) in workload.requests.iter().enumerate() {
        let (start, end) = (run.start_ns[i], run.end_ns[i]);
        let latency = end - r.arrival_ns;
        let load = match loads[i] {
            None => "none",
            Some(SpanKind::Switch) => "switch",
            Some(SpanKind::ColdLoad) => "cold_load",
            Some(SpanKind::Inference) => unreachable!("inference is not a load"),
        };
        let _ = writeln!(
            out,
            "{policy},{seed},{i},{},{},{},{},{},{},{},{},{},{load},,",
            csv_field(&workload.tenants[r.tenant as usize].name),
            format_ms_exact(r.arrival_ns),
            format_ms_exact(start),
            format_ms_exact(end),
            format_ms_exact(start - r.arrival_ns),
            format_ms_exact(latency),
            format_ms_exact(r.deadline_ns),
            u8::from(latency > r.deadline_ns),
            run.served_by[i],
        );
    }
    Ok(())
}

/// Quotes a field that holds a comma, a quote or a newline.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_come_from_the_phases() {
        let span = |request, kind| Span {
            instance: 0,
            kind,
            request,
            start_ns: 0,
            end_ns: 1,
        };
        let spans = [
            span(0, SpanKind::ColdLoad),
            span(0, SpanKind::Inference),
            span(1, SpanKind::Inference),
            span(2, SpanKind::Switch),
            span(2, SpanKind::Inference),
        ];
        assert_eq!(
            loads(3, &spans),
            vec![Some(SpanKind::ColdLoad), None, Some(SpanKind::Switch)]
        );
        assert_eq!(csv_field("a,b"), "\"a,b\"");
    }
}
