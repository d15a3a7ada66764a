//! Comparing two runs or two sweeps cell by cell: `ptm compare A B`.
//!
//! Each side is a list of keyed reports: a sweep's cells are keyed by their configuration,
//! policy and seed ([`keyed_cells`]), a run's reports by policy and seed ([`keyed_reports`]).
//! Cells with the same key are paired; for each headline metric the comparison gives A, B and
//! the relative change (B − A) / A.

use crate::error::{Error, Result};
use crate::metrics::Report;
use crate::sweep::CellReport;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A metric compared: (name, value).
pub type Metric = (&'static str, fn(&Report) -> f64);

/// The metrics compared, in order.
pub const METRICS: [Metric; 7] = [
    ("throughput_rps", |r| r.throughput_rps),
    ("slo_attainment", |r| r.slo_attainment),
    ("overtimes", |r| r.overtimes as f64),
    ("switches", |r| r.switches as f64),
    ("latency_mean_ms", |r| r.latency_ms.mean),
    ("latency_p99_ms", |r| r.latency_ms.p99),
    ("gpu_busy_frac", |r| r.gpu_busy_frac),
];

/// One metric of one pair.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// Side A's value.
    pub a: f64,
    /// Side B's value.
    pub b: f64,
}

impl Change {
    /// (B − A) / A; `None` when A is 0 (and B is not).
    pub fn relative(&self) -> Option<f64> {
        if self.a != 0.0 {
            Some((self.b - self.a) / self.a)
        } else if self.b == 0.0 {
            Some(0.0)
        } else {
            None
        }
    }
}

/// One pair of cells.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pair {
    /// The key both share.
    pub key: String,
    /// Per metric of [`METRICS`], in order.
    pub changes: Vec<Change>,
}

/// A comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Pairs, in side A's order.
    pub pairs: Vec<Pair>,
    /// Keys only side A has.
    pub only_a: Vec<String>,
    /// Keys only side B has.
    pub only_b: Vec<String>,
}

/// A sweep's cells keyed by configuration, policy and seed.
pub fn keyed_cells(cells: &[CellReport]) -> Vec<(String, Report)> {
    cells
        .iter()
        .map(|c| {
            (
                format!("{} {} seed={}", c.cell.config(), c.cell.policy, c.cell.seed),
                c.report.clone(),
            )
        })
        .collect()
}

/// A run's reports keyed by policy and seed.
pub fn keyed_reports(reports: &[Report]) -> Vec<(String, Report)> {
    reports
        .iter()
        .map(|r| (format!("{} seed={}", r.policy, r.seed), r.clone()))
        .collect()
}

/// Pairs the cells of `a` and `b` by key. Refuses a side with a key twice, and two sides with
/// no key in common.
pub fn compare(a: &[(String, Report)], b: &[(String, Report)]) -> Result<Comparison> {
    let index = |side: &[(String, Report)], name: &str| -> Result<BTreeMap<String, usize>> {
        let mut m = BTreeMap::new();
        for (i, (k, _)) in side.iter().enumerate() {
            if m.insert(k.clone(), i).is_some() {
                return Err(Error::invalid(
                    format!("compare {name}"),
                    format!("the cell {k:?} appears twice"),
                ));
            }
        }
        Ok(m)
    };
    let (ia, ib) = (index(a, "A")?, index(b, "B")?);
    let mut pairs = Vec::new();
    let mut only_a = Vec::new();
    for (k, ra) in a {
        match ib.get(k) {
            Some(&j) => pairs.push(Pair {
                key: k.clone(),
                changes: METRICS
                    .iter()
                    .map(|(_, f)| Change {
                        a: f(ra),
                        b: f(&b[j].1),
                    })
                    .collect(),
            }),
            None => only_a.push(k.clone()),
        }
    }
    let only_b = b
        .iter()
        .filter(|(k, _)| !ia.contains_key(k))
        .map(|(k, _)| k.clone())
        .collect();
    if pairs.is_empty() {
        return Err(Error::invalid(
            "compare",
            format!(
                "the two sides share no cell (A has e.g. {:?}, B {:?}): compare two runs or two sweeps of one grid",
                a.first().map(|c| &c.0),
                b.first().map(|c| &c.0)
            ),
        ));
    }
    Ok(Comparison {
        pairs,
        only_a,
        only_b,
    })
}
