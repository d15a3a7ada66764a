//! The weight tiers' figures, measured through the runtime's `Slot` calls that live instances
//! make (`ptm run --live`, `ptm serve`): a [`SlotHost`] with the zoo's tenants in its host
//! cache and a weight pool holding each of them, and executors (slots) made from it.
//!
//! - **pool load** (`pool_switch` in the profile) with k executors: executors 0..k each load
//!   their next tenant from its pool slot at once, one thread each ([`Slot::load_pool`]: on a
//!   GPU a device-to-device copy on the pool stream, until it has landed), each one's latency
//!   a sample — the stretch over 1–k says how loads from the pool share the device;
//! - **cold load**: executor 0 reads its next tenant's checkpoint ([`Slot::load_file`]: on a
//!   GPU the cold path — threaded reads into pinned staging, chunks copied as they land);
//! - **weights bytes**: the packed layout's size, what a pool slot holds.
//!
//! [`pool_cost`] turns the pool loads into a profile [`Cost`]; targets expose the figures
//! through [`crate::Target::pool_loads`], [`crate::Target::weights_bytes`] and their cold load.

use crate::{stats, Error, Result, Session};
use ptm_runtime::slot::{Executors, PoolSize};
use ptm_runtime::switch::ArchLayout;
use ptm_runtime::{Device, Eviction, KernelOptions, Slot, SlotHost};
use ptm_sim::profile::Cost;
use std::path::PathBuf;
use std::sync::Barrier;
use std::time::{Duration, Instant};

/// A zoo's tenants in a host with a weight pool, and executors over it.
pub struct TierSlots {
    host: SlotHost,
    slots: Vec<Slot>,
    names: Vec<String>,
    dirs: Vec<PathBuf>,
    /// Which tenant each executor holds.
    holds: Vec<usize>,
}

impl TierSlots {
    /// The tenants `names` (checkpoints in `dirs`, at least 2) of layout `arch` on `device`,
    /// read into the host cache and prefetched into a pool of one slot each, leaving room for
    /// `executors` executors (made as the figures need them).
    pub fn new(
        device: Device,
        arch: ArchLayout,
        names: Vec<String>,
        dirs: Vec<PathBuf>,
        executors: usize,
        options: KernelOptions,
    ) -> Result<Self> {
        if names.len() < 2 || names.len() != dirs.len() {
            return Err(Error::Invalid(format!(
                "the tier figures need at least 2 tenants with their folders ({} names, {} folders)",
                names.len(),
                dirs.len()
            )));
        }
        let n = names.len();
        let room = Executors {
            count: executors,
            max_batch: 1,
            max_seq: 16,
        };
        let host = SlotHost::new(device, arch, n, Eviction::Refuse, options)?
            .with_pool(PoolSize::Tenants(n), room)?;
        for (i, (name, dir)) in names.iter().zip(&dirs).enumerate() {
            host.register(name, dir)?;
            host.prefetch(i as u32, name)?;
        }
        Ok(TierSlots {
            host,
            slots: Vec::new(),
            names,
            dirs,
            holds: Vec::new(),
        })
    }

    /// Bytes of one tenant's packed weights.
    pub fn weights_bytes(&self) -> u64 {
        self.host.arch().bytes() as u64
    }

    /// Makes executors until there are `k`, each holding a tenant (loaded from the pool).
    fn ensure(&mut self, k: usize) -> Result<()> {
        while self.slots.len() < k {
            let i = self.slots.len();
            let t = i % self.names.len();
            let mut s = self.host.slot(1, 16)?;
            s.load_pool(&self.host, t as u32, &self.names[t])?;
            self.slots.push(s);
            self.holds.push(t);
        }
        Ok(())
    }

    /// Executors 0..k each load their next tenant from the pool at once (one thread each,
    /// started together); each one's latency until its tenant can run.
    pub fn pool_loads(&mut self, k: usize) -> Result<Vec<Duration>> {
        self.ensure(k)?;
        let n = self.names.len();
        let barrier = Barrier::new(k);
        let (host, names) = (&self.host, &self.names);
        let next: Vec<usize> = self.holds[..k].iter().map(|&t| (t + 1) % n).collect();
        let out = std::thread::scope(|scope| {
            let handles: Vec<_> = self.slots[..k]
                .iter_mut()
                .zip(&next)
                .map(|(slot, &t)| {
                    let barrier = &barrier;
                    scope.spawn(move || -> Result<Duration> {
                        barrier.wait();
                        let start = Instant::now();
                        slot.load_pool(host, t as u32, &names[t])?;
                        Ok(start.elapsed())
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().map_err(|_| Error::Panicked {
                        what: "pool loads".into(),
                    })?
                })
                .collect::<Result<Vec<_>>>()
        })?;
        self.holds[..k].copy_from_slice(&next);
        Ok(out)
    }

    /// Executor 0 reads its next tenant from its checkpoint (the cold path); the time until the
    /// tenant can run.
    pub fn cold_load(&mut self) -> Result<Duration> {
        self.ensure(1)?;
        let t = (self.holds[0] + 1) % self.names.len();
        let start = Instant::now();
        self.slots[0].load_file(&self.host, &self.names[t], &self.dirs[t])?;
        let d = start.elapsed();
        self.holds[0] = t;
        Ok(d)
    }
}

/// The pool load's cost on `session`'s target: its distribution with one executor and its
/// stretch with 1..=`max_instances` loading at once; `None` when the target has no pool.
pub(crate) fn pool_cost(session: &mut Session<'_>) -> Result<Option<Cost>> {
    let (plan, model) = (session.plan, session.model);
    let mut samples = |k: usize| -> Result<Option<Vec<f64>>> {
        let mut out = Vec::new();
        for i in 0..plan.warmup + plan.repeats {
            let Some(ds) = session
                .target
                .pool_loads(model, k)
                .map_err(|e| fail(model, e))?
            else {
                return Ok(None);
            };
            if ds.len() != k {
                let e = Error::Invalid(format!("{} latencies for {k} executors", ds.len()));
                return Err(fail(model, e));
            }
            if i >= plan.warmup {
                out.extend(ds.into_iter().map(|d| d.as_secs_f64() * 1e3));
            }
        }
        Ok(Some(out))
    };
    let Some(base) = samples(1)? else {
        return Ok(None);
    };
    let mut medians = vec![stats::median(&base)];
    for k in 2..=plan.max_instances {
        let s = samples(k)?.ok_or_else(|| {
            fail(
                model,
                Error::Invalid(format!("pool loads measured with 1 executor, not {k}")),
            )
        })?;
        medians.push(stats::median(&s));
    }
    Ok(Some(Cost {
        ms: stats::fit(&base),
        stretch: crate::stretch(&medians),
        measured: Some(stats::summarise(&base)),
    }))
}

fn fail(model: &str, source: Error) -> Error {
    Error::Target {
        model: model.to_string(),
        what: "pool load".into(),
        source: Box::new(source),
    }
}
