//! Admission control on measured times: a request is admitted only if the work already
//! admitted ahead of it plus its own service fits in its deadline, where both are estimated
//! from what the instances actually took, not from the profile alone.
//!
//! Each instance's executor is wrapped in a [`super::timed::Timed`] executor that measures
//! every load and inference; they feed an exponentially weighted moving average per (model,
//! shape bucket) ([`ServiceModel`]). Until a shape has been measured its estimate is the profile's, scaled by
//! how far measured times have been from the profile's so far. [`Admission`] keeps the
//! estimates of the requests admitted and not yet answered (the live queue, at most `--queue`
//! plus one per instance) and what each instance holds and since when it has been busy.
//!
//! What the instances' times leave out (hand-offs, the coordinator, the HTTP path, a loaded
//! machine) is learnt from the answers: each answered request's response time against the
//! estimate it was admitted on gives an error; its moving average (if positive) plus its mean
//! absolute deviation is added to every estimate ([`Correction`], as TCP's retransmission
//! timer adds four deviations to its smoothed round trip), so requests admitted near their
//! deadline are not late by what the estimates systematically miss.

use super::timed::{lock, Measured, Shared};
use ptm_sim::time::Nanos;
use ptm_sim::workload::{RequestId, TenantId};
use std::collections::BTreeMap;
use std::time::Instant;

/// Weight of a new measurement in the moving averages.
pub const EWMA_ALPHA: f64 = 0.2;

/// A shape bucket: samples and sequence length rounded up to powers of two.
fn bucket(samples: u32, seq_len: u32) -> (u32, u32) {
    (
        samples.max(1).next_power_of_two(),
        seq_len.max(1).next_power_of_two(),
    )
}

fn ewma(slot: &mut Option<f64>, x: f64) {
    *slot = Some(slot.map_or(x, |m| m + EWMA_ALPHA * (x - m)));
}

/// Measured service times: moving averages per (model, shape bucket) for inference and per
/// (model, cold or switch) for loads, and the ratio of measured to profile estimates.
#[derive(Debug, Default, Clone)]
pub struct ServiceModel {
    inference_ns: BTreeMap<(usize, (u32, u32)), f64>,
    load_ns: BTreeMap<(usize, bool), f64>,
    /// Moving average of measured / profile inference time.
    ratio: Option<f64>,
}

impl ServiceModel {
    /// Records an inference of `model` of `samples` × `seq_len` that took `ns` where the
    /// profile expected `prior_ns`.
    pub fn observe_inference(
        &mut self,
        model: usize,
        samples: u32,
        seq_len: u32,
        ns: Nanos,
        prior_ns: Nanos,
    ) {
        let key = (model, bucket(samples, seq_len));
        let mut slot = self.inference_ns.get(&key).copied();
        ewma(&mut slot, ns as f64);
        if let Some(v) = slot {
            self.inference_ns.insert(key, v);
        }
        if prior_ns > 0 {
            ewma(&mut self.ratio, ns as f64 / prior_ns as f64);
        }
    }

    /// Records a load of `model` (`cold`: from its file; else a switch) that took `ns`.
    pub fn observe_load(&mut self, model: usize, cold: bool, ns: Nanos) {
        let mut slot = self.load_ns.get(&(model, cold)).copied();
        ewma(&mut slot, ns as f64);
        if let Some(v) = slot {
            self.load_ns.insert((model, cold), v);
        }
    }

    /// Estimated inference of `model` of `samples` × `seq_len`; `prior_ns` is the profile's.
    pub fn inference_ns(&self, model: usize, samples: u32, seq_len: u32, prior_ns: Nanos) -> Nanos {
        match self.inference_ns.get(&(model, bucket(samples, seq_len))) {
            Some(&m) => m as Nanos,
            None => (prior_ns as f64 * self.ratio.unwrap_or(1.0).max(1.0)) as Nanos,
        }
    }

    /// Whether inferences of `model` of this shape's bucket have been measured.
    pub fn has_inference(&self, model: usize, samples: u32, seq_len: u32) -> bool {
        self.inference_ns
            .contains_key(&(model, bucket(samples, seq_len)))
    }

    /// Whether nothing has been measured yet.
    pub fn is_empty(&self) -> bool {
        self.inference_ns.is_empty()
    }

    /// Estimated load of `model` (`cold` or a switch); `prior_ns` is the profile's. Until
    /// this kind of load is measured, the other kind's measurement (if larger) stands in: a
    /// profile that underestimates one usually underestimates both.
    pub fn load_ns(&self, model: usize, cold: bool, prior_ns: Nanos) -> Nanos {
        match self.load_ns.get(&(model, cold)) {
            Some(&m) => m as Nanos,
            None => self
                .load_ns
                .get(&(model, !cold))
                .map_or(prior_ns, |&m| prior_ns.max(m as Nanos)),
        }
    }
}

/// The profile's estimates, as the coordinator's setup gives them.
pub trait Priors {
    /// The model index of `tenant`.
    fn model_of(&self, tenant: TenantId) -> usize;
    /// The profile's inference of `tenant` of `samples` × `seq_len`.
    fn inference_ns(&self, tenant: TenantId, samples: u32, seq_len: u32) -> Nanos;
    /// The profile's load into an instance holding `from` (`None`: cold).
    fn load_ns(&self, from: Option<TenantId>, tenant: TenantId) -> Nanos;
}

/// An admitted request not yet answered: what its estimate is recomputed from, and when it
/// was admitted on which estimate.
#[derive(Debug, Clone, Copy)]
struct Outstanding {
    tenant: TenantId,
    samples: u32,
    seq_len: u32,
    /// Its tenant's model index and the profile's inference estimate: fixed for the request,
    /// so each arrival's estimate only looks up the measured times.
    model: usize,
    prior_ns: Nanos,
    load_ns: Nanos,
    admitted_ns: Nanos,
    estimated_ns: Nanos,
}

/// How far answered requests' response times have been from the estimates they were admitted
/// on: moving averages of the error (response − estimate) and of its absolute deviation.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Correction {
    /// Mean error, nanoseconds (positive: the estimates were short).
    pub error_ns: f64,
    /// Mean absolute deviation of the error from that mean, nanoseconds.
    pub deviation_ns: f64,
    /// Answers observed.
    pub answers: u64,
}

impl Correction {
    /// Takes in one answer that took `response_ns` where `estimated_ns` was expected.
    pub fn observe(&mut self, response_ns: Nanos, estimated_ns: Nanos) {
        let e = response_ns as f64 - estimated_ns as f64;
        if self.answers == 0 {
            self.error_ns = e;
            self.deviation_ns = e.abs() / 2.0;
        } else {
            self.deviation_ns += EWMA_ALPHA * ((e - self.error_ns).abs() - self.deviation_ns);
            self.error_ns += EWMA_ALPHA * (e - self.error_ns);
        }
        self.answers += 1;
    }

    /// What to add to an estimate: the mean error if the estimates were short, plus one mean
    /// deviation (0 before any answer).
    pub fn margin_ns(&self) -> Nanos {
        if self.answers == 0 {
            return 0;
        }
        (self.error_ns.max(0.0) + self.deviation_ns).max(0.0) as Nanos
    }
}

/// The live queue: the requests admitted and not yet answered, and the measured service
/// times their estimates are made from (recomputed at each arrival, so a measurement that
/// arrives after a request was admitted corrects its estimate too).
pub struct Admission<'p> {
    priors: &'p dyn Priors,
    model: ServiceModel,
    outstanding: BTreeMap<RequestId, Outstanding>,
    correction: Correction,
}

/// A request's estimated wait and service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Estimate {
    /// Until it would start: the admitted work ahead shared by the instances.
    pub wait_ns: Nanos,
    /// Its own inference.
    pub inference_ns: Nanos,
    /// Its own load (0 if an instance holds its tenant).
    pub load_ns: Nanos,
    /// What recent answers say the estimates miss ([`Correction::margin_ns`]).
    pub margin_ns: Nanos,
    /// Nothing has been measured yet and every instance has work: the wait is unknown.
    pub unknown_wait: bool,
    /// Its inference estimate is the profile's (its shape not measured yet).
    pub from_profile: bool,
}

impl Estimate {
    /// Its own load and inference.
    pub fn service_ns(&self) -> Nanos {
        self.inference_ns + self.load_ns
    }

    /// Estimated response time (`Nanos::MAX` when the wait is unknown).
    pub fn finish_ns(&self) -> Nanos {
        if self.unknown_wait {
            return Nanos::MAX;
        }
        self.wait_ns
            .saturating_add(self.service_ns())
            .saturating_add(self.margin_ns)
    }

    /// Why a request with `deadline_ns` is refused.
    pub fn refusal(&self, deadline_ns: Nanos) -> String {
        let deadline_ms = deadline_ns as f64 / 1e6;
        if self.unknown_wait {
            return format!(
                "cannot promise deadline_ms {deadline_ms}: every instance has work and no \
                 service time has been measured yet"
            );
        }
        format!(
            "cannot meet deadline_ms {deadline_ms}: estimated {:.1} ms of admitted work ahead \
             plus {:.1} ms of its own ({}) plus {:.1} ms that recent answers took beyond their \
             estimates",
            self.wait_ns as f64 / 1e6,
            self.service_ns() as f64 / 1e6,
            if self.from_profile {
                "the profile's estimate, this shape not measured yet"
            } else {
                "measured service times"
            },
            self.margin_ns as f64 / 1e6,
        )
    }
}

impl<'p> Admission<'p> {
    /// Nothing admitted yet; estimates start from `priors`.
    pub fn new(priors: &'p dyn Priors) -> Self {
        Admission {
            priors,
            model: ServiceModel::default(),
            outstanding: BTreeMap::new(),
            correction: Correction::default(),
        }
    }

    /// Takes in the instances' new measurements.
    pub fn absorb(&mut self, live: &Shared) {
        let measured = std::mem::take(&mut lock(live).measured);
        for m in measured {
            match m {
                Measured::Load { tenant, cold, ns } => {
                    self.model
                        .observe_load(self.priors.model_of(tenant), cold, ns)
                }
                Measured::Inference {
                    tenant,
                    samples,
                    seq_len,
                    ns,
                } => self.model.observe_inference(
                    self.priors.model_of(tenant),
                    samples,
                    seq_len,
                    ns,
                    self.priors.inference_ns(tenant, samples, seq_len),
                ),
            }
        }
    }

    /// Estimates a request of `tenant` of `samples` × `seq_len` arriving now.
    pub fn estimate(
        &self,
        live: &Shared,
        tenant: TenantId,
        samples: u32,
        seq_len: u32,
    ) -> Estimate {
        let model = self.priors.model_of(tenant);
        let infer = self.model.inference_ns(
            model,
            samples,
            seq_len,
            self.priors.inference_ns(tenant, samples, seq_len),
        );
        // The instances' state is read under the lock their executors take around every load
        // and pass; the queue's work is summed after it is released.
        let live = lock(live);
        let instances = live.held.len().max(1);
        // It runs on weights already there if an instance holds its tenant and either nothing
        // queues ahead of it or everything ahead is of its tenant too; else (the instances
        // will have moved on to other tenants by then) it needs a load.
        let held = live.held.contains(&Some(tenant))
            && (self.outstanding.len() < instances
                || self.outstanding.values().all(|o| o.tenant == tenant));
        let load = if held {
            0
        } else {
            // The cheapest way in: a switch from a held tenant, or a cold load of an empty one.
            let empty = live.held.iter().any(Option::is_none);
            let switch = live.held.iter().flatten().next().map(|&from| {
                self.model
                    .load_ns(model, false, self.priors.load_ns(Some(from), tenant))
            });
            let cold = self
                .model
                .load_ns(model, true, self.priors.load_ns(None, tenant));
            match (switch, empty) {
                (Some(s), true) => s.min(cold),
                (Some(s), false) => s,
                (None, _) => cold,
            }
        };
        let now = Instant::now();
        let elapsed: Nanos = live
            .busy_since
            .iter()
            .flatten()
            .map(|t| now.duration_since(*t).as_nanos() as Nanos)
            .sum();
        drop(live);
        let ahead: Nanos = self
            .outstanding
            .values()
            .map(|o| {
                self.model
                    .inference_ns(o.model, o.samples, o.seq_len, o.prior_ns)
                    + o.load_ns
            })
            .sum();
        Estimate {
            wait_ns: ahead.saturating_sub(elapsed) / instances as Nanos,
            inference_ns: infer,
            load_ns: load,
            margin_ns: self.correction.margin_ns(),
            unknown_wait: self.model.is_empty() && self.outstanding.len() >= instances,
            from_profile: !self.model.has_inference(model, samples, seq_len),
        }
    }

    /// Records admitted request `id` (of `tenant`, `samples` × `seq_len`), admitted at `now_ns`
    /// on `estimate`.
    pub fn admit(
        &mut self,
        id: RequestId,
        tenant: TenantId,
        (samples, seq_len): (u32, u32),
        estimate: &Estimate,
        now_ns: Nanos,
    ) {
        self.outstanding.insert(
            id,
            Outstanding {
                tenant,
                samples,
                seq_len,
                model: self.priors.model_of(tenant),
                prior_ns: self.priors.inference_ns(tenant, samples, seq_len),
                load_ns: estimate.load_ns,
                admitted_ns: now_ns,
                estimated_ns: estimate.finish_ns(),
            },
        );
    }

    /// Forgets request `id`, answered at `now_ns`; its response time against its estimate
    /// feeds the [`Correction`].
    pub fn done(&mut self, id: RequestId, now_ns: Nanos) {
        if let Some(o) = self.outstanding.remove(&id) {
            if o.estimated_ns != Nanos::MAX {
                self.correction
                    .observe(now_ns.saturating_sub(o.admitted_ns), o.estimated_ns);
            }
        }
    }

    /// How far answers have been from their estimates.
    pub fn correction(&self) -> Correction {
        self.correction
    }

    /// Requests admitted and not yet answered.
    pub fn outstanding(&self) -> usize {
        self.outstanding.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::timed::shared;

    struct Flat;
    impl Priors for Flat {
        fn model_of(&self, _: TenantId) -> usize {
            0
        }
        fn inference_ns(&self, _: TenantId, samples: u32, _: u32) -> Nanos {
            1_000_000 * samples as Nanos
        }
        fn load_ns(&self, from: Option<TenantId>, _: TenantId) -> Nanos {
            if from.is_some() {
                2_000_000
            } else {
                5_000_000
            }
        }
    }

    #[test]
    fn measurements_replace_the_profile_and_correct_unmeasured_shapes() {
        let mut m = ServiceModel::default();
        assert_eq!(m.inference_ns(0, 4, 32, 4_000_000), 4_000_000);
        // Measured 10× slower than the profile, repeatedly: the average converges on it.
        for _ in 0..50 {
            m.observe_inference(0, 4, 30, 40_000_000, 4_000_000);
        }
        let est = m.inference_ns(0, 3, 17, 4_000_000);
        assert!((39_000_000..=40_000_000).contains(&est), "{est}");
        // An unmeasured shape: the profile's estimate scaled by the measured ratio.
        let other = m.inference_ns(0, 64, 128, 1_000_000);
        assert!((9_900_000..=10_000_000).contains(&other), "{other}");
        // A faster-than-profile history never scales an unmeasured estimate below the profile.
        let mut fast = ServiceModel::default();
        fast.observe_inference(0, 1, 8, 1, 1_000);
        assert_eq!(fast.inference_ns(0, 64, 128, 1_000), 1_000);
        m.observe_load(0, false, 3_000_000);
        assert_eq!(m.load_ns(0, false, 1), 3_000_000);
        assert_eq!(m.load_ns(0, true, 7), 3_000_000);
        assert_eq!(m.load_ns(0, true, 9_000_000), 9_000_000);
        assert_eq!(m.load_ns(1, true, 7), 7);
    }

    #[test]
    fn the_wait_is_the_outstanding_work_shared_by_the_instances() {
        let live = shared(2);
        let mut a = Admission::new(&Flat);
        // Nothing held: a cold load plus the inference.
        let e = a.estimate(&live, 0, 2, 8);
        assert_eq!(
            (e.wait_ns, e.service_ns(), e.unknown_wait),
            (0, 7_000_000, false)
        );
        lock(&live).held[0] = Some(1);
        // One instance empty, one holding another tenant: the cheaper switch.
        assert_eq!(a.estimate(&live, 0, 2, 8).service_ns(), 4_000_000);
        lock(&live).held[1] = Some(0);
        let e = a.estimate(&live, 0, 2, 8);
        assert_eq!(e.service_ns(), 2_000_000);
        a.admit(1, 0, (30, 8), &e, 0);
        // Nothing measured yet: one request per instance, then the wait is unknown.
        assert!(!a.estimate(&live, 0, 2, 8).unknown_wait);
        a.admit(2, 0, (10, 8), &e, 0);
        let e = a.estimate(&live, 0, 2, 8);
        assert!(e.unknown_wait);
        assert_eq!(e.finish_ns(), Nanos::MAX);
        assert!(e
            .refusal(5_000_000)
            .contains("no service time has been measured"));
        // A measurement: the outstanding requests' estimates are recomputed from it.
        lock(&live).measured.push(Measured::Inference {
            tenant: 0,
            samples: 2,
            seq_len: 8,
            ns: 4_000_000,
        });
        a.absorb(&live);
        assert!(lock(&live).measured.is_empty());
        let e = a.estimate(&live, 0, 2, 8);
        assert_eq!((e.inference_ns, e.unknown_wait), (4_000_000, false));
        // Unmeasured shapes: the profile's 30 and 10 ms, doubled (measured 2× the profile).
        assert_eq!(e.wait_ns, (60_000_000 + 20_000_000) / 2);
        assert_eq!(a.outstanding(), 2);
        a.done(1, 2_000_000);
        a.done(1, 2_000_000);
        assert_eq!(a.estimate(&live, 0, 2, 8).wait_ns, 10_000_000);
        a.done(2, 2_000_000);
        assert_eq!(a.outstanding(), 0);
        assert_eq!(a.estimate(&live, 0, 2, 8).finish_ns(), 4_000_000);
        assert!(a
            .estimate(&live, 0, 2, 8)
            .refusal(1)
            .contains("measured service"));
    }

    #[test]
    fn answers_later_than_their_estimates_widen_the_next_estimates() {
        let live = shared(1);
        lock(&live).held[0] = Some(0);
        let mut a = Admission::new(&Flat);
        let e = a.estimate(&live, 0, 1, 8);
        assert_eq!((e.finish_ns(), e.margin_ns), (1_000_000, 0));
        // Every answer comes 5 ms after its 1 ms estimate (what the instance's own times
        // leave out): the margin converges on the 5 ms.
        for id in 0..40 {
            let e = a.estimate(&live, 0, 1, 8);
            a.admit(id, 0, (1, 8), &e, 100 * id as u64);
            a.done(id, 100 * id as u64 + e.finish_ns() + 5_000_000);
        }
        let c = a.correction();
        assert_eq!(c.answers, 40);
        assert!((c.error_ns - 5e6).abs() < 1e3, "{c:?}");
        let e = a.estimate(&live, 0, 1, 8);
        assert!((5_000_000..5_010_000).contains(&e.margin_ns), "{e:?}");
        assert_eq!(e.finish_ns(), 1_000_000 + e.margin_ns);
        assert!(e.refusal(1).contains("beyond their estimates"));
        // Answers earlier than estimated never shorten an estimate below the measured times.
        let mut early = Admission::new(&Flat);
        for id in 0..40 {
            let e = early.estimate(&live, 0, 1, 8);
            early.admit(id, 0, (1, 8), &e, 0);
            early.done(id, 500_000);
        }
        let e = early.estimate(&live, 0, 1, 8);
        assert!(e.margin_ns < 100_000 && e.finish_ns() >= 1_000_000, "{e:?}");
    }

    /// Flat priors that count how often the profile is asked.
    struct Counting(std::cell::Cell<u64>);
    impl Priors for Counting {
        fn model_of(&self, t: TenantId) -> usize {
            Flat.model_of(t)
        }
        fn inference_ns(&self, t: TenantId, samples: u32, seq_len: u32) -> Nanos {
            self.0.set(self.0.get() + 1);
            Flat.inference_ns(t, samples, seq_len)
        }
        fn load_ns(&self, from: Option<TenantId>, t: TenantId) -> Nanos {
            Flat.load_ns(from, t)
        }
    }

    #[test]
    fn an_estimate_asks_the_profile_once_however_long_the_queue() {
        let live = shared(2);
        let priors = Counting(std::cell::Cell::new(0));
        let mut a = Admission::new(&priors);
        for id in 0..100 {
            let e = a.estimate(&live, 0, 1 + id % 4, 8);
            a.admit(id as RequestId, 0, (1 + id % 4, 8), &e, 0);
        }
        let before = priors.0.get();
        let e = a.estimate(&live, 0, 2, 8);
        assert_eq!(priors.0.get() - before, 1);
        // The same wait as summing the profile's estimates of the queue (1 ms a sample).
        let samples: u64 = (0..100u64).map(|id| 1 + id % 4).sum();
        let loads = 5_000_000 * 100; // nothing held: each was admitted with a cold load
        assert_eq!(e.wait_ns, (samples * 1_000_000 + loads) / 2);
    }
}
