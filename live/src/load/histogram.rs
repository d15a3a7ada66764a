//! A latency histogram with buckets 1 % wide (log-spaced), mergeable across processes and
//! small in JSON: percentiles within 0.5 % of the exact value, whatever the count.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Relative width of a bucket.
const GROWTH: f64 = 1.01;

/// Counts of latencies in microseconds, by log-spaced bucket.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    buckets: BTreeMap<u32, u64>,
    count: u64,
    sum_us: u64,
    min_us: u64,
    max_us: u64,
}

fn bucket(us: u64) -> u32 {
    ((us.max(1) as f64).ln() / GROWTH.ln()).floor() as u32
}

impl Histogram {
    /// Records one latency of `us` microseconds.
    pub fn record(&mut self, us: u64) {
        *self.buckets.entry(bucket(us)).or_default() += 1;
        self.min_us = if self.count == 0 {
            us
        } else {
            self.min_us.min(us)
        };
        self.max_us = self.max_us.max(us);
        self.count += 1;
        self.sum_us = self.sum_us.saturating_add(us);
    }

    /// Adds `other`'s counts.
    pub fn merge(&mut self, other: &Histogram) {
        if other.count == 0 {
            return;
        }
        for (&b, &n) in &other.buckets {
            *self.buckets.entry(b).or_default() += n;
        }
        self.min_us = if self.count == 0 {
            other.min_us
        } else {
            self.min_us.min(other.min_us)
        };
        self.max_us = self.max_us.max(other.max_us);
        self.count += other.count;
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
    }

    /// Latencies recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Mean, milliseconds (0 when empty).
    pub fn mean_ms(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum_us as f64 / self.count as f64 / 1000.0
        }
    }

    /// Largest, milliseconds.
    pub fn max_ms(&self) -> f64 {
        self.max_us as f64 / 1000.0
    }

    /// The `q`-quantile (0–1), milliseconds: the middle of the bucket holding it, clamped to
    /// the exact minimum and maximum, which are exact (0 when empty).
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        // The smallest and the largest are known exactly.
        if rank == 1 {
            return self.min_us as f64 / 1000.0;
        }
        if rank == self.count {
            return self.max_ms();
        }
        let mut seen = 0;
        for (&b, &n) in &self.buckets {
            seen += n;
            if seen >= rank {
                let mid = GROWTH.powf(b as f64 + 0.5);
                return mid.clamp(self.min_us as f64, self.max_us as f64) / 1000.0;
            }
        }
        self.max_ms()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_half_a_percent_and_merging_equals_recording_together() {
        let mut all = Histogram::default();
        let (mut a, mut b) = (Histogram::default(), Histogram::default());
        for us in 1..=100_000u64 {
            all.record(us);
            if us % 3 == 0 { &mut a } else { &mut b }.record(us);
        }
        a.merge(&b);
        assert_eq!(a, all);
        for (q, exact) in [(0.5, 50.0), (0.99, 99.0), (0.999, 99.9)] {
            let got = all.quantile_ms(q);
            assert!(
                (got - exact).abs() / exact < 0.005,
                "q{q}: {got} vs {exact}"
            );
        }
        assert_eq!(all.quantile_ms(1.0), 100.0);
        assert_eq!(all.quantile_ms(0.0), 0.001);
        assert!((all.mean_ms() - 50.0005).abs() < 1e-9);
        assert_eq!(Histogram::default().quantile_ms(0.5), 0.0);
        let json = serde_json::to_string(&all).unwrap();
        assert_eq!(serde_json::from_str::<Histogram>(&json).unwrap(), all);
    }
}
