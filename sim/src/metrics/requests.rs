//! The per-request CSV: one row per request of a run, what happened to it and where.
//!
//! Columns: `policy,seed,request,tenant,arrival_ms,start_ms,end_ms,wait_ms,latency_ms,
//! deadline_ms,overtime,instance,load,load_source,batch`.
//! - `load`: what the instance did before running it: `none`, `pool_load`, `switch` or
//!   `cold_load`;
//! - `load_source`: the tier its weights came from: `arena` (the executor held them), `pool`
//!   (the GPU weight pool, device to device), `host` (the host cache) or `file` (its
//!   checkpoint);
//! - `batch`: the number of the batch it ran in (batches numbered in dispatch order; requests
//!   that shared a batch have the same number).
//!
//! Times are milliseconds with six decimals (exact nanoseconds).

use crate::engine::Run;
use crate::error::{Error, Result};
use crate::ledger::Load;
use crate::time::format_ms_exact;
use crate::workload::Workload;
use std::fmt::Write as _;

/// The CSV header line (with its newline).
pub const HEADER: &str =
    "policy,seed,request,tenant,arrival_ms,start_ms,end_ms,wait_ms,latency_ms,\
deadline_ms,overtime,instance,load,load_source,batch\n";

/// Appends one row per request of `run` to `out`.
pub fn write_rows(
    out: &mut String,
    policy: &str,
    seed: u64,
    workload: &Workload,
    run: &Run,
) -> Result<()> {
    if run.load.len() != workload.requests.len() {
        return Err(Error::invalid(
            "per-request rows",
            format!(
                "the run recorded {} requests, the workload has {}",
                run.load.len(),
                workload.requests.len()
            ),
        ));
    }
    for (i, r) in workload.requests.iter().enumerate() {
        let (start, end) = (run.start_ns[i], run.end_ns[i]);
        let latency = end - r.arrival_ns;
        let (load, source) = match run.load[i] {
            Load::None => ("none", "arena"),
            Load::Pool => ("pool_load", "pool"),
            Load::Switch => ("switch", "host"),
            Load::Cold => ("cold_load", "file"),
        };
        let _ = writeln!(
            out,
            "{policy},{seed},{i},{},{},{},{},{},{},{},{},{},{load},{source},{}",
            csv_field(&workload.tenants[r.tenant as usize].name),
            format_ms_exact(r.arrival_ns),
            format_ms_exact(start),
            format_ms_exact(end),
            format_ms_exact(start - r.arrival_ns),
            format_ms_exact(latency),
            format_ms_exact(r.deadline_ns),
            u8::from(latency > r.deadline_ns),
            run.served_by[i],
            run.batch[i],
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
    fn fields_are_quoted_when_needed() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("plain"), "plain");
    }
}
