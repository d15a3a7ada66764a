//! The event queue: a binary heap ordered by (time, class, sequence number).
//!
//! Within one instant, phase completions come first, then prefetches landing, then wake-ups a
//! scheduler asked for, then the scheduler's tick; events of one class come in the order they
//! were scheduled (FIFO). Arrivals are not queued here: they come
//! from the sorted workload and precede every queued event of the same instant.

use crate::time::Nanos;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// What happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Event {
    /// The current phase (load or inference) of instance `.0` ends.
    PhaseDone(u32),
    /// A prefetch of tenant `.0` into the GPU pool lands.
    PrefetchDone(u32),
    /// The time a scheduler asked to decide again at (a batching window closes).
    Wake,
    /// The scheduler's periodic tick.
    Tick,
}

impl Event {
    fn class(self) -> u8 {
        match self {
            Event::PhaseDone(_) => 0,
            Event::PrefetchDone(_) => 1,
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

    /// Whether only ticks (or nothing) remain.
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
        q.push(5, Event::Tick);
        q.push(5, Event::PhaseDone(2));
        q.push(3, Event::PhaseDone(9));
        q.push(5, Event::PhaseDone(1));
        assert_eq!(q.next_time(), Some(3));
        assert_eq!(q.pop_at(3), Some(Event::PhaseDone(9)));
        assert_eq!(q.pop_at(3), None);
        assert_eq!(q.pop_at(5), Some(Event::PhaseDone(2)));
        assert_eq!(q.pop_at(5), Some(Event::PhaseDone(1)));
        assert_eq!(q.pop_at(5), Some(Event::Tick));
        assert!(q.is_empty());
    }
}
