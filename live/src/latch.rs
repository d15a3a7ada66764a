//! Ordering of copies into and out of one GPU pool slot across workers.
//!
//! The ledger books a promotion (a load from the host or a file that also writes the tenant
//! into a pool slot) at dispatch: from then on the tenant is in the pool, and another instance
//! may be dispatched to load it from there — in live mode, while the promoting worker is still
//! copying it in. Likewise a pool slot may be given to a second tenant while the first one's
//! promotion into it has not run yet. Each write into a pool slot therefore carries a
//! [`Latch`], opened once the worker (or the prefetcher) has done it; the next job touching
//! that slot — a load from it, or another write into it — waits for the latch first, so the
//! copies happen in the order the ledger booked them. The runtime orders the device copies
//! themselves (the pool slot's fence); this only orders the calls. Reads never wait for reads,
//! and a write never has to wait for a read: a tenant being loaded out of the pool is pinned
//! there until its load has ended, so no write into its slot is dispatched meanwhile.

use std::sync::{Arc, Condvar, Mutex};

/// Opened once: who waits returns from then on.
#[derive(Debug, Default)]
pub struct Latch {
    open: Mutex<bool>,
    opened: Condvar,
}

impl Latch {
    /// A closed latch.
    pub fn new() -> Arc<Self> {
        Arc::new(Latch::default())
    }

    /// Opens it, waking every waiter.
    pub fn open(&self) {
        // A poisoned flag is still a flag: open it all the same.
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        *open = true;
        self.opened.notify_all();
    }

    /// Blocks until it is open.
    pub fn wait(&self) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        while !*open {
            open = self.opened.wait(open).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Whether it is open.
    pub fn is_open(&self) -> bool {
        *self.open.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Opens its latch when dropped, however the work it guards ends (done, failed or panicked):
/// a failed write leaves the slot without the tenant, which the runtime's load then refuses by
/// name, instead of a waiter blocked for ever.
pub struct OpenOnDrop(pub Option<Arc<Latch>>);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        if let Some(l) = &self.0 {
            l.open();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiters_return_once_the_guard_is_dropped() {
        let l = Latch::new();
        assert!(!l.is_open());
        let waiter = {
            let l = l.clone();
            std::thread::spawn(move || l.wait())
        };
        let guard = OpenOnDrop(Some(l.clone()));
        drop(guard);
        waiter.join().unwrap();
        assert!(l.is_open());
        l.wait(); // open: returns at once
    }

    #[test]
    fn a_panic_opens_the_latch() {
        let l = Latch::new();
        let l2 = l.clone();
        let r = std::panic::catch_unwind(move || {
            let _g = OpenOnDrop(Some(l2));
            panic!("the executor failed");
        });
        assert!(r.is_err());
        assert!(l.is_open());
    }
}
