//! Forward-pass latency over (batch, sequence length), interpolated between measured points as
//! the [profile module](super) describes.

use super::{stretch_at, validate_stretch, Dist};
use crate::error::{Error, Result};
use crate::limits::{MAX_FORWARD_POINTS, MAX_SAMPLES, MAX_SEQ_LEN};
use serde::{Deserialize, Serialize};

/// One measured forward pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardPoint {
    /// Samples in the batch.
    pub batch: u32,
    /// Tokens per sample.
    pub seq_len: u32,
    /// Latency of one forward pass, milliseconds.
    pub ms: Dist,
    /// The measurement behind `ms`, when calibrated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured: Option<super::Measured>,
}

/// Measured forward passes and their stretch under contention.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardTable {
    /// Measured points; at most one per (batch, seq_len).
    pub points: Vec<ForwardPoint>,
    /// Factor with k instances busy at `stretch[k-1]`; empty means 1.0.
    #[serde(default)]
    pub stretch: Vec<f64>,
}

impl ForwardTable {
    /// Refuses an empty or oversized table, zero or oversized shapes, duplicates and bad
    /// distributions.
    pub fn validate(&self, field: &str) -> Result<()> {
        if self.points.is_empty() || self.points.len() > MAX_FORWARD_POINTS {
            return Err(Error::invalid(
                format!("{field}.points"),
                format!(
                    "{} points: expected 1 to {MAX_FORWARD_POINTS} measured points",
                    self.points.len()
                ),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, p) in self.points.iter().enumerate() {
            let f = format!("{field}.points[{i}]");
            if !(1..=MAX_SAMPLES).contains(&p.batch) || !(1..=MAX_SEQ_LEN).contains(&p.seq_len) {
                return Err(Error::invalid(
                    f,
                    format!(
                        "batch {} and seq_len {}: expected 1 to {MAX_SAMPLES} and 1 to {MAX_SEQ_LEN}",
                        p.batch, p.seq_len
                    ),
                ));
            }
            p.ms.validate(&format!("{f}.ms"))?;
            if !seen.insert((p.batch, p.seq_len)) {
                return Err(Error::invalid(
                    f,
                    format!("duplicate point batch {} seq_len {}", p.batch, p.seq_len),
                ));
            }
        }
        validate_stretch(&self.stretch, &format!("{field}.stretch"))
    }

    /// The stretch factor with `busy` instances busy.
    pub fn stretch_at(&self, busy: usize) -> f64 {
        stretch_at(&self.stretch, busy)
    }

    /// Mean latency of one forward pass of `batch` × `seq_len`, milliseconds.
    pub fn mean_ms(&self, batch: u32, seq_len: u32) -> f64 {
        let mut seqs: Vec<u32> = self.points.iter().map(|p| p.seq_len).collect();
        seqs.sort_unstable();
        seqs.dedup();
        let row = |s: u32| -> f64 {
            let mut row: Vec<(u32, f64)> = self
                .points
                .iter()
                .filter(|p| p.seq_len == s)
                .map(|p| (p.batch, p.ms.mean()))
                .collect();
            row.sort_unstable_by_key(|p| p.0);
            interpolate(&row, batch)
        };
        let rows: Vec<(u32, f64)> = seqs.iter().map(|&s| (s, row(s))).collect();
        interpolate(&rows, seq_len)
    }

    /// The measured point nearest to (`batch`, `seq_len`) in log scale, for its noise.
    pub fn nearest(&self, batch: u32, seq_len: u32) -> &ForwardPoint {
        let d = |p: &ForwardPoint| {
            (p.batch as f64 / batch as f64).ln().abs()
                + (p.seq_len as f64 / seq_len as f64).ln().abs()
        };
        self.points
            .iter()
            .min_by(|a, b| d(a).total_cmp(&d(b)))
            .expect("validated: at least one point")
    }
}

/// Piecewise-linear in `x` over sorted `(x, y)`; clamped below the first point, proportional
/// above the last.
fn interpolate(points: &[(u32, f64)], x: u32) -> f64 {
    let (first, last) = (points[0], points[points.len() - 1]);
    if x <= first.0 {
        return first.1;
    }
    if x >= last.0 {
        return last.1 * x as f64 / last.0 as f64;
    }
    let i = points.partition_point(|p| p.0 <= x);
    let (a, b) = (points[i - 1], points[i]);
    a.1 + (b.1 - a.1) * (x - a.0) as f64 / (b.0 - a.0) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> ForwardTable {
        let p = |batch, seq_len, ms| ForwardPoint {
            batch,
            seq_len,
            ms: Dist::Constant(ms),
            measured: None,
        };
        ForwardTable {
            points: vec![
                p(1, 128, 1.0),
                p(8, 128, 2.0),
                p(1, 256, 2.0),
                p(8, 256, 4.0),
            ],
            stretch: vec![],
        }
    }

    #[test]
    fn exact_points_are_returned() {
        let t = table();
        assert_eq!(t.mean_ms(1, 128), 1.0);
        assert_eq!(t.mean_ms(8, 256), 4.0);
    }

    #[test]
    fn interpolates_between_and_extrapolates_beyond() {
        let t = table();
        assert!((t.mean_ms(4, 128) - (1.0 + 3.0 / 7.0)).abs() < 1e-12);
        assert!((t.mean_ms(1, 192) - 1.5).abs() < 1e-12);
        assert_eq!(
            t.mean_ms(16, 128),
            4.0,
            "proportional above the largest batch"
        );
        assert_eq!(t.mean_ms(1, 64), 1.0, "clamped below the smallest sequence");
        assert_eq!(t.mean_ms(8, 512), 8.0);
        assert_eq!(t.nearest(7, 250).batch, 8);
    }

    #[test]
    fn duplicates_are_refused() {
        let mut t = table();
        t.points.push(t.points[0].clone());
        assert!(t
            .validate("f")
            .unwrap_err()
            .to_string()
            .contains("duplicate"));
    }
}
