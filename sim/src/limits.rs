//! The bounds on what a file or flag may ask the simulator for, in one place.
//!
//! Every size and duration a scenario, trace or profile can give is bounded, and an input beyond
//! a bound is refused with the bound in the message — never saturated, wrapped or allocated
//! blindly. The bounds are far above anything measured or replayed, and together they keep all
//! simulated times well inside `u64` nanoseconds (584 years):
//!
//! | what | bound |
//! | --- | --- |
//! | instances per GPU | [`MAX_INSTANCES`] (1,024) |
//! | requests per workload | [`MAX_REQUESTS`] (10,000,000) |
//! | tenants per workload | [`MAX_TENANTS`] (1,000,000) |
//! | samples per request / per forward pass | [`MAX_SAMPLES`] (1,000,000) |
//! | tokens per sample | [`MAX_SEQ_LEN`] (1,000,000) |
//! | an arrival, gap, deadline or policy constant | [`MAX_TIME_MS`] (10 years) |
//! | a profile cost's constant, mean, median, std or largest value, and any one draw | [`MAX_COST_MS`] (1 hour) |
//! | a contention stretch factor | [`MAX_STRETCH`] (1,000) |
//! | measured points of a forward table | [`MAX_FORWARD_POINTS`] (10,000) |
//! | a run's worst-case end (last arrival + every request's longest phases back to back) | [`MAX_RUN_NS`] (100 years) |
//! | cells of a sweep grid | [`MAX_CELLS`] (1,000,000) |
//! | a trace file | [`MAX_FILE_BYTES`] (1 GiB) |
//! | OMLS's tick | at least [`MIN_TICK_MS`] (1 µs) |
//!
//! Normal and log-normal draws are truncated at [`TAIL_SIGMAS`] standard deviations (of `ln X`
//! for log-normal), which happens with probability 6·10⁻¹⁶ per draw, and at one hour (see
//! [`crate::profile::dist`]).

use crate::error::{Error, Result};
use crate::time::{Nanos, NS_PER_MS};

/// Most parallel instances on one GPU.
pub const MAX_INSTANCES: usize = 1024;
/// Most requests in one workload (trace rows or generated requests).
pub const MAX_REQUESTS: usize = 10_000_000;
/// Most tenants in one workload.
pub const MAX_TENANTS: u32 = 1_000_000;
/// Most samples in one request, and in one forward pass.
pub const MAX_SAMPLES: u32 = 1_000_000;
/// Most tokens per sample.
pub const MAX_SEQ_LEN: u32 = 1_000_000;
/// Longest time a file may give (an arrival, a gap, a deadline, a policy constant): 10 years
/// of 365 days, in milliseconds.
pub const MAX_TIME_MS: f64 = 10.0 * 365.0 * 86_400_000.0;
/// [`MAX_TIME_MS`] in nanoseconds.
pub const MAX_TIME_NS: Nanos = 10 * 365 * 86_400 * 1_000_000_000;
/// Longest draw of one profile cost: one hour, in milliseconds.
pub const MAX_COST_MS: f64 = 3_600_000.0;
/// Largest contention stretch factor.
pub const MAX_STRETCH: f64 = 1000.0;
/// Normal and log-normal draws are truncated this many standard deviations above the centre.
pub const TAIL_SIGMAS: f64 = 8.0;
/// Latest possible end of a run: 100 years of 365 days, in nanoseconds.
pub const MAX_RUN_NS: Nanos = 100 * 365 * 86_400 * 1_000_000_000;
/// Most measured points in a profile's forward table.
pub const MAX_FORWARD_POINTS: usize = 10_000;
/// Most cells in a sweep grid.
pub const MAX_CELLS: usize = 1_000_000;
/// Largest trace file read.
pub const MAX_FILE_BYTES: u64 = 1 << 30;
/// Shortest OMLS tick, milliseconds (1 µs).
pub const MIN_TICK_MS: f64 = 0.001;

/// `value` milliseconds as nanoseconds, or an error naming `field` unless it is finite, ≥ 0 and
/// at most [`MAX_TIME_MS`].
pub fn time_ms(field: &str, value: f64) -> Result<Nanos> {
    checked_ms(value).ok_or_else(|| Error::invalid(field, time_message(value, "ms")))
}

/// `value` milliseconds as nanoseconds when it is finite, ≥ 0 and at most [`MAX_TIME_MS`].
pub fn checked_ms(value: f64) -> Option<Nanos> {
    // NaN fails the range test.
    (0.0..=MAX_TIME_MS)
        .contains(&value)
        .then(|| (value * NS_PER_MS as f64).round() as Nanos)
}

/// What [`time_ms`] says about a refused value in `unit` ("ms" or "s").
pub fn time_message(value: f64, unit: &str) -> String {
    format!("{value:?} {unit}: expected a finite time ≥ 0 and at most 10 years ({MAX_TIME_MS} ms)")
}

/// A count of `what` refused for exceeding `max`.
pub fn too_many(what: &str, got: impl std::fmt::Display, max: impl std::fmt::Display) -> String {
    format!("{got} {what}: at most {max} are allowed")
}

/// Nanoseconds as a short human duration for messages (`3.2 years`, `5.0 h`, `12 ms`).
pub fn human_ns(ns: f64) -> String {
    let s = ns / 1e9;
    if !s.is_finite() {
        return format!("{s} s");
    }
    if s >= 365.0 * 86_400.0 {
        format!("{:.1} years", s / (365.0 * 86_400.0))
    } else if s >= 3600.0 {
        format!("{:.1} h", s / 3600.0)
    } else if s >= 1.0 {
        format!("{s:.1} s")
    } else {
        format!("{:.3} ms", s * 1e3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_fit_in_nanoseconds_with_room() {
        // Arrivals, deadlines and the run's end stay far from u64::MAX (584 years).
        let max_time_ns = MAX_TIME_MS * NS_PER_MS as f64;
        assert_eq!(max_time_ns as Nanos, MAX_TIME_NS);
        assert!(max_time_ns * 2.0 < MAX_RUN_NS as f64);
        assert!((MAX_RUN_NS as f64) * 5.0 < u64::MAX as f64);
        assert_eq!(time_ms("f", 1.5).unwrap(), 1_500_000);
        assert_eq!(time_ms("f", MAX_TIME_MS).unwrap(), 315_360_000_000_000_000);
        for bad in [-1.0, f64::NAN, f64::INFINITY, MAX_TIME_MS * 1.01, 1e15] {
            let e = time_ms("x.arrival_ms", bad).unwrap_err().to_string();
            assert!(
                e.starts_with("x.arrival_ms: ") && e.contains("10 years"),
                "{e}"
            );
        }
        assert_eq!(human_ns(3.6e12), "1.0 h");
    }
}
