//! Contention by resource: the phases on the SMs, the copy engine and the host, each progressing
//! at the rate its resource's sharing gives it now ([`crate::profile::contention`]), and — when
//! the profile measured them — loads from the GPU weight pool on the pool stream's own FIFO
//! track, slowing and slowed by the passes on the SMs ([`crate::profile::pool_copy`]).
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
use crate::profile::{Contention, PoolCopyContention, Resource, Sharing};
use crate::time::Nanos;

/// Where shared work runs: one of the profile's resources, or the GPU weight pool's copy stream
/// (loads from the pool, when the profile measured how they and the passes slow each other:
/// [`crate::profile::pool_copy`]). The pool stream is FIFO — one copy at a time, in the order
/// issued, as the runtime's one pool stream runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Track {
    /// A resource of [`Contention`].
    On(Resource),
    /// The GPU weight pool's copy stream.
    PoolCopy,
}

impl Track {
    /// Every track, in index order.
    const ALL: [Track; 4] = [
        Track::On(Resource::Sm),
        Track::On(Resource::Link),
        Track::On(Resource::Host),
        Track::PoolCopy,
    ];

    fn index(self) -> usize {
        match self {
            Track::On(r) => r.index(),
            Track::PoolCopy => Resource::ALL.len(),
        }
    }

    /// Lower-case name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Track::On(r) => r.name(),
            Track::PoolCopy => "pool stream",
        }
    }

    /// Whether a phase on `self` progresses at a rate that depends on whether `other` is busy.
    fn depends_on(self, other: Track) -> bool {
        const SM: Track = Track::On(Resource::Sm);
        matches!(
            (self, other),
            (SM, Track::On(Resource::Link))
                | (SM, Track::PoolCopy)
                | (Track::On(Resource::Link), SM)
                | (Track::PoolCopy, SM)
        )
    }
}

impl From<Resource> for Track {
    fn from(r: Resource) -> Self {
        Track::On(r)
    }
}

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

/// One phase on a track.
#[derive(Debug, Clone, Copy)]
struct Member {
    job: Job,
    /// Nanoseconds of work (alone) left as of the track's `since_ns`.
    left_ns: f64,
    /// Index of its model's contention figures.
    model: usize,
    /// Its size's place among the SMs' measured sizes ([`Contention::sm_at`]: the lower
    /// size's index and the next one's weight; `(0, 0)` elsewhere).
    segment: usize,
    weight: f64,
    /// Tokens of its passes (0 for copies and reads).
    tokens: u32,
}

/// One track's phases, in the order they joined.
#[derive(Debug, Default)]
struct Lane {
    members: Vec<Member>,
    /// Progress is settled up to this instant.
    since_ns: Nanos,
    generation: u32,
}

/// The phases on every track and how fast each progresses.
#[derive(Debug)]
pub struct Shares {
    lanes: [Lane; 4],
    models: Vec<Contention>,
    /// Per model, the pool copies' cross factors when measured (none: nothing joins the pool
    /// stream's track, and passes never slow for it).
    pool: Vec<Option<PoolCopyContention>>,
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
            pool: vec![None; models.len()],
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

    /// The same, with `pool[m]` the measured cross factors of model `m`'s pool copies.
    pub fn with_pool_copies(mut self, pool: Vec<Option<PoolCopyContention>>) -> Self {
        assert_eq!(pool.len(), self.models.len(), "one entry per model");
        self.pool = pool;
        self
    }

    /// Phases on `track` now.
    pub fn count(&self, track: impl Into<Track>) -> usize {
        self.lanes[track.into().index()].members.len()
    }

    /// The rate (work per nanosecond) of the `k`-th member of `track` in the current state.
    fn rate(&self, track: Track, k: usize) -> f64 {
        let lane = &self.lanes[track.index()];
        let m = &lane.members[k];
        let c = &self.models[m.model];
        let pool = self.pool[m.model].as_ref();
        let busy = |t: Track| self.count(t) > 0;
        let cross = match track {
            Track::On(Resource::Sm) => {
                let copy = match busy(Track::On(Resource::Link)) {
                    true => c.forward_during_copy,
                    false => 1.0,
                };
                let pool_copy = match (busy(Track::PoolCopy), pool) {
                    (true, Some(p)) => p.forward_during_pool_copy,
                    _ => 1.0,
                };
                copy * pool_copy
            }
            Track::On(Resource::Link) if busy(Track::On(Resource::Sm)) => {
                c.copy_factor(self.sm_tokens())
            }
            Track::PoolCopy => match (busy(Track::On(Resource::Sm)), pool) {
                (true, Some(p)) => p.pool_copy_during_forward,
                _ => 1.0,
            },
            _ => 1.0,
        };
        let n = lane.members.len();
        // FIFO: only the earliest started progresses.
        let side = |sharing: &Sharing| match sharing {
            Sharing::Shared(curve) => 1.0 / Sharing::factor(curve, n),
            Sharing::Fifo if k == 0 => 1.0,
            Sharing::Fifo => 0.0,
        };
        let rate = match track {
            Track::On(Resource::Sm) => {
                let lower = side(c.sm_sharing(m.segment));
                match m.weight > 0.0 {
                    true => (1.0 - m.weight) * lower + m.weight * side(c.sm_sharing(m.segment + 1)),
                    false => lower,
                }
            }
            Track::On(r) => side(c.sharing(r)),
            Track::PoolCopy => side(&Sharing::Fifo),
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
        for t in Track::ALL {
            let rates: Vec<f64> = (0..self.lanes[t.index()].members.len())
                .map(|k| self.rate(t, k))
                .collect();
            let lane = &mut self.lanes[t.index()];
            debug_assert!(now_ns >= lane.since_ns, "time never goes back");
            let elapsed = (now_ns - lane.since_ns) as f64;
            for (m, rate) in lane.members.iter_mut().zip(rates) {
                m.left_ns = (m.left_ns - elapsed * rate).max(0.0);
            }
            lane.since_ns = now_ns;
        }
    }

    /// Schedules the next completion on `track` (a new generation; none when it is empty or
    /// nothing on it progresses).
    fn reschedule(&mut self, now_ns: Nanos, track: Track, queue: &mut Queue) {
        let next = (0..self.lanes[track.index()].members.len())
            .filter_map(|k| {
                let rate = self.rate(track, k);
                (rate > 0.0).then(|| self.lanes[track.index()].members[k].left_ns / rate)
            })
            .min_by(f64::total_cmp);
        let lane = &mut self.lanes[track.index()];
        lane.generation = lane.generation.wrapping_add(1);
        if let Some(ns) = next {
            let at = now_ns + ns.round() as Nanos;
            queue.push(at, Event::Share(track, lane.generation));
        }
    }

    /// Re-times after `track` changed at `now_ns`: it, and every track whose cross factor
    /// depends on whether it is empty when that changed (or, with copies' factors by pass
    /// size, on the passes on the SMs whenever they change).
    fn changed(&mut self, now_ns: Nanos, track: Track, was_empty: bool, queue: &mut Queue) {
        self.reschedule(now_ns, track, queue);
        let flipped = was_empty != (self.count(track) == 0);
        for o in Track::ALL {
            if o == track || !o.depends_on(track) || self.count(o) == 0 {
                continue;
            }
            let sized = self.sized_copies
                && track == Track::On(Resource::Sm)
                && o == Track::On(Resource::Link);
            if sized || flipped {
                self.reschedule(now_ns, o, queue);
            }
        }
    }

    /// `job` (of model `model`) starts `work.ns` nanoseconds (alone) of work on `track` at
    /// `now_ns`, in passes of `work.tokens` tokens on the SMs; every phase is re-timed. On the
    /// pool stream's track only a model with pool-copy figures may join.
    pub fn join(
        &mut self,
        now_ns: Nanos,
        track: impl Into<Track>,
        job: Job,
        model: usize,
        work: Work,
        queue: &mut Queue,
    ) {
        let track = track.into();
        assert!(model < self.models.len(), "model {model} has no figures");
        assert!(
            track != Track::PoolCopy || self.pool[model].is_some(),
            "model {model} has no pool-copy figures"
        );
        self.settle(now_ns);
        let was_empty = self.count(track) == 0;
        let (segment, weight) = match track {
            Track::On(Resource::Sm) => self.models[model].sm_at(work.tokens),
            _ => (0, 0.0),
        };
        self.lanes[track.index()].members.push(Member {
            job,
            left_ns: work.ns as f64,
            model,
            segment,
            weight,
            tokens: work.tokens,
        });
        self.changed(now_ns, track, was_empty, queue);
    }

    /// Handles `Share(track, generation)` at `now_ns`: the phases whose work is done leave
    /// (in job order, returned), and the rest are re-timed. A stale event returns nothing.
    pub fn complete(
        &mut self,
        now_ns: Nanos,
        track: Track,
        generation: u32,
        queue: &mut Queue,
    ) -> &[Job] {
        self.due.clear();
        if self.lanes[track.index()].generation != generation {
            return &self.due;
        }
        self.settle(now_ns);
        // Due: what would finish within half a nanosecond (the event time was rounded).
        let done: Vec<bool> = (0..self.lanes[track.index()].members.len())
            .map(|k| {
                let rate = self.rate(track, k);
                rate > 0.0 && self.lanes[track.index()].members[k].left_ns / rate <= 0.5
            })
            .collect();
        let lane = &mut self.lanes[track.index()];
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
            track.name()
        );
        self.due.sort_unstable();
        self.changed(now_ns, track, false, queue);
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
            sm_sizes: Vec::new(),
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
    fn a_pass_between_intermediate_sizes_takes_their_interpolated_rate() {
        // Measured: 1.25 for two at 128 tokens, 1.6 at 512, 2 at 2,048. Two passes of 1,024
        // tokens (halfway between 512 and 2,048 in log(tokens)) each progress at
        // ½ / 1.6 + ½ / 2 = 0.5625: 5,625 ns of work alone ends at 10,000.
        let two = |f: f64| Sharing::Shared(vec![1.0, f]);
        let with_sizes = Contention {
            sm_sizes: vec![(512, two(1.6))],
            sm_large: Some((2048, two(2.0))),
            ..contention(two(1.25), Sharing::Fifo)
        };
        let run = |c: Contention| {
            let mut s = Shares::new(vec![c]);
            let mut q = Queue::default();
            for j in 0..2 {
                let work = Work {
                    ns: 5_625,
                    tokens: 1024,
                };
                s.join(0, Resource::Sm, Job::Instance(j), 0, work, &mut q);
            }
            drain(&mut s, &mut q)
        };
        let both = |t| vec![(Job::Instance(0), t), (Job::Instance(1), t)];
        assert_eq!(run(with_sizes.clone()), both(10_000));
        // Without the intermediate size: the two-point rule, 1,024 three quarters of the way
        // from 128 to 2,048: ¼ / 1.25 + ¾ / 2 = 0.575, so 5,625 / 0.575 ≈ 9,783.
        let without = Contention {
            sm_sizes: Vec::new(),
            ..with_sizes
        };
        assert_eq!(run(without), both(9_783));
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

    fn pool_figures(forward: f64, copy: f64) -> Option<PoolCopyContention> {
        Some(PoolCopyContention {
            forward_during_pool_copy: forward,
            pool_copy_during_forward: copy,
            tokens: 128,
            method: String::new(),
        })
    }

    #[test]
    fn pool_copies_run_one_at_a_time_and_slow_the_passes_both_ways() {
        // Two pool loads at 0 (the pool stream: 4 then 4 more), a forward of 6 at 0 slowed by
        // 1.5 while a pool load is in flight, the loads by 2 while the forward runs: the same
        // arithmetic as the copy engine's cross factors. Copy 0 ends at 8,000 (4,000 × 2), the
        // forward at 9,000 (6,000 × 1.5), copy 1 has done 500 by then and runs 3,500 alone.
        let c = contention(Sharing::Shared(vec![1.0, 1.0]), Sharing::Fifo);
        let mut s = Shares::new(vec![c]).with_pool_copies(vec![pool_figures(1.5, 2.0)]);
        let mut q = Queue::default();
        for (i, track) in [(0, Track::PoolCopy), (1, Track::PoolCopy)] {
            s.join(0, track, Job::Instance(i), 0, Work::plain(4_000), &mut q);
        }
        s.join(
            0,
            Resource::Sm,
            Job::Instance(2),
            0,
            Work::plain(6_000),
            &mut q,
        );
        assert_eq!(s.count(Track::PoolCopy), 2);
        assert_eq!(
            drain(&mut s, &mut q),
            vec![
                (Job::Instance(0), 8_000),
                (Job::Instance(2), 9_000),
                (Job::Instance(1), 12_500),
            ]
        );
    }

    #[test]
    fn pool_copies_conserve_work_and_only_measured_models_slow() {
        // Model 0 measured its pool copies (a forward ×2 beside one, a copy ×1 beside passes);
        // model 1 did not: its passes never slow for a pool copy. A pool load of 3,000 from 0;
        // forwards of 2,000 of each model from 1,000. Model 0's forward runs at ½ while the copy
        // is in flight (until 3,000: 1,000 done), then alone: ends at 4,000. Model 1's ends at
        // 3,000. Work is conserved: every phase's work alone is done at its rates.
        let c = contention(Sharing::Shared(vec![1.0, 1.0]), Sharing::Fifo);
        let mut s =
            Shares::new(vec![c.clone(), c]).with_pool_copies(vec![pool_figures(2.0, 1.0), None]);
        let mut q = Queue::default();
        s.join(
            0,
            Track::PoolCopy,
            Job::Prefetch(3),
            0,
            Work::plain(3_000),
            &mut q,
        );
        s.join(
            1_000,
            Resource::Sm,
            Job::Instance(0),
            0,
            Work::plain(2_000),
            &mut q,
        );
        s.join(
            1_000,
            Resource::Sm,
            Job::Instance(1),
            1,
            Work::plain(2_000),
            &mut q,
        );
        assert_eq!(
            drain(&mut s, &mut q),
            vec![
                (Job::Prefetch(3), 3_000),
                (Job::Instance(1), 3_000),
                (Job::Instance(0), 4_000),
            ]
        );
    }

    #[test]
    fn a_pass_beside_a_host_copy_and_a_pool_copy_slows_by_both() {
        // forward_during_copy 1.5 × forward_during_pool_copy 2: a pass of 3,000 beside both
        // (each longer than it) takes 9,000.
        let c = Contention {
            forward_during_copy: 1.5,
            ..contention(Sharing::Shared(vec![1.0, 1.0]), Sharing::Fifo)
        };
        let mut s = Shares::new(vec![c]).with_pool_copies(vec![pool_figures(2.0, 1.0)]);
        let mut q = Queue::default();
        s.join(
            0,
            Resource::Link,
            Job::Prefetch(1),
            0,
            Work::plain(20_000),
            &mut q,
        );
        s.join(
            0,
            Track::PoolCopy,
            Job::Prefetch(2),
            0,
            Work::plain(20_000),
            &mut q,
        );
        s.join(
            0,
            Resource::Sm,
            Job::Instance(0),
            0,
            Work::plain(3_000),
            &mut q,
        );
        assert_eq!(drain(&mut s, &mut q)[0], (Job::Instance(0), 9_000));
    }

    #[test]
    #[should_panic(expected = "no pool-copy figures")]
    fn a_model_without_pool_figures_never_joins_the_pool_stream() {
        let c = contention(Sharing::Shared(vec![1.0, 1.0]), Sharing::Fifo);
        let mut s = Shares::new(vec![c]);
        s.join(
            0,
            Track::PoolCopy,
            Job::Instance(0),
            0,
            Work::plain(1),
            &mut Queue::default(),
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
        assert!(s.complete(1_000, Resource::Sm.into(), 1, &mut q).is_empty());
        assert_eq!(
            drain(&mut s, &mut q),
            vec![(Job::Instance(0), 2_000), (Job::Instance(1), 2_000)]
        );
    }
}
