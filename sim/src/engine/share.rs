//! Contention by resource: the phases on the SMs, the copy engine and the host, each progressing
//! at the rate its resource's sharing gives it now ([`crate::profile::contention`]).
//!
//! A phase's work is nanoseconds of the phase alone. Whenever a phase joins or leaves a
//! resource, the progress of every phase is settled up to that instant at the rates that held
//! since the last change, the rates are recomputed and the next completion on each affected
//! resource is scheduled again: the queue holds one `Share(resource, generation)` event per
//! resource, and an event whose generation is not the resource's current one is stale and
//! ignored. Rates: with `n` phases on a shared resource each progresses at
//! `1 / (factor(curve, n) × cross)`; on a FIFO resource only the earliest started progresses, at
//! `1 / cross`; `cross` is the measured slowdown of a forward pass while a copy is in flight or
//! of a copy while a forward pass runs (else 1). A copy's factor depends on the total tokens of
//! the passes on the SMs when the profile measured it with large passes too
//! ([`Contention::copy_factor`]): then every join or leave on the SMs re-times the copies, not
//! only the SMs turning busy or idle.
//!
//! Everything is deterministic: members are kept in the order they joined, due phases are
//! returned in job order, and the same sequence of joins gives the same floating-point
//! operations on any thread.

use super::queue::{Event, Job, Queue};
use crate::profile::{Contention, Resource, Sharing};
use crate::time::Nanos;

/// Shared work: nanoseconds alone, and the tokens of its passes (forwards; 0 for copies and
/// reads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Work {
    /// Nanoseconds of the phase alone.
    pub ns: Nanos,
    /// Tokens (rows × sequence length) of its largest pass.
    pub tokens: u32,
}

impl Work {
    /// `ns` nanoseconds of a copy or a read.
    pub fn plain(ns: Nanos) -> Self {
        Work { ns, tokens: 0 }
    }
}

/// One phase on a resource.
#[derive(Debug, Clone, Copy)]
struct Member {
    job: Job,
    /// Nanoseconds of work (alone) left as of the resource's `since_ns`.
    left_ns: f64,
    /// Index of its model's contention figures.
    model: usize,
    /// Weight of the large passes' sharing on the SMs (0 elsewhere).
    weight: f64,
    /// Tokens of its passes (0 for copies and reads).
    tokens: u32,
}

/// One resource's phases, in the order they joined.
#[derive(Debug, Default)]
struct Lane {
    members: Vec<Member>,
    /// Progress is settled up to this instant.
    since_ns: Nanos,
    generation: u32,
}

/// The phases on every resource and how fast each progresses.
#[derive(Debug)]
pub struct Shares {
    lanes: [Lane; 3],
    models: Vec<Contention>,
    /// Whether a copy's factor depends on the passes' size (some model measured it).
    sized_copies: bool,
    due: Vec<Job>,
}

impl Shares {
    /// Nothing on any resource; `models[m]` says how phases of model `m` share.
    pub fn new(models: Vec<Contention>) -> Self {
        Shares {
            lanes: Default::default(),
            sized_copies: models
                .iter()
                .any(|c| !c.copy_during_forward_sizes.is_empty()),
            models,
            due: Vec::new(),
        }
    }

    /// A copy of model `model` of `alone_ns` alone as (unshared latency, time on the link):
    /// [`Contention::split_copy`].
    pub fn split_copy(&self, model: usize, alone_ns: Nanos) -> (Nanos, Nanos) {
        self.models
            .get(model)
            .map_or((0, alone_ns), |c| c.split_copy(alone_ns))
    }

    /// Phases on `resource` now.
    pub fn count(&self, resource: Resource) -> usize {
        self.lanes[resource.index()].members.len()
    }

    /// The rate (work per nanosecond) of the `k`-th member of `resource` in the current state.
    fn rate(&self, resource: Resource, k: usize) -> f64 {
        let lane = &self.lanes[resource.index()];
        let m = &lane.members[k];
        let c = &self.models[m.model];
        let cross = match resource {
            Resource::Sm if self.count(Resource::Link) > 0 => c.forward_during_copy,
            Resource::Link if self.count(Resource::Sm) > 0 => c.copy_factor(self.sm_tokens()),
            _ => 1.0,
        };
        let n = lane.members.len();
        // FIFO: only the earliest started progresses.
        let side = |sharing: &Sharing| match sharing {
            Sharing::Shared(curve) => 1.0 / Sharing::factor(curve, n),
            Sharing::Fifo if k == 0 => 1.0,
            Sharing::Fifo => 0.0,
        };
        let small = side(c.sharing(resource));
        let rate = match (&c.sm_large, resource) {
            (Some((_, large)), Resource::Sm) if m.weight > 0.0 => {
                (1.0 - m.weight) * small + m.weight * side(large)
            }
            _ => small,
        };
        rate / cross
    }

    /// Total tokens of the passes on the SMs now.
    fn sm_tokens(&self) -> u64 {
        self.lanes[Resource::Sm.index()]
            .members
            .iter()
            .map(|m| m.tokens as u64)
            .sum()
    }

    /// Settles every phase's progress up to `now_ns` at the rates of the current state.
    fn settle(&mut self, now_ns: Nanos) {
        for r in Resource::ALL {
            let rates: Vec<f64> = (0..self.lanes[r.index()].members.len())
                .map(|k| self.rate(r, k))
                .collect();
            let lane = &mut self.lanes[r.index()];
            debug_assert!(now_ns >= lane.since_ns, "time never goes back");
            let elapsed = (now_ns - lane.since_ns) as f64;
            for (m, rate) in lane.members.iter_mut().zip(rates) {
                m.left_ns = (m.left_ns - elapsed * rate).max(0.0);
            }
            lane.since_ns = now_ns;
        }
    }

    /// Schedules the next completion on `resource` (a new generation; none when it is empty or
    /// nothing on it progresses).
    fn reschedule(&mut self, now_ns: Nanos, resource: Resource, queue: &mut Queue) {
        let next = (0..self.lanes[resource.index()].members.len())
            .filter_map(|k| {
                let rate = self.rate(resource, k);
                (rate > 0.0).then(|| self.lanes[resource.index()].members[k].left_ns / rate)
            })
            .min_by(f64::total_cmp);
        let lane = &mut self.lanes[resource.index()];
        lane.generation = lane.generation.wrapping_add(1);
        if let Some(ns) = next {
            let at = now_ns + ns.round() as Nanos;
            queue.push(at, Event::Share(resource, lane.generation));
        }
    }

    /// Re-times after `resource` changed at `now_ns`: it, and the resource whose cross factor
    /// depends on whether it is empty when that changed (or, with copies' factors by pass
    /// size, on the passes on the SMs whenever they change).
    fn changed(&mut self, now_ns: Nanos, resource: Resource, was_empty: bool, queue: &mut Queue) {
        self.reschedule(now_ns, resource, queue);
        let other = match resource {
            Resource::Sm => Some(Resource::Link),
            Resource::Link => Some(Resource::Sm),
            Resource::Host => None,
        };
        if let Some(o) = other {
            let sized = self.sized_copies && resource == Resource::Sm;
            if (sized || was_empty != (self.count(resource) == 0)) && self.count(o) > 0 {
                self.reschedule(now_ns, o, queue);
            }
        }
    }

    /// `job` (of model `model`) starts `work.ns` nanoseconds (alone) of work on `resource` at
    /// `now_ns`, in passes of `work.tokens` tokens on the SMs; every phase is re-timed.
    pub fn join(
        &mut self,
        now_ns: Nanos,
        resource: Resource,
        job: Job,
        model: usize,
        work: Work,
        queue: &mut Queue,
    ) {
        assert!(model < self.models.len(), "model {model} has no figures");
        self.settle(now_ns);
        let was_empty = self.count(resource) == 0;
        let weight = match resource {
            Resource::Sm => self.models[model].sm_weight(work.tokens),
            _ => 0.0,
        };
        self.lanes[resource.index()].members.push(Member {
            job,
            left_ns: work.ns as f64,
            model,
            weight,
            tokens: work.tokens,
        });
        self.changed(now_ns, resource, was_empty, queue);
    }

    /// Handles `Share(resource, generation)` at `now_ns`: the phases whose work is done leave
    /// (in job order, returned), and the rest are re-timed. A stale event returns nothing.
    pub fn complete(
        &mut self,
        now_ns: Nanos,
        resource: Resource,
        generation: u32,
        queue: &mut Queue,
    ) -> &[Job] {
        self.due.clear();
        if self.lanes[resource.index()].generation != generation {
            return &self.due;
        }
        self.settle(now_ns);
        // Due: what would finish within half a nanosecond (the event time was rounded).
        let done: Vec<bool> = (0..self.lanes[resource.index()].members.len())
            .map(|k| {
                let rate = self.rate(resource, k);
                rate > 0.0 && self.lanes[resource.index()].members[k].left_ns / rate <= 0.5
            })
            .collect();
        let lane = &mut self.lanes[resource.index()];
        let mut k = 0;
        lane.members.retain(|m| {
            let d = done[k];
            k += 1;
            if d {
                self.due.push(m.job);
            }
            !d
        });
        assert!(
            !self.due.is_empty(),
            "a current completion event on the {} finds a phase done",
            resource.name()
        );
        self.due.sort_unstable();
        self.changed(now_ns, resource, false, queue);
        &self.due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contention(sm: Sharing, link: Sharing) -> Contention {
        Contention {
            sm,
            sm_tokens: 128,
            sm_large: None,
            link,
            host: Sharing::Shared(vec![1.0, 2.0]),
            forward_during_copy: 1.0,
            copy_during_forward: 1.0,
            copy_during_forward_sizes: Vec::new(),
            link_occupancy: None,
        }
    }

    /// Runs the queue's share events to the end; returns (job, completion time) in order.
    fn drain(s: &mut Shares, q: &mut Queue) -> Vec<(Job, Nanos)> {
        let mut out = Vec::new();
        while let Some(t) = q.next_time() {
            while let Some(e) = q.pop_at(t) {
                if let Event::Share(r, g) = e {
                    let done = s.complete(t, r, g, q).to_vec();
                    out.extend(done.into_iter().map(|j| (j, t)));
                }
            }
        }
        out
    }

    #[test]
    fn fifo_serves_in_start_order_and_cross_factors_apply_both_ways() {
        let c = Contention {
            forward_during_copy: 1.5,
            copy_during_forward: 2.0,
            ..contention(Sharing::Shared(vec![1.0, 1.0]), Sharing::Fifo)
        };
        let mut s = Shares::new(vec![c]);
        let mut q = Queue::default();
        // Two copies at 0 (FIFO: 4 then 4 more), a forward of 6 at 0 slowed by 1.5 while a copy
        // is in flight; the copies slowed by 2 while the forward runs.
        s.join(
            0,
            Resource::Link,
            Job::Instance(0),
            0,
            Work::plain(4_000),
            &mut q,
        );
        s.join(
            0,
            Resource::Link,
            Job::Instance(1),
            0,
            Work::plain(4_000),
            &mut q,
        );
        s.join(
            0,
            Resource::Sm,
            Job::Instance(2),
            0,
            Work::plain(6_000),
            &mut q,
        );
        // Forward: rate 1/1.5 while copies run. Copy 0: rate 1/2 while the forward runs.
        // Forward ends at 9,000 (6,000 × 1.5; copies run until then); copy 0 at 8,000
        // (4,000 × 2); copy 1 progresses from 8,000: 500 by 9,000 at ½, then alone 3,500 more.
        let got = drain(&mut s, &mut q);
        assert_eq!(
            got,
            vec![
                (Job::Instance(0), 8_000),
                (Job::Instance(2), 9_000),
                (Job::Instance(1), 12_500),
            ]
        );
    }

    #[test]
    fn sharing_conserves_work() {
        // 10 µs and 25 µs of work at factor 1.6 for two (a total rate of 1.25): 20 µs of work
        // in 16 µs, when the first ends; the second's 15 µs left then run alone.
        let mut s = Shares::new(vec![contention(
            Sharing::Shared(vec![1.0, 1.6]),
            Sharing::Fifo,
        )]);
        let mut q = Queue::default();
        s.join(
            0,
            Resource::Sm,
            Job::Instance(0),
            0,
            Work::plain(10_000),
            &mut q,
        );
        s.join(
            0,
            Resource::Sm,
            Job::Instance(1),
            0,
            Work::plain(25_000),
            &mut q,
        );
        assert_eq!(
            drain(&mut s, &mut q),
            vec![(Job::Instance(0), 16_000), (Job::Instance(1), 31_000)]
        );
        // Beyond the curve the total rate holds: three at 1.6 × 3/2 = 2.4 each.
        for j in 0..3 {
            s.join(
                40_000,
                Resource::Sm,
                Job::Instance(j),
                0,
                Work::plain(1_000),
                &mut q,
            );
        }
        let got = drain(&mut s, &mut q);
        assert_eq!(got.len(), 3);
        assert!(got.iter().all(|&(_, t)| t == 42_400), "{got:?}");
    }

    #[test]
    fn pass_size_interpolates_between_the_measured_sharings() {
        // Small passes (128 tokens) share at 1.25 for two, large ones (2,048) at 2; a pass of
        // 512 tokens lies halfway in log(tokens): rate ½ / 1.25 + ½ / 2 = 0.65 with two.
        let c = Contention {
            sm_large: Some((2048, Sharing::Shared(vec![1.0, 2.0]))),
            ..contention(Sharing::Shared(vec![1.0, 1.25]), Sharing::Fifo)
        };
        let mut s = Shares::new(vec![c]);
        let mut q = Queue::default();
        let work = |ns, tokens| Work { ns, tokens };
        s.join(
            0,
            Resource::Sm,
            Job::Instance(0),
            0,
            work(6_500, 512),
            &mut q,
        );
        s.join(
            0,
            Resource::Sm,
            Job::Instance(1),
            0,
            work(4_000, 4096),
            &mut q,
        );
        // The large one (rate ½) ends at 8,000; the other has done 5,200 and ends at 9,300.
        assert_eq!(
            drain(&mut s, &mut q),
            vec![(Job::Instance(1), 8_000), (Job::Instance(0), 9_300)]
        );
    }

    #[test]
    fn copies_are_re_timed_as_the_passes_beside_them_change_size() {
        // A copy slows 2× beside passes of 128 tokens, not at all beside 2,048 or more (the
        // SMs do not slow passes here). Copy of 4,000 from 0; pass A (128 tokens, 2,000) from
        // 0; pass B (2,048 tokens, 6,000) from 1,000. 0–1,000: copy at ½ (500 done); then
        // 2,176 tokens and from 2,000 on 2,048 (factor 1): the last 3,500 end at 4,500, B at
        // 7,000. Without re-timing on B's join the copy would end when it was due at ½: 8,000.
        let c = Contention {
            copy_during_forward: 2.0,
            copy_during_forward_sizes: vec![(2048, 1.0)],
            ..contention(Sharing::Shared(vec![1.0, 1.0]), Sharing::Fifo)
        };
        let mut s = Shares::new(vec![c]);
        let mut q = Queue::default();
        let work = |ns, tokens| Work { ns, tokens };
        s.join(
            0,
            Resource::Link,
            Job::Prefetch(7),
            0,
            Work::plain(4_000),
            &mut q,
        );
        s.join(
            0,
            Resource::Sm,
            Job::Instance(0),
            0,
            work(2_000, 128),
            &mut q,
        );
        assert!(
            q.next_time().is_some_and(|t| t >= 2_000),
            "nothing ends before B"
        );
        s.join(
            1_000,
            Resource::Sm,
            Job::Instance(1),
            0,
            work(6_000, 2048),
            &mut q,
        );
        assert_eq!(
            drain(&mut s, &mut q),
            vec![
                (Job::Instance(0), 2_000),
                (Job::Prefetch(7), 4_500),
                (Job::Instance(1), 7_000),
            ]
        );
    }

    #[test]
    fn stale_events_are_ignored() {
        let mut s = Shares::new(vec![contention(
            Sharing::Shared(vec![1.0, 2.0]),
            Sharing::Fifo,
        )]);
        let mut q = Queue::default();
        s.join(
            0,
            Resource::Sm,
            Job::Instance(0),
            0,
            Work::plain(1_000),
            &mut q,
        );
        // Its first event (at 1,000) is now stale: a second phase halves its rate.
        s.join(
            0,
            Resource::Sm,
            Job::Instance(1),
            0,
            Work::plain(1_000),
            &mut q,
        );
        assert!(s.complete(1_000, Resource::Sm, 1, &mut q).is_empty());
        assert_eq!(
            drain(&mut s, &mut q),
            vec![(Job::Instance(0), 2_000), (Job::Instance(1), 2_000)]
        );
    }
}
