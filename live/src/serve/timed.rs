//! Timed executors: each instance's executor is wrapped so that every load and inference is
//! measured and reported, with what the instance holds and since when it is busy, to the
//! coordinator's admission control ([`super::admission`]).

use crate::error::Result;
use crate::executor::{Executor, Item, RowOutput, Source};
use ptm_sim::time::Nanos;
use ptm_sim::workload::TenantId;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// One measurement of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measured {
    /// A load of `tenant` (`cold`: from its file) that took `ns`.
    Load {
        /// The tenant loaded.
        tenant: TenantId,
        /// From its file (else a switch).
        cold: bool,
        /// How long it took.
        ns: Nanos,
    },
    /// An inference of `tenant` of `samples` × `seq_len` that took `ns`.
    Inference {
        /// The tenant.
        tenant: TenantId,
        /// Rows.
        samples: u32,
        /// Longest row, tokens.
        seq_len: u32,
        /// How long it took.
        ns: Nanos,
    },
}

/// What the instances' [`Timed`] executors report, shared with the coordinator.
#[derive(Debug)]
pub struct Live {
    /// Per instance: the tenant it holds (as its executor last reported).
    pub held: Vec<Option<TenantId>>,
    /// Per instance: since when it has been loading or inferring.
    pub busy_since: Vec<Option<Instant>>,
    /// Measurements not yet taken in by the coordinator.
    pub(super) measured: Vec<Measured>,
}

/// The shared measurements of a server's instances.
pub type Shared = Arc<Mutex<Live>>;

/// Shared measurements for `instances` instances.
pub fn shared(instances: usize) -> Shared {
    Arc::new(Mutex::new(Live {
        held: vec![None; instances],
        busy_since: vec![None; instances],
        measured: Vec::new(),
    }))
}

/// Locks the shared measurements.
pub(super) fn lock(s: &Shared) -> MutexGuard<'_, Live> {
    // A worker that panicked while holding the lock left plain numbers behind: keep them.
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// An executor whose loads and inferences are timed into [`Live`].
pub struct Timed {
    inner: Box<dyn Executor>,
    instance: usize,
    live: Shared,
}

impl Timed {
    /// Wraps instance `instance`'s executor.
    pub fn new(inner: Box<dyn Executor>, instance: usize, live: Shared) -> Self {
        Timed {
            inner,
            instance,
            live,
        }
    }
}

impl Executor for Timed {
    fn load(&mut self, tenant: TenantId, source: Source, promote: Option<u32>) -> Result<()> {
        let start = Instant::now();
        lock(&self.live).busy_since[self.instance] = Some(start);
        let result = self.inner.load(tenant, source, promote);
        let ns = start.elapsed().as_nanos() as Nanos;
        let mut live = lock(&self.live);
        // A failed load leaves the instance empty.
        live.held[self.instance] = result.as_ref().ok().map(|()| tenant);
        match (&result, source) {
            // Loads from the GPU pool are device-to-device copies; admission's switch estimate
            // stays the host's (the pessimistic one).
            (Ok(()), Source::Pool(_)) => {}
            (Ok(()), _) => live.measured.push(Measured::Load {
                tenant,
                cold: source == Source::File,
                ns,
            }),
            (Err(_), _) => live.busy_since[self.instance] = None,
        }
        result
    }

    fn infer(&mut self, batch: &[Item<'_>]) -> Result<Vec<Vec<RowOutput>>> {
        // Busy since the load before it, if one, else from now.
        lock(&self.live).busy_since[self.instance].get_or_insert_with(Instant::now);
        // Inference alone is timed from here (a load before it was timed by `load`).
        let start = Instant::now();
        let result = self.inner.infer(batch);
        let ns = start.elapsed().as_nanos() as Nanos;
        let mut live = lock(&self.live);
        live.busy_since[self.instance] = None;
        if let (Ok(_), Some(first)) = (&result, batch.first()) {
            live.measured.push(Measured::Inference {
                tenant: first.request.tenant,
                samples: batch.iter().map(|i| i.request.samples).sum(),
                seq_len: batch.iter().map(|i| i.request.seq_len).max().unwrap_or(1),
                ns,
            });
        }
        result
    }
}
