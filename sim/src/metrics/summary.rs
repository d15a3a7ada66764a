//! Distribution summaries: mean and nearest-rank percentiles.

use crate::time::{ns_to_ms, Nanos};
use serde::{Deserialize, Serialize};

/// Mean, median, tail percentiles and maximum of a set of durations, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Summary {
    /// Mean.
    pub mean: f64,
    /// 50th percentile.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Maximum.
    pub max: f64,
}

impl Summary {
    /// Summarises durations in nanoseconds (sorts them in place). All zero when empty.
    pub fn of_ns(values: &mut [Nanos]) -> Summary {
        if values.is_empty() {
            return Summary::default();
        }
        values.sort_unstable();
        let n = values.len();
        let sum: u128 = values.iter().map(|&v| v as u128).sum();
        Summary {
            mean: ns_to_ms((sum / n as u128) as Nanos)
                + ((sum % n as u128) as f64 / n as f64) / 1e6,
            p50: ns_to_ms(nearest_rank(values, 50)),
            p95: ns_to_ms(nearest_rank(values, 95)),
            p99: ns_to_ms(nearest_rank(values, 99)),
            max: ns_to_ms(values[n - 1]),
        }
    }
}

/// The p-th percentile of sorted `values` by nearest rank: the ⌈p·n/100⌉-th smallest.
pub fn nearest_rank(sorted: &[Nanos], p: u32) -> Nanos {
    let n = sorted.len();
    let rank = (p as usize * n).div_ceil(100).max(1);
    sorted[rank - 1]
}

/// Percentiles 0, 1, …, 100 of sorted `values` in milliseconds (0 = the minimum); empty when
/// there are no values.
pub fn quantiles_ms(sorted: &[Nanos]) -> Vec<f64> {
    if sorted.is_empty() {
        return Vec::new();
    }
    (0..=100)
        .map(|p| {
            ns_to_ms(if p == 0 {
                sorted[0]
            } else {
                nearest_rank(sorted, p)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut v: Vec<Nanos> = (1..=100).rev().map(|x| x * 1_000_000).collect();
        let s = Summary::of_ns(&mut v);
        assert_eq!((s.p50, s.p95, s.p99, s.max), (50.0, 95.0, 99.0, 100.0));
        assert_eq!(s.mean, 50.5);
        let mut one = vec![7_000_000];
        assert_eq!(Summary::of_ns(&mut one).p50, 7.0);
        assert_eq!(Summary::of_ns(&mut []).max, 0.0);
        let q = quantiles_ms(&v);
        assert_eq!((q.len(), q[0], q[50], q[100]), (101, 1.0, 50.0, 100.0));
    }
}
