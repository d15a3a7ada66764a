//! Simulated time: integer nanoseconds, with conversions that refuse nonsense.

/// A point in simulated time or a duration, in nanoseconds. `u64` covers 584 years.
pub type Nanos = u64;

/// Nanoseconds in a millisecond.
pub const NS_PER_MS: Nanos = 1_000_000;
/// Nanoseconds in a second.
pub const NS_PER_S: Nanos = 1_000_000_000;

/// Milliseconds (finite, ≥ 0) to nanoseconds, rounded to the nearest.
pub fn ms_to_ns(ms: f64) -> Nanos {
    assert!(
        ms.is_finite() && ms >= 0.0,
        "duration must be finite and ≥ 0, got {ms} ms"
    );
    (ms * NS_PER_MS as f64).round() as Nanos
}

/// Seconds (finite, ≥ 0) to nanoseconds, rounded to the nearest.
pub fn secs_to_ns(s: f64) -> Nanos {
    assert!(
        s.is_finite() && s >= 0.0,
        "duration must be finite and ≥ 0, got {s} s"
    );
    (s * NS_PER_S as f64).round() as Nanos
}

/// Nanoseconds to milliseconds.
pub fn ns_to_ms(ns: Nanos) -> f64 {
    ns as f64 / NS_PER_MS as f64
}

/// Nanoseconds to seconds.
pub fn ns_to_secs(ns: Nanos) -> f64 {
    ns as f64 / NS_PER_S as f64
}

/// Formats nanoseconds as milliseconds with exactly six decimals: lossless, so a trace written
/// with it reads back to the same nanosecond.
pub fn format_ms_exact(ns: Nanos) -> String {
    format!("{}.{:06}", ns / NS_PER_MS, ns % NS_PER_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_round_trip() {
        assert_eq!(ms_to_ns(1.5), 1_500_000);
        assert_eq!(secs_to_ns(0.1), 100_000_000);
        assert_eq!(ns_to_ms(2_500_000), 2.5);
        assert_eq!(format_ms_exact(1_234_567_891), "1234.567891");
        let ns = 98_765_432_109;
        let back: f64 = format_ms_exact(ns).parse().unwrap();
        assert_eq!(ms_to_ns(back), ns);
    }

    #[test]
    #[should_panic(expected = "finite")]
    fn negative_durations_are_refused() {
        ms_to_ns(-1.0);
    }
}
