//! The executors of one device for a zoo: switching slots for a zoo of full fine-tunes
//! ([`crate::slot`]), or backbone executors for a zoo of parameter-efficient tenants
//! ([`crate::pet`]); with the prefetcher of their pool. Replay and serve build their instances
//! here, so a zoo's kind decides its executors in one place.

use crate::executor::{Executor, Prefetcher};
use crate::pet::{PetExecutor, PetPrefetcher, PetTenants};
use crate::slot::{PoolPrefetcher, SlotExecutor, Tenants};
use ptm_runtime::{DType, Device};
use std::path::Path;
use std::sync::Arc;

/// What a device's executors share.
pub enum Fleet {
    /// Full fine-tunes: switching slots over a host cache (and a GPU pool).
    Slots(Arc<Tenants>),
    /// Parameter-efficient tenants over one backbone.
    Pet(Arc<PetTenants>),
}

/// The shape of the passes a fleet runs, and its pool.
#[derive(Debug, Clone, Copy)]
pub struct FleetShape {
    /// Most rows of a pass.
    pub max_rows: usize,
    /// Most tokens of a row.
    pub max_seq: usize,
    /// The GPU weight pool of full fine-tunes, if any (`Auto`: what fits beside the
    /// instances on the device).
    pub pool: Option<ptm_sim::ledger::Capacity>,
    /// Instances the device runs (what an `Auto` pool leaves room for).
    pub instances: usize,
    /// Whether the scenario's tenants are parameter-efficient.
    pub pet: bool,
    /// Slots of the GPU delta pool (parameter-efficient tenants).
    pub delta_slots: usize,
    /// The runtime's kernel options (`KernelOptions::default()` but for A/B runs).
    pub options: ptm_runtime::KernelOptions,
}

impl Fleet {
    /// Reads the zoo at `zoo` for `tenants` workload tenants on `device`: a PET zoo (with a
    /// `pet.ron`) when `shape.pet`, else a zoo of full fine-tunes; refuses the other kind.
    pub fn read(
        zoo: &Path,
        tenants: usize,
        dtype: DType,
        device: Device,
        shape: FleetShape,
    ) -> anyhow::Result<Fleet> {
        let pet_zoo = PetTenants::is_pet_zoo(zoo);
        anyhow::ensure!(
            pet_zoo == shape.pet,
            "{}: {} but the scenario's tenants are {}",
            zoo.display(),
            if pet_zoo {
                "a zoo of parameter-efficient tenants (pet.ron)"
            } else {
                "a zoo of full fine-tunes"
            },
            if shape.pet {
                "parameter-efficient (its `pet` field): make one with `ptm zoo make --pet …`"
            } else {
                "full fine-tunes: give the scenario a `pet` field for a PET zoo"
            }
        );
        Ok(if shape.pet {
            Fleet::Pet(PetTenants::read(
                zoo,
                tenants,
                dtype,
                device,
                (shape.max_rows, shape.max_seq),
                shape.delta_slots,
                shape.options,
            )?)
        } else {
            Fleet::Slots(Tenants::read(
                zoo,
                tenants,
                dtype,
                device,
                shape.max_rows,
                shape.max_seq,
                shape.pool,
                shape.instances,
                shape.options,
            )?)
        })
    }

    /// Slots of the GPU weight pool the runtime made (full fine-tunes), if any.
    pub fn pool_slots(&self) -> Option<usize> {
        match self {
            Fleet::Slots(t) => t.pool_slots(),
            Fleet::Pet(_) => None,
        }
    }

    /// Refuses `instances` executors that do not fit the device.
    pub fn check_fit(&self, instances: usize) -> anyhow::Result<()> {
        match self {
            Fleet::Slots(t) => t.check_fit(instances),
            Fleet::Pet(_) => Ok(()),
        }
    }

    /// `instances` executors running passes of `forward_batch` rows (seeded per instance);
    /// GPU slots (and a GPU PET slot, once for its executors) capture their graphs for the
    /// pass shapes `warm` now.
    pub fn executors(
        &self,
        instances: usize,
        forward_batch: u32,
        seed: u64,
        warm: &[(usize, usize)],
    ) -> anyhow::Result<Vec<Box<dyn Executor>>> {
        if let Fleet::Pet(t) = self {
            t.warm_up(warm, seed)?;
        }
        (0..instances)
            .map(|i| {
                let seed = seed ^ (i as u64 + 1);
                Ok(match self {
                    Fleet::Slots(t) => {
                        Box::new(SlotExecutor::new(t.clone(), forward_batch, seed, warm)?)
                            as Box<dyn Executor>
                    }
                    Fleet::Pet(t) => Box::new(PetExecutor::new(t.clone(), forward_batch, seed)),
                })
            })
            .collect()
    }

    /// The prefetcher of the pool, if there is one.
    pub fn prefetcher(&self) -> Option<Box<dyn Prefetcher>> {
        match self {
            Fleet::Slots(t) => PoolPrefetcher::new(t).map(|p| Box::new(p) as Box<dyn Prefetcher>),
            Fleet::Pet(t) => Some(Box::new(PetPrefetcher::new(t))),
        }
    }
}
