//! Per-instance timelines: what each instance did, phase by phase, idle gaps included.
//!
//! CSV columns: `instance,kind,start_ms,end_ms,request,tenant`, with `kind` one of `cold_load`,
//! `switch`, `inference`, `idle` (idle rows have empty request and tenant). Rows are sorted by
//! instance, then start; every instance's rows tile [0, end of run] without gaps or overlaps.

use crate::engine::{Span, SpanKind};
use crate::time::{format_ms_exact, Nanos};
use crate::workload::Workload;
use std::fmt::Write as _;

/// One row of a timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    /// The instance.
    pub instance: u32,
    /// What it did; `None` = idle.
    pub kind: Option<SpanKind>,
    /// Start.
    pub start_ns: Nanos,
    /// End.
    pub end_ns: Nanos,
    /// The request served (not for idle rows).
    pub request: Option<u32>,
}

/// Sorts `spans` per instance and fills the idle gaps up to `end_ns`.
pub fn rows(spans: &[Span], instances: usize, end_ns: Nanos) -> Vec<Row> {
    let mut spans = spans.to_vec();
    spans.sort_by_key(|s| (s.instance, s.start_ns, s.end_ns));
    let mut out = Vec::with_capacity(spans.len() * 2 + instances);
    for i in 0..instances as u32 {
        let mut t = 0;
        for s in spans.iter().filter(|s| s.instance == i) {
            assert!(s.start_ns >= t, "phases of one instance never overlap");
            if s.start_ns > t {
                out.push(Row {
                    instance: i,
                    kind: None,
                    start_ns: t,
                    end_ns: s.start_ns,
                    request: None,
                });
            }
            out.push(Row {
                instance: i,
                kind: Some(s.kind),
                start_ns: s.start_ns,
                end_ns: s.end_ns,
                request: Some(s.request),
            });
            t = s.end_ns;
        }
        if end_ns > t {
            out.push(Row {
                instance: i,
                kind: None,
                start_ns: t,
                end_ns,
                request: None,
            });
        }
    }
    out
}

/// The name of a row's kind in the CSV.
pub fn kind_name(kind: Option<SpanKind>) -> &'static str {
    match kind {
        Some(SpanKind::ColdLoad) => "cold_load",
        Some(SpanKind::Switch) => "switch",
        Some(SpanKind::PoolLoad) => "pool_load",
        Some(SpanKind::Inference) => "inference",
        None => "idle",
    }
}

/// The timeline as CSV.
pub fn csv(spans: &[Span], instances: usize, workload: &Workload) -> String {
    let end_ns = spans.iter().map(|s| s.end_ns).max().unwrap_or(0);
    let mut out = String::from("instance,kind,start_ms,end_ms,request,tenant\n");
    for r in rows(spans, instances, end_ns) {
        let (request, tenant) = match r.request {
            Some(id) => {
                let t = workload.requests[id as usize].tenant as usize;
                (id.to_string(), workload.tenants[t].name.clone())
            }
            None => (String::new(), String::new()),
        };
        let _ = writeln!(
            out,
            "{},{},{},{},{request},{tenant}",
            r.instance,
            kind_name(r.kind),
            format_ms_exact(r.start_ns),
            format_ms_exact(r.end_ns)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_gaps_are_filled_up_to_the_end() {
        let spans = [
            Span {
                instance: 0,
                kind: SpanKind::Switch,
                request: 0,
                start_ns: 10,
                end_ns: 20,
            },
            Span {
                instance: 0,
                kind: SpanKind::Inference,
                request: 0,
                start_ns: 20,
                end_ns: 30,
            },
            Span {
                instance: 1,
                kind: SpanKind::Inference,
                request: 1,
                start_ns: 0,
                end_ns: 40,
            },
        ];
        let rows = rows(&spans, 2, 40);
        let kinds: Vec<_> = rows
            .iter()
            .map(|r| (r.instance, kind_name(r.kind), r.start_ns, r.end_ns))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (0, "idle", 0, 10),
                (0, "switch", 10, 20),
                (0, "inference", 20, 30),
                (0, "idle", 30, 40),
                (1, "inference", 0, 40),
            ]
        );
    }
}
