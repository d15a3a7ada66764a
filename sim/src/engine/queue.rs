//! The event queue: a binary heap ordered by (time, class, sequence number).
//!
//! Within one instant, the ends of instances' phases come first (a phase's unshared part, or a
//! completion on a shared resource), then prefetches and promotions landing, then wake-ups a scheduler asked
//! for, then the scheduler's tick; events of one class come in the order they were scheduled
//! (FIFO). Arrivals are not queued here: they come from the sorted workload and precede every
//! queued event of the same instant. A completion on a resource carries the resource's
//! generation: re-timing the resource schedules a new one and makes the old one stale
//! ([`super::share`]).

use super::share::Track;
use crate::time::Nanos;
use crate::workload::TenantId;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Something that runs for a while: an instance's phase or a prefetch into the GPU pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Job {
    /// The current phase (load or inference) of instance `.0`.
    Instance(u32),
    /// A prefetch of tenant `.0` into the GPU pool.
    Prefetch(TenantId),
}

/// What happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Event {
    /// A job's unshared part ends: its whole duration under the stretch model, its fixed host
    /// work before it joins a resource otherwise.
    Step(Job),
    /// The next completion on a resource (or the pool stream), valid while its generation is
    /// `.1`.
    Share(Track, u32),
    /// A tenant's copy into the GPU pool (its promotion) lands.
    Promoted(TenantId),
    /// The time a scheduler asked to decide again at (a batching window closes).
    Wake,
    /// The scheduler's periodic tick.
    Tick,
}

impl Event {
    fn class(self) -> u8 {
        match self {
            Event::Step(Job::Instance(_)) | Event::Share(..) => 0,
            Event::Step(Job::Prefetch(_)) | Event::Promoted(_) => 1,
            Event::Wake => 2,
            Event::Tick => 3,
        }
    }
}

/// Pending events.
#[derive(Debug, Default)]
pub struct Queue {
    heap: BinaryHeap<Reverse<(Nanos, u8, u64, Event)>>,
    seq: u64,
}

impl Queue {
    /// Schedules `event` at `at_ns`.
    pub fn push(&mut self, at_ns: Nanos, event: Event) {
        self.seq += 1;
        self.heap
            .push(Reverse((at_ns, event.class(), self.seq, event)));
    }

    /// The time of the next event.
    pub fn next_time(&self) -> Option<Nanos> {
        self.heap.peek().map(|Reverse((t, ..))| *t)
    }

    /// Removes and returns the next event if it happens at `now_ns`.
    pub fn pop_at(&mut self, now_ns: Nanos) -> Option<Event> {
        match self.heap.peek() {
            Some(Reverse((t, ..))) if *t == now_ns => self.heap.pop().map(|Reverse((.., e))| e),
            _ => None,
        }
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_instant_completions_come_first_in_fifo_order() {
        let mut q = Queue::default();
        let phase = |i| Event::Step(Job::Instance(i));
        q.push(5, Event::Tick);
        q.push(5, Event::Step(Job::Prefetch(4)));
        q.push(5, phase(2));
        q.push(3, phase(9));
        q.push(5, Event::Share(Track::On(crate::profile::Resource::Sm), 7));
        q.push(5, phase(1));
        assert_eq!(q.next_time(), Some(3));
        assert_eq!(q.pop_at(3), Some(phase(9)));
        assert_eq!(q.pop_at(3), None);
        assert_eq!(q.pop_at(5), Some(phase(2)));
        assert_eq!(
            q.pop_at(5),
            Some(Event::Share(Track::On(crate::profile::Resource::Sm), 7))
        );
        assert_eq!(q.pop_at(5), Some(phase(1)));
        assert_eq!(q.pop_at(5), Some(Event::Step(Job::Prefetch(4))));
        assert_eq!(q.pop_at(5), Some(Event::Tick));
        assert!(q.is_empty());
    }
}
