//! Live between recordings of the same cell: how far a live replay moves from one call to the
//! next, beside the simulator's error against each recording.
//!
//! A live replay is one run of a real system: the same cell recorded in two device calls (same
//! scenario, policy, seed) gives two different live results — the device's own variation, and,
//! where the recordings used other profiles, the live schedulers' estimates, which come from the
//! profile (BENCHMARKS.md has the H200's figures). A fidelity target tighter than that spread
//! cannot be judged on one recording; the bootstrap intervals of the table cover the requests of
//! one run, not this.
//! So `ptm fidelity-table`, given several recordings of a cell (files of the same name from
//! several calls), adds a section with live's range over them — throughput, mean and p99 — and
//! the simulator's mean error against each recording, and says whether every recording's
//! simulated half is the same (the same profile and build simulate identically).
//!
//! Recordings are grouped by the file label and the live report's scenario, policy, instances,
//! requests and seed; a group of one adds nothing. Spread = (max − min) / min of the live
//! values, percent.

use super::{error_pct, Cell};
use std::fmt::Write as _;

/// The key recordings of one cell share.
fn key(label: &str, c: &Cell) -> (String, String, String, usize, usize, u64) {
    let l = &c.live;
    (
        label.to_string(),
        l.scenario.clone(),
        l.policy.clone(),
        l.instances,
        l.requests,
        l.seed,
    )
}

/// `(min, max, spread %)` of `values` (at least one).
fn range(values: impl Iterator<Item = f64>) -> (f64, f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    let spread = if lo > 0.0 {
        (hi - lo) / lo * 100.0
    } else {
        0.0
    };
    (lo, hi, spread)
}

/// The section (markdown, empty when no cell was recorded twice), groups in order of their
/// first recording.
pub fn section(cells: &[(String, Cell)]) -> String {
    let mut groups: Vec<(_, Vec<&Cell>)> = Vec::new();
    for (label, c) in cells {
        let k = key(label, c);
        match groups.iter_mut().find(|(g, _)| *g == k) {
            Some((_, v)) => v.push(c),
            None => groups.push((k, vec![c])),
        }
    }
    let mut out = String::new();
    for ((label, _, policy, instances, _, _), runs) in groups.iter().filter(|(_, v)| v.len() > 1) {
        if out.is_empty() {
            let _ = writeln!(
                out,
                "\n### Live between recordings of the same cell\n\nThe same cell recorded more \
                 than once (other calls, or repeats in one): live's range over the recordings (spread = (max − \
                 min)/min) and the simulator's mean error against each, in order. A spread \
                 wider than a target means one recording cannot judge that target.\n"
            );
            let _ = writeln!(
                out,
                "| cell | policy | inst | recordings | live thr req/s (spread) | live mean ms \
                 (spread) | live p99 ms (spread) | sim mean err per recording | the same \
                 simulation |"
            );
            let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
        }
        let fmt = |(lo, hi, spread): (f64, f64, f64), digits: usize| {
            format!("{lo:.digits$}–{hi:.digits$} ({spread:.1} %)")
        };
        let thr = range(runs.iter().map(|c| c.live.throughput_rps));
        let mean = range(runs.iter().map(|c| c.live.latency_ms.mean));
        let p99 = range(runs.iter().map(|c| c.live.latency_ms.p99));
        let errs: Vec<String> = runs
            .iter()
            .map(|c| {
                c.simulated.as_ref().map_or("n/a".to_string(), |s| {
                    format!(
                        "{:+.1} %",
                        error_pct(s.latency_ms.mean, c.live.latency_ms.mean)
                    )
                })
            })
            .collect();
        let first = runs[0].simulated.as_ref();
        let same = if runs.iter().all(|c| c.simulated.is_some())
            && runs.iter().all(|c| c.simulated.as_ref() == first)
        {
            "yes"
        } else {
            "no (other profiles or builds)"
        };
        let _ = writeln!(
            out,
            "| {label} | {policy} | {instances} | {} | {} | {} | {} | {} | {same} |",
            runs.len(),
            fmt(thr, 2),
            fmt(mean, 3),
            fmt(p99, 3),
            errs.join(", "),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::tests::recorded_cells;
    use super::*;

    #[test]
    fn only_cells_recorded_twice_appear_with_live_range_and_errors() {
        let cells = recorded_cells();
        // One recording of each: nothing.
        let once: Vec<(String, Cell)> =
            cells.iter().map(|c| ("a".to_string(), c.clone())).collect();
        assert_eq!(section(&once), "");
        // The first cell again, its live mean 10 % higher: a group of two.
        let mut again = cells[0].clone();
        again.live.latency_ms.mean *= 1.1;
        let mut twice = once.clone();
        twice.push(("a".to_string(), again.clone()));
        let s = section(&twice);
        assert_eq!(s.matches("\n| a |").count(), 1, "{s}");
        assert!(s.contains("(10.0 %)"), "{s}");
        assert!(s.contains("| 2 |"), "{s}");
        // The same simulated half in both: "yes"; errors against each recording, in order.
        assert!(s.contains("| yes |"), "{s}");
        let sim = cells[0].simulated.as_ref().unwrap().latency_ms.mean;
        let e0 = error_pct(sim, cells[0].live.latency_ms.mean);
        let e1 = error_pct(sim, again.live.latency_ms.mean);
        assert!(s.contains(&format!("{e0:+.1} %, {e1:+.1} %")), "{s}");
        // Another label (file) is another cell; another simulated half says so.
        let mut other = twice.clone();
        other[1].0 = "b".to_string();
        let mut resim = again;
        resim.simulated.as_mut().unwrap().latency_ms.mean += 1.0;
        other.push(("a".to_string(), resim));
        let s = section(&other);
        assert!(s.contains("no (other profiles or builds)"), "{s}");
    }
}
