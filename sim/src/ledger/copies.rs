//! The host→GPU copy engine as the ledger books it: when the copies booked so far would be
//! done, estimated from the profile's means, so that a scheduler can see how long a host
//! switch started now would wait behind them ([`crate::scheduler::View::copy_wait_ns`]).
//!
//! A GPU has one copy engine for host→device copies and it runs them one at a time, in the
//! order they were issued (a copy stream is one in-order queue; the simulator models it FIFO
//! where the profile measured contention). What goes on it: an executor's switch from the host
//! cache ([`Load::Switch`](crate::record::Load::Switch)) and a prefetch into the GPU pool. Pool
//! loads are device-to-device copies on their own engine and cold loads are checkpoint reads
//! on the host: neither is booked here. (A switch that rebuilds another model's structure runs
//! on the host too; it is booked as a copy all the same — the estimate errs late, never early,
//! and only runs that mix models or rebuild on every switch have such switches.)
//!
//! The estimate: a copy booked at `now` ends at `max(free_at, now) + its mean`; when a copy
//! ends, the queue is re-anchored to `now + the means of the copies still booked`, so that a
//! copy slower or faster than its mean (contention with passes, the hand-off before it) does
//! not leave the estimate drifting. Integer nanoseconds; no floating point; deterministic.

use crate::time::Nanos;
use crate::workload::TenantId;

/// The copies booked on the host→GPU copy engine and when they are estimated to be done.
#[derive(Debug, Clone, Default)]
pub(crate) struct CopyQueue {
    /// Per instance: the estimated nanoseconds of its switch's copy, while booked (else 0).
    by_instance: Vec<Nanos>,
    /// Prefetches booked: tenant and estimated nanoseconds.
    prefetches: Vec<(TenantId, Nanos)>,
    /// Sum of the estimates booked.
    queued_ns: Nanos,
    /// When the copies booked are estimated to be done (≤ now when none is).
    free_at_ns: Nanos,
}

impl CopyQueue {
    /// No copy booked, for `instances` instances.
    pub(crate) fn new(instances: usize) -> Self {
        CopyQueue {
            by_instance: vec![0; instances],
            ..CopyQueue::default()
        }
    }

    /// When the copies booked so far are estimated to be done (≤ `now` when none is).
    pub(crate) fn free_at_ns(&self) -> Nanos {
        self.free_at_ns
    }

    fn book(&mut self, now_ns: Nanos, ns: Nanos) {
        self.queued_ns += ns;
        self.free_at_ns = self.free_at_ns.max(now_ns) + ns;
    }

    fn ended(&mut self, now_ns: Nanos, ns: Nanos) {
        debug_assert!(self.queued_ns >= ns, "a copy ended that was not booked");
        self.queued_ns -= ns;
        self.free_at_ns = now_ns + self.queued_ns;
    }

    /// Instance `i` starts a switch whose copy takes `ns` nanoseconds (estimated) at `now_ns`.
    pub(crate) fn book_instance(&mut self, now_ns: Nanos, i: usize, ns: Nanos) {
        debug_assert_eq!(
            self.by_instance[i], 0,
            "instance {i} has a copy booked already"
        );
        self.by_instance[i] = ns;
        self.book(now_ns, ns);
    }

    /// Instance `i`'s load ended (done or failed) at `now_ns`; nothing when it booked no copy.
    pub(crate) fn instance_done(&mut self, now_ns: Nanos, i: usize) {
        let ns = std::mem::take(&mut self.by_instance[i]);
        if ns > 0 {
            self.ended(now_ns, ns);
        }
    }

    /// A prefetch of `tenant` taking `ns` nanoseconds (estimated) starts at `now_ns`.
    pub(crate) fn book_prefetch(&mut self, now_ns: Nanos, tenant: TenantId, ns: Nanos) {
        self.prefetches.push((tenant, ns));
        self.book(now_ns, ns);
    }

    /// The prefetch of `tenant` landed at `now_ns`; nothing when none was booked.
    pub(crate) fn prefetch_done(&mut self, now_ns: Nanos, tenant: TenantId) {
        if let Some(k) = self.prefetches.iter().position(|&(t, _)| t == tenant) {
            let (_, ns) = self.prefetches.remove(k);
            self.ended(now_ns, ns);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_queue_one_after_another() {
        let mut q = CopyQueue::new(2);
        assert_eq!(q.free_at_ns(), 0);
        q.book_instance(10, 0, 100);
        q.book_instance(20, 1, 100);
        q.book_prefetch(30, 7, 50);
        assert_eq!(q.free_at_ns(), 260, "10 + 100 + 100 + 50");
        // The first copy took longer than its mean: the rest are re-anchored to its end.
        q.instance_done(150, 0);
        assert_eq!(q.free_at_ns(), 300);
        q.prefetch_done(180, 7);
        assert_eq!(q.free_at_ns(), 280, "only instance 1's copy is left");
        q.instance_done(250, 1);
        assert_eq!(q.free_at_ns(), 250);
        // An idle engine: a copy booked later starts then.
        q.book_prefetch(1_000, 3, 40);
        assert_eq!(q.free_at_ns(), 1_040);
    }

    #[test]
    fn ends_without_a_booked_copy_change_nothing() {
        let mut q = CopyQueue::new(1);
        q.book_prefetch(0, 1, 100);
        q.instance_done(5, 0);
        q.prefetch_done(5, 2);
        assert_eq!(q.free_at_ns(), 100);
    }
}
