//! Contention by resource and the host's work per dispatch, as a calibration measured them
//! through the path a live instance takes (worker threads calling the runtime's `Slot`).
//!
//! A device has three resources a phase can wait on ([`Resource`]): the SMs (forward passes),
//! the copy engine and its PCIe link (switches from the host cache, loads from the GPU pool,
//! prefetches into the pool: copies on one copy stream) and the host (cold loads and rebuilds:
//! checkpoint reads). How the phases on one resource share it ([`Sharing`]):
//!
//! - [`Sharing::Shared`]`(curve)`: processor sharing. With `n` phases on the resource each
//!   progresses at `1 / curve[n-1]` of its speed alone, where `curve[k-1]` is the time `k`
//!   simultaneous phases took until the last finished, over the time of one alone (so the
//!   resource's total rate with `k` is `k / curve[k-1]`, as measured). Beyond the measured `k`
//!   the total rate stays at its last measured value (`curve[K-1]·n/K`: the resource is
//!   saturated), an extrapolation the calibration states.
//! - [`Sharing::Fifo`]: one at a time in the order they started, each at its speed alone (a copy
//!   stream is one in-order queue); calibration chooses it when the first of `k` simultaneous
//!   phases finished in about the time of one alone.
//!
//! A copy alone is not all link time: its issue, its first chunk's latency and the wait for its
//! last are latency that, with copies queued back to back on the one stream, overlaps with the
//! copy before it. `link_occupancy` (when measured) is the fraction of a copy's time alone that
//! holds the link: `k` copies started at once end at `(1 − o + k·o)` times one alone (the slope
//! of the FIFO curve calibration measured), so a copy's phase is `(1 − o)` of its time alone as
//! unshared latency, then `o` of it on the link. Without it the whole copy holds the link.
//!
//! How passes share the SMs depends on their size: a small pass leaves most SMs idle, a large
//! one fills them. The SMs' sharing is measured with passes of `sm_tokens` tokens (rows ×
//! sequence length) and, when `sm_large` is given, with larger ones too, and — when `sm_sizes`
//! lists them — at sizes in between; a pass progresses at a rate interpolated linearly in
//! log(tokens) between the two nearest measured sizes (clamped outside), each side computed as
//! its sharing says ([`Contention::sm_at`]).
//!
//! Across resources only what was measured acts: a forward pass slows by
//! `forward_during_copy` while a copy is in flight, a copy by `copy_during_forward` while a
//! forward runs. Host work (cold loads) is not known to slow the others, nor they it. How much
//! a copy slows depends on the forwards beside it: `copy_during_forward` was measured with
//! passes of `sm_tokens` tokens running back to back; when `copy_during_forward_sizes` gives the
//! factors measured beside larger passes too, a copy's factor is interpolated between the
//! measured sizes like the SMs' sharing — linear in log(tokens), clamped outside — at the
//! *total* tokens of the passes on the SMs ([`Contention::copy_factor`]).
//!
//! [`HostOverhead`]: what a dispatch costs besides its load and its passes on the executor path
//! live uses — the hand-off of a job to an instance's worker thread and the report back, and the
//! worker's own host work around a request's passes (building inputs, gathering outputs). A
//! hand-off to a worker parked for a while (`handoff_ms`) costs a thread's wake-up; one to a
//! worker that reported its previous phase the same instant (`handoff_busy_ms`, when measured)
//! finds it hardly parked and is cheaper.

use super::{validate_stretch, Dist};
use crate::error::{Error, Result};
use crate::limits::MAX_STRETCH;
use serde::{Deserialize, Serialize};

/// What a phase waits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Resource {
    /// The streaming multiprocessors: forward passes.
    Sm,
    /// The copy engine and its link: switches, pool loads, prefetches.
    Link,
    /// The host: checkpoint reads (cold loads, rebuilds).
    Host,
}

impl Resource {
    /// Every resource, in index order.
    pub const ALL: [Resource; 3] = [Resource::Sm, Resource::Link, Resource::Host];

    /// Its index in [`Resource::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Lower-case name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Resource::Sm => "SMs",
            Resource::Link => "copy engine",
            Resource::Host => "host",
        }
    }
}

/// How the phases on one resource share it (see the module doc).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Sharing {
    /// Processor sharing: `n` phases each progress at `1 / curve[n-1]` of their speed alone.
    Shared(Vec<f64>),
    /// One at a time, in the order they started.
    Fifo,
}

impl Sharing {
    /// The factor by which each of `n` (≥ 1) phases on a shared resource is slower than alone:
    /// the curve's value, or beyond its end the last total rate held (`curve[K-1]·n/K`).
    /// 1 for an empty curve.
    pub fn factor(curve: &[f64], n: usize) -> f64 {
        let n = n.max(1);
        match curve.len() {
            0 => 1.0,
            k if n <= k => curve[n - 1],
            k => curve[k - 1] * n as f64 / k as f64,
        }
    }

    /// The largest factor a phase can see relative to its time alone, per unit of work queued
    /// ahead of or beside it: the largest `curve[k-1] / k` (at least 1) for a shared resource,
    /// 1 for a FIFO one. Bounds a run's end (see the engine's horizon check).
    pub fn max_per_phase(&self) -> f64 {
        match self {
            Sharing::Fifo => 1.0,
            Sharing::Shared(c) => c
                .iter()
                .enumerate()
                .map(|(i, f)| f / (i + 1) as f64)
                .fold(1.0, f64::max),
        }
    }

    fn validate(&self, field: &str) -> Result<()> {
        match self {
            Sharing::Fifo => Ok(()),
            Sharing::Shared(c) if c.is_empty() => Err(Error::invalid(
                field,
                "a shared resource needs its measured curve (Shared([1.0, …])); a resource not measured has no contention section",
            )),
            Sharing::Shared(c) => validate_stretch(c, field),
        }
    }
}

/// How one model's phases contend for the device (see the module doc).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contention {
    /// Forward passes on the SMs (measured: `k` instances running a request's passes at once).
    pub sm: Sharing,
    /// Tokens (rows × sequence length) of the passes `sm` was measured with.
    pub sm_tokens: u32,
    /// The SMs' sharing measured with larger passes, and their tokens, when measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sm_large: Option<(u32, Sharing)>,
    /// The SMs' sharing measured at sizes between `sm_tokens` and `sm_large`'s: `(tokens,
    /// sharing)` per size, sizes increasing, above `sm_tokens` and below `sm_large`'s (when
    /// given), when measured; at most [`MAX_SM_SIZES`]. Without it the SMs' sharing is
    /// interpolated between `sm` and `sm_large` alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sm_sizes: Vec<(u32, Sharing)>,
    /// Copies on the copy engine (measured: `k` instances switching at once).
    pub link: Sharing,
    /// Checkpoint reads on the host (measured: `k` instances loading cold at once).
    pub host: Sharing,
    /// Factor of a forward pass while a copy is in flight (measured: passes while another
    /// instance switches, over passes alone).
    pub forward_during_copy: f64,
    /// Factor of a copy while a forward pass runs (measured: switches while another instance
    /// runs passes, over switches alone).
    pub copy_during_forward: f64,
    /// The same factor measured while the other instance runs larger passes: `(tokens,
    /// factor)` per size (rows × sequence length), sizes increasing and above `sm_tokens`, when
    /// measured. Without it every copy beside a forward slows by `copy_during_forward`,
    /// whatever the forwards. A profile's older `copy_during_forward_large: Some((tokens,
    /// factor))` (one size) reads as one entry.
    #[serde(
        default,
        alias = "copy_during_forward_large",
        deserialize_with = "sizes_or_one",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub copy_during_forward_sizes: Vec<(u32, f64)>,
    /// The fraction of a copy's time alone that holds the link, in (0, 1] (see the module
    /// doc), when measured; `None`: all of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_occupancy: Option<f64>,
}

/// The most sizes `copy_during_forward_sizes` may list.
pub const MAX_COPY_SIZES: usize = 16;

/// The most sizes `sm_sizes` may list.
pub const MAX_SM_SIZES: usize = 16;

/// `copy_during_forward_sizes` as written (a list) or as older profiles wrote its one size
/// (`copy_during_forward_large: Some((tokens, factor))` or `None`).
fn sizes_or_one<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Vec<(u32, f64)>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Sizes {
        Many(Vec<(u32, f64)>),
        One(Option<(u32, f64)>),
    }
    Ok(match Sizes::deserialize(d)? {
        Sizes::Many(v) => v,
        Sizes::One(o) => o.into_iter().collect(),
    })
}

impl Contention {
    /// The sharing of `resource`.
    pub fn sharing(&self, resource: Resource) -> &Sharing {
        match resource {
            Resource::Sm => &self.sm,
            Resource::Link => &self.link,
            Resource::Host => &self.host,
        }
    }

    /// The SMs' measured sizes in increasing tokens: `sm_tokens`, each of `sm_sizes`, then
    /// `sm_large`'s when measured.
    fn sm_points(&self) -> impl Iterator<Item = (u32, &Sharing)> {
        std::iter::once((self.sm_tokens, &self.sm))
            .chain(self.sm_sizes.iter().map(|(t, s)| (*t, s)))
            .chain(self.sm_large.iter().map(|(t, s)| (*t, s)))
    }

    /// The sharing of the `i`-th measured size of the SMs (0: `sm`, then `sm_sizes`, then
    /// `sm_large`); the last one for `i` beyond them.
    pub fn sm_sharing(&self, i: usize) -> &Sharing {
        match i {
            0 => &self.sm,
            i if i <= self.sm_sizes.len() => &self.sm_sizes[i - 1].1,
            _ => match &self.sm_large {
                Some((_, s)) => s,
                None => self.sm_sizes.last().map_or(&self.sm, |(_, s)| s),
            },
        }
    }

    /// Where a pass of `tokens` tokens sits among the SMs' measured sizes: `(i, w)`, its rate
    /// `(1 − w)` of size `i`'s sharing's and `w` of size `i + 1`'s ([`Contention::sm_sharing`]),
    /// `w` linear in log(tokens) between the two nearest sizes: `(0, 0)` at or below
    /// `sm_tokens` (or with one size measured), `w = 1` towards the last size at or above it.
    pub fn sm_at(&self, tokens: u32) -> (usize, f64) {
        log_segment(self.sm_points().map(|(t, _)| t), u64::from(tokens))
    }

    /// The weight of the next measured size's sharing for a pass of `tokens` tokens on the SMs
    /// (`sm_at(tokens).1`): without `sm_sizes`, 0 at or below `sm_tokens` (or without
    /// `sm_large`), 1 at or above the large size, linear in log(tokens) between.
    pub fn sm_weight(&self, tokens: u32) -> f64 {
        self.sm_at(tokens).1
    }

    /// The largest factor a pass on the SMs can see relative to its time alone, per unit of
    /// work beside it, over every measured size ([`Sharing::max_per_phase`]).
    pub fn sm_max_per_phase(&self) -> f64 {
        self.sm_points()
            .map(|(_, s)| s.max_per_phase())
            .fold(1.0, f64::max)
    }

    /// The factor of a copy while passes of `tokens` tokens in total run on the SMs (≥ 1; the
    /// caller applies no factor when none runs): `copy_during_forward` without
    /// `copy_during_forward_sizes`; with them, the measured factors — `copy_during_forward` at
    /// `sm_tokens`, then each size's — interpolated linearly in log(tokens) between the two
    /// sizes around `tokens`, clamped outside.
    ///
    /// Total tokens, not the largest pass's: the factor measures how busy the device is beside
    /// the copy (one other instance running passes back to back), and concurrent passes add up
    /// — the SMs' curve shows `k` small passes overlapping, so `k` of them occupy the device
    /// more than one, up to the large pass's saturation where the clamp holds. With one pass
    /// in flight, as measured, total and largest agree.
    pub fn copy_factor(&self, tokens: u64) -> f64 {
        let sizes = std::iter::once(self.sm_tokens)
            .chain(self.copy_during_forward_sizes.iter().map(|&(t, _)| t));
        let factor = |i: usize| match i {
            0 => self.copy_during_forward,
            i => self.copy_during_forward_sizes[i - 1].1,
        };
        if self.copy_during_forward_sizes.is_empty() {
            return self.copy_during_forward;
        }
        let (i, w) = log_segment(sizes, tokens);
        factor(i) + w * (factor(i + 1) - factor(i))
    }

    /// A copy of `alone_ns` alone split into its unshared latency and its time on the link
    /// (`link_occupancy` of it, rounded to the nanosecond; see the module doc); the two add up
    /// to `alone_ns`.
    pub fn split_copy(&self, alone_ns: u64) -> (u64, u64) {
        let o = self.link_occupancy.unwrap_or(1.0).clamp(0.0, 1.0);
        let link = ((alone_ns as f64) * o).round() as u64;
        let link = link.min(alone_ns);
        (alone_ns - link, link)
    }

    /// The largest factor a copy can see beside forwards (bounds a run's end).
    pub fn max_copy_factor(&self) -> f64 {
        self.copy_during_forward_sizes
            .iter()
            .map(|&(_, f)| f)
            .fold(self.copy_during_forward, f64::max)
    }

    /// Refuses empty shared curves, factors outside (0, [`MAX_STRETCH`]] and a large pass size
    /// not above `sm_tokens`.
    pub fn validate(&self, field: &str) -> Result<()> {
        if self.sm_tokens == 0 {
            return Err(Error::invalid(
                format!("{field}.sm_tokens"),
                "expected the tokens of the measured passes (≥ 1)",
            ));
        }
        if let Some((tokens, sharing)) = &self.sm_large {
            if *tokens <= self.sm_tokens {
                return Err(Error::invalid(
                    format!("{field}.sm_large"),
                    format!(
                        "{tokens} tokens: expected larger passes than sm_tokens ({})",
                        self.sm_tokens
                    ),
                ));
            }
            sharing.validate(&format!("{field}.sm_large"))?;
        }
        if self.sm_sizes.len() > MAX_SM_SIZES {
            return Err(Error::invalid(
                format!("{field}.sm_sizes"),
                format!(
                    "{} sizes: expected at most {MAX_SM_SIZES}",
                    self.sm_sizes.len()
                ),
            ));
        }
        let mut below = self.sm_tokens;
        for (i, (tokens, sharing)) in self.sm_sizes.iter().enumerate() {
            let above = self.sm_large.as_ref().map_or(u32::MAX, |l| l.0);
            if *tokens <= below || *tokens >= above {
                return Err(Error::invalid(
                    format!("{field}.sm_sizes[{i}]"),
                    format!(
                        "{tokens} tokens: expected sizes increasing, above sm_tokens ({}) and \
                         below sm_large's tokens",
                        self.sm_tokens
                    ),
                ));
            }
            sharing.validate(&format!("{field}.sm_sizes[{i}]"))?;
            below = *tokens;
        }
        for r in Resource::ALL {
            let name = match r {
                Resource::Sm => "sm",
                Resource::Link => "link",
                Resource::Host => "host",
            };
            self.sharing(r).validate(&format!("{field}.{name}"))?;
        }
        let sizes = &self.copy_during_forward_sizes;
        if sizes.len() > MAX_COPY_SIZES {
            return Err(Error::invalid(
                format!("{field}.copy_during_forward_sizes"),
                format!("{} sizes: expected at most {MAX_COPY_SIZES}", sizes.len()),
            ));
        }
        let mut below = self.sm_tokens;
        for (i, &(tokens, _)) in sizes.iter().enumerate() {
            if tokens <= below {
                return Err(Error::invalid(
                    format!("{field}.copy_during_forward_sizes[{i}]"),
                    format!(
                        "{tokens} tokens: expected sizes increasing and above sm_tokens ({})",
                        self.sm_tokens
                    ),
                ));
            }
            below = tokens;
        }
        if let Some(o) = self.link_occupancy {
            if !(o > 0.0 && o <= 1.0) {
                return Err(Error::invalid(
                    format!("{field}.link_occupancy"),
                    format!("{o}: expected a fraction of a copy's time alone in (0, 1]"),
                ));
            }
        }
        let named = |i: usize| format!("copy_during_forward_sizes[{i}]");
        let factors = [
            ("forward_during_copy".to_string(), self.forward_during_copy),
            ("copy_during_forward".to_string(), self.copy_during_forward),
        ]
        .into_iter()
        .chain(sizes.iter().enumerate().map(|(i, &(_, f))| (named(i), f)));
        for (name, f) in factors {
            if !(f > 0.0 && f <= MAX_STRETCH) {
                return Err(Error::invalid(
                    format!("{field}.{name}"),
                    format!("{f}: expected a positive factor of at most {MAX_STRETCH}"),
                ));
            }
        }
        Ok(())
    }
}

/// Where `tokens` sits among increasing measured `sizes` (at least one): `(i, w)`, the point
/// `(1 − w)` of the way at size `i` and `w` at size `i + 1`, `w` linear in log(tokens) between
/// the two sizes around it; `(0, 0)` at or below the first size or with one size, the last
/// segment at `w = 1` at or above the last size. One rule for every curve measured at several
/// pass sizes (the SMs' sharing, a copy's factor beside passes).
fn log_segment(sizes: impl Iterator<Item = u32>, tokens: u64) -> (usize, f64) {
    let mut sizes = sizes.peekable();
    let Some(mut below) = sizes.next() else {
        return (0, 0.0);
    };
    let mut i = 0;
    while let Some(size) = sizes.next() {
        // Clamped above: the last segment at full weight.
        if tokens <= u64::from(size) || sizes.peek().is_none() {
            return (i, log_weight(tokens, below, size));
        }
        (i, below) = (i + 1, size);
    }
    (0, 0.0)
}

/// The weight of the `large` end for `tokens`: 0 at or below `small`, 1 at or above `large`,
/// linear in log(tokens) between (0 when `large` is not above `small`).
fn log_weight(tokens: u64, small: u32, large: u32) -> f64 {
    if large <= small || tokens <= small as u64 {
        return 0.0;
    }
    let small = small.max(1) as f64;
    let span = (large as f64 / small).ln();
    ((tokens as f64 / small).ln() / span).clamp(0.0, 1.0)
}

/// The host's work of one dispatch besides its load and its forward passes (see the module
/// doc), milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostOverhead {
    /// A job handed to an instance's worker thread and its report back (paid once per
    /// dispatch, by its first phase), the worker parked on its channel for a while.
    pub handoff_ms: Dist,
    /// The same for a dispatch to an instance the instant its previous phase ended (its worker
    /// reported and waits on its channel again, barely parked), when measured; without it
    /// such a dispatch pays `handoff_ms` too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handoff_busy_ms: Option<Dist>,
    /// The worker's host work around a request's passes that a forward-pass figure does not
    /// time (inputs built and staged, outputs gathered), for a request of one pass; measured
    /// on requests sent to a worker that just reported, beyond the busy hand-off (what a
    /// parked worker costs more is `handoff_ms`'s).
    pub staging_ms: Dist,
    /// Each further pass of the request adds this much host work, milliseconds (≥ 0).
    pub staging_per_pass_ms: f64,
    /// How it was measured (the shape, repeats, what was subtracted).
    #[serde(default)]
    pub method: String,
}

impl HostOverhead {
    /// The hand-off figure of a dispatch: `handoff_busy_ms` (when measured) to an instance
    /// whose previous phase ended the same instant (`busy`), `handoff_ms` otherwise.
    pub fn handoff(&self, busy: bool) -> &Dist {
        match &self.handoff_busy_ms {
            Some(d) if busy => d,
            _ => &self.handoff_ms,
        }
    }

    /// Mean host work of a dispatch whose inference runs `passes` passes (a hand-off to a
    /// parked worker), milliseconds.
    pub fn mean_ms(&self, passes: u32) -> f64 {
        self.handoff_ms.mean()
            + self.staging_ms.mean()
            + self.staging_per_pass_ms * passes.saturating_sub(1) as f64
    }

    /// Refuses bad distributions and a negative or oversized per-pass figure.
    pub fn validate(&self, field: &str) -> Result<()> {
        self.handoff_ms.validate(&format!("{field}.handoff_ms"))?;
        if let Some(d) = &self.handoff_busy_ms {
            d.validate(&format!("{field}.handoff_busy_ms"))?;
        }
        self.staging_ms.validate(&format!("{field}.staging_ms"))?;
        let p = self.staging_per_pass_ms;
        if !(p.is_finite() && (0.0..=crate::limits::MAX_COST_MS).contains(&p)) {
            return Err(Error::invalid(
                format!("{field}.staging_per_pass_ms"),
                format!("{p}: expected a finite value ≥ 0 of at most one hour"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_factors_hold_the_last_total_rate_beyond_the_curve() {
        let c = [1.0, 1.5, 2.4];
        assert_eq!(Sharing::factor(&c, 1), 1.0);
        assert_eq!(Sharing::factor(&c, 3), 2.4);
        // 3 phases ran at a total rate of 3 / 2.4 = 1.25; 6 keep that total rate.
        assert!((Sharing::factor(&c, 6) - 4.8).abs() < 1e-12);
        assert_eq!(Sharing::factor(&[], 5), 1.0);
        assert_eq!(Sharing::Shared(c.to_vec()).max_per_phase(), 1.0);
        assert_eq!(Sharing::Shared(vec![1.0, 2.6]).max_per_phase(), 1.3);
    }

    #[test]
    fn validation_names_the_field() {
        let c = Contention {
            sm: Sharing::Shared(vec![1.0, 1.4]),
            sm_tokens: 128,
            sm_large: None,
            sm_sizes: Vec::new(),
            link: Sharing::Fifo,
            host: Sharing::Shared(vec![]),
            forward_during_copy: 1.05,
            copy_during_forward: 1.1,
            copy_during_forward_sizes: Vec::new(),
            link_occupancy: None,
        };
        let e = c.validate("m.contention").unwrap_err().to_string();
        assert!(e.contains("m.contention.host"), "{e}");
        let c = Contention {
            host: Sharing::Fifo,
            copy_during_forward: 0.0,
            ..c
        };
        let e = c.validate("m.contention").unwrap_err().to_string();
        assert!(e.contains("copy_during_forward"), "{e}");
        let c = Contention {
            copy_during_forward: 1.0,
            sm_large: Some((64, Sharing::Shared(vec![1.0, 2.0]))),
            ..c
        };
        let e = c.validate("m.contention").unwrap_err().to_string();
        assert!(e.contains("sm_large") && e.contains("64 tokens"), "{e}");
        let c = Contention {
            sm_large: Some((128 * 16, Sharing::Shared(vec![1.0, 2.0]))),
            ..c
        };
        c.validate("m.contention").unwrap();
        assert_eq!(c.sm_weight(100), 0.0);
        assert!((c.sm_weight(512) - 0.5).abs() < 1e-12);
        assert_eq!(c.sm_weight(1 << 20), 1.0);
        let h = HostOverhead {
            handoff_ms: Dist::Constant(0.05),
            handoff_busy_ms: None,
            staging_ms: Dist::Constant(0.1),
            staging_per_pass_ms: -1.0,
            method: String::new(),
        };
        assert!(h
            .validate("m.host")
            .unwrap_err()
            .to_string()
            .contains("staging_per_pass_ms"));
        let h = HostOverhead {
            staging_per_pass_ms: 0.02,
            ..h
        };
        assert!((h.mean_ms(16) - (0.15 + 0.3)).abs() < 1e-12);
        // Without a busy figure every dispatch pays the parked one.
        assert_eq!(h.handoff(true), &Dist::Constant(0.05));
        let h = HostOverhead {
            handoff_busy_ms: Some(Dist::Constant(0.01)),
            ..h
        };
        assert_eq!(h.handoff(true), &Dist::Constant(0.01));
        assert_eq!(h.handoff(false), &Dist::Constant(0.05));
        let bad = HostOverhead {
            handoff_busy_ms: Some(Dist::Constant(-1.0)),
            ..h
        };
        let e = bad.validate("m.host").unwrap_err().to_string();
        assert!(e.contains("handoff_busy_ms"), "{e}");
    }

    fn sized(sizes: &[(u32, f64)]) -> Contention {
        Contention {
            sm: Sharing::Shared(vec![1.0, 1.4]),
            sm_tokens: 128,
            sm_large: None,
            sm_sizes: Vec::new(),
            link: Sharing::Fifo,
            host: Sharing::Fifo,
            forward_during_copy: 1.0,
            copy_during_forward: 1.35,
            copy_during_forward_sizes: sizes.to_vec(),
            link_occupancy: None,
        }
    }

    #[test]
    fn a_copy_splits_into_latency_and_link_time_that_add_up() {
        let c = sized(&[]);
        assert_eq!(
            c.split_copy(4_000_000),
            (0, 4_000_000),
            "unmeasured: all on the link"
        );
        let c = Contention {
            link_occupancy: Some(0.975),
            ..c
        };
        c.validate("m.contention").unwrap();
        assert_eq!(c.split_copy(4_000_000), (100_000, 3_900_000));
        let (l, k) = c.split_copy(4_000_001);
        assert_eq!(l + k, 4_000_001);
        assert_eq!(c.split_copy(0), (0, 0));
        for bad in [0.0, -0.5, 1.01, f64::NAN] {
            let c = Contention {
                link_occupancy: Some(bad),
                ..c.clone()
            };
            let e = c.validate("m.contention").unwrap_err().to_string();
            assert!(e.contains("m.contention.link_occupancy"), "{e}");
        }
    }

    #[test]
    fn copy_factor_interpolates_in_log_tokens_between_the_measured_ends() {
        // Without the large figure: the small one at every size.
        let c = sized(&[]);
        for t in [0, 1, 128, 2048, 1 << 30] {
            assert_eq!(c.copy_factor(t), 1.35);
        }
        assert_eq!(c.max_copy_factor(), 1.35);
        // Measured 1.35 at 128 tokens and 1.05 at 2,048: the ends hold (clamped outside),
        // 512 tokens is halfway in log(tokens), and the factor moves one way in between.
        let c = sized(&[(2048, 1.05)]);
        c.validate("m.contention").unwrap();
        assert_eq!(c.copy_factor(1), 1.35);
        assert_eq!(c.copy_factor(128), 1.35);
        assert!((c.copy_factor(2048) - 1.05).abs() < 1e-12);
        assert!((c.copy_factor(1 << 20) - 1.05).abs() < 1e-12);
        assert!((c.copy_factor(512) - 1.20).abs() < 1e-12);
        let mut last = f64::INFINITY;
        for t in (128..=2048).step_by(64) {
            let f = c.copy_factor(t);
            assert!(f <= last && (1.05..=1.35).contains(&f), "{t}: {f}");
            last = f;
        }
        assert_eq!(c.max_copy_factor(), 1.35);
        // A larger factor with larger passes: increasing, and the bound is the large one.
        let c = sized(&[(2048, 1.8)]);
        assert!(c.copy_factor(300) > 1.35 && c.copy_factor(300) < 1.8);
        assert_eq!(c.max_copy_factor(), 1.8);
        // Refused: large passes not larger than the small ones, a factor out of range.
        let e = sized(&[(128, 1.1)]).validate("m.contention").unwrap_err();
        assert!(
            e.to_string().contains("copy_during_forward_sizes[0]"),
            "{e}"
        );
        let e = sized(&[(4096, 0.0)]).validate("m.contention").unwrap_err();
        assert!(
            e.to_string().contains("copy_during_forward_sizes[0]"),
            "{e}"
        );
    }

    #[test]
    fn several_sizes_interpolate_piece_by_piece_and_must_increase() {
        // 1.35 at 128 tokens, 1.5 at 1,024, 4.0 at 16,384.
        let c = sized(&[(1024, 1.5), (16384, 4.0)]);
        c.validate("m.contention").unwrap();
        assert_eq!(c.copy_factor(64), 1.35);
        assert!((c.copy_factor(1024) - 1.5).abs() < 1e-12);
        // 4,096 is halfway between 1,024 and 16,384 in log(tokens).
        assert!((c.copy_factor(4096) - 2.75).abs() < 1e-12);
        // 362 tokens: halfway between 128 and 1,024 (2^8.5 ≈ 362.04).
        let mid = (128.0f64 * 1024.0).sqrt().round() as u64;
        assert!((c.copy_factor(mid) - 1.425).abs() < 1e-3);
        assert_eq!(c.copy_factor(1 << 30), 4.0);
        assert_eq!(c.max_copy_factor(), 4.0);
        let e = sized(&[(2048, 1.5), (1024, 2.0)])
            .validate("m.contention")
            .unwrap_err();
        assert!(
            e.to_string().contains("copy_during_forward_sizes[1]"),
            "{e}"
        );
        let many: Vec<(u32, f64)> = (0..=MAX_COPY_SIZES as u32)
            .map(|i| (256 + i, 1.1))
            .collect();
        let e = sized(&many).validate("m.contention").unwrap_err();
        assert!(e.to_string().contains("at most"), "{e}");
    }

    #[test]
    fn an_older_profile_s_one_large_size_reads_as_one_entry() {
        let text = |field: &str| {
            format!(
                "(sm: Shared([1.0, 1.4]), sm_tokens: 128, link: Fifo, host: Fifo, \
                 forward_during_copy: 1.0, copy_during_forward: 1.35{field})"
            )
        };
        let read = |field: &str| ron::from_str::<Contention>(&text(field)).unwrap();
        assert_eq!(
            read(", copy_during_forward_large: Some((2048, 1.8))").copy_during_forward_sizes,
            vec![(2048, 1.8)]
        );
        assert!(read(", copy_during_forward_large: None")
            .copy_during_forward_sizes
            .is_empty());
        assert!(read("").copy_during_forward_sizes.is_empty());
        let c = read(", copy_during_forward_sizes: [(1024, 1.5), (16384, 4.0)]");
        assert_eq!(c.copy_during_forward_sizes, vec![(1024, 1.5), (16384, 4.0)]);
        // Written back, the list.
        let back = ron::to_string(&c).unwrap();
        assert!(back.contains("copy_during_forward_sizes"), "{back}");
        assert_eq!(ron::from_str::<Contention>(&back).unwrap(), c);
    }

    fn measured_at(sizes: &[u32], large: Option<u32>) -> Contention {
        let curve = |t: u32| Sharing::Shared(vec![1.0, 1.0 + t as f64 / 1000.0]);
        Contention {
            sm: curve(128),
            sm_large: large.map(|t| (t, curve(t))),
            sm_sizes: sizes.iter().map(|&t| (t, curve(t))).collect(),
            ..sized(&[])
        }
    }

    #[test]
    fn the_sms_sharing_interpolates_between_the_two_nearest_measured_sizes() {
        // Measured at 128, 512, 2,048 and 16,384 tokens.
        let c = measured_at(&[512, 2048], Some(16384));
        c.validate("m.contention").unwrap();
        assert_eq!(c.sm_at(64), (0, 0.0));
        assert_eq!(c.sm_at(128), (0, 0.0));
        // 256 is halfway between 128 and 512 in log(tokens); 1,024 between 512 and 2,048.
        assert!(matches!(c.sm_at(256), (0, w) if (w - 0.5).abs() < 1e-12));
        assert_eq!(c.sm_at(512), (0, 1.0));
        assert!(matches!(c.sm_at(1024), (1, w) if (w - 0.5).abs() < 1e-12));
        assert_eq!(c.sm_at(2048), (1, 1.0));
        // 4,096 is a third of the way from 2,048 to 16,384 (ratios 2 of 8).
        assert!(matches!(c.sm_at(4096), (2, w) if (w - 1.0 / 3.0).abs() < 1e-12));
        // Clamped above: the last size at full weight.
        assert_eq!(c.sm_at(1 << 20), (2, 1.0));
        let want = |t: u32| 1.0 + t as f64 / 1000.0;
        let second = |i: usize| match c.sm_sharing(i) {
            Sharing::Shared(v) => v[1],
            Sharing::Fifo => f64::NAN,
        };
        assert_eq!(
            [second(0), second(1), second(2), second(3)],
            [128, 512, 2048, 16384].map(want)
        );
        assert_eq!(second(9), want(16384), "beyond the sizes: the last");
        assert_eq!(c.sm_max_per_phase(), want(16384) / 2.0);
        // Sizes without a large one: the last size clamps.
        let c = measured_at(&[512], None);
        c.validate("m.contention").unwrap();
        assert!(matches!(c.sm_at(256), (0, w) if (w - 0.5).abs() < 1e-12));
        assert_eq!(c.sm_at(4096), (0, 1.0));
        assert_eq!(c.sm_sharing(1), &Sharing::Shared(vec![1.0, 1.512]));
    }

    #[test]
    fn without_sm_sizes_the_two_point_rule_holds() {
        // The weight of the large sharing, as it was before sm_sizes: segment 0 always.
        let c = measured_at(&[], Some(16384));
        for t in [1, 128, 129, 300, 1024, 16383, 16384, 1 << 30] {
            let (i, w) = c.sm_at(t);
            assert_eq!(i, 0, "{t}");
            assert_eq!(
                w.to_bits(),
                log_weight(t as u64, 128, 16384).to_bits(),
                "{t}"
            );
        }
        assert_eq!(c.sm_sharing(1), &Sharing::Shared(vec![1.0, 17.384]));
        let c = measured_at(&[], None);
        assert_eq!(c.sm_at(1 << 20), (0, 0.0));
        assert_eq!(c.sm_max_per_phase(), 1.0);
    }

    #[test]
    fn sm_sizes_must_increase_between_the_small_and_large_sizes() {
        let field = |c: Contention| c.validate("m.contention").unwrap_err().to_string();
        let e = field(measured_at(&[128], Some(16384)));
        assert!(
            e.contains("m.contention.sm_sizes[0]") && e.contains("128 tokens"),
            "{e}"
        );
        let e = field(measured_at(&[512, 512], Some(16384)));
        assert!(e.contains("sm_sizes[1]"), "{e}");
        let e = field(measured_at(&[512, 16384], Some(16384)));
        assert!(e.contains("sm_sizes[1]"), "{e}");
        let mut c = measured_at(&[512], None);
        c.sm_sizes[0].1 = Sharing::Shared(vec![]);
        assert!(field(c).contains("sm_sizes[0]"));
        let many: Vec<u32> = (0..=MAX_SM_SIZES as u32).map(|i| 256 + i).collect();
        assert!(field(measured_at(&many, None)).contains("at most"));
        // Absent from older profiles, written only when measured, read back as written.
        let text = "(sm: Shared([1.0, 1.4]), sm_tokens: 128, link: Fifo, host: Fifo, \
                    forward_during_copy: 1.0, copy_during_forward: 1.35)";
        let old = ron::from_str::<Contention>(text).unwrap();
        assert!(old.sm_sizes.is_empty());
        assert!(!ron::to_string(&old).unwrap().contains("sm_sizes"));
        let c = measured_at(&[512, 2048], Some(16384));
        let back = ron::to_string(&c).unwrap();
        assert!(back.contains("sm_sizes"), "{back}");
        assert_eq!(ron::from_str::<Contention>(&back).unwrap(), c);
    }
}
