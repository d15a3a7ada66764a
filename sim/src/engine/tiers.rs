//! The weight tiers of a run resolved to tenant slots: the GPU pool (whole weight sets) or the
//! delta pool (parameter-efficient tenants) and the host cache, each checked against the GPU
//! memory left after the executors and against the profile's figures (`pool_switch`,
//! `weights_bytes`, the PET costs), with the numbers in every refusal.

use super::setup::{PetServing, Serving};
use crate::error::{Error, Result};
use crate::ledger::{Capacity, Tiers};
use crate::profile::{ModelProfile, PetCosts, Profile};

/// The tiers of `serving` in tenant slots, checked against the GPU memory `free_bytes` left
/// after the executors and the profile's figures.
pub(super) fn resolve_tiers(
    serving: &Serving,
    profile: &Profile,
    models: &[&ModelProfile],
    names: &[String],
    free_bytes: u64,
    tenants: usize,
) -> Result<Tiers> {
    if let Some(pet) = serving.pet {
        return resolve_pet(serving, pet, models, names, free_bytes, tenants);
    }
    let Some(pool) = serving.gpu_pool else {
        if serving.host_cache.is_some() {
            return Err(Error::invalid(
                "host_cache",
                "a bounded host cache needs a gpu_pool (FastPTM's model has all tenants in host memory)",
            ));
        }
        return Ok(Tiers {
            eviction: serving.eviction,
            ..Tiers::default()
        });
    };
    let mut slot_bytes = 0;
    for (m, name) in models.iter().zip(names) {
        if m.pool_switch.is_none() {
            return Err(Error::invalid(
                format!("profile model {name}: pool_switch"),
                "a gpu_pool needs the tier-1 (pool → executor) load measured: recalibrate with this ptm",
            ));
        }
        let Some(w) = m.weights_bytes else {
            return Err(Error::invalid(
                format!("profile model {name}: weights_bytes"),
                "a gpu_pool needs each tenant's weight size: recalibrate with this ptm",
            ));
        };
        slot_bytes = slot_bytes.max(w);
    }
    let slots = |c: Capacity, field: &str| -> Result<usize> {
        Ok(match c {
            Capacity::Tenants(n) => n as usize,
            Capacity::Bytes(b) => (b / slot_bytes) as usize,
            Capacity::Auto if field == "gpu_pool" => (free_bytes / slot_bytes) as usize,
            Capacity::Auto => tenants,
        })
    };
    let pool_tenants = slots(pool, "gpu_pool")?;
    let pool_bytes = pool_tenants as u64 * slot_bytes;
    if pool_bytes > free_bytes {
        return Err(Error::invalid(
            "gpu_pool",
            format!(
                "{pool_tenants} tenants of {slot_bytes} bytes ({pool_bytes} bytes) do not fit the {free_bytes} bytes {} has left after {} executors; at most {} fit",
                profile.gpu.name,
                serving.instances,
                free_bytes / slot_bytes
            ),
        ));
    }
    let host_tenants = serving
        .host_cache
        .map(|c| slots(c, "host_cache"))
        .transpose()?;
    if host_tenants == Some(0) {
        return Err(Error::invalid(
            "host_cache",
            "expected room for at least one tenant",
        ));
    }
    Ok(Tiers {
        pool_tenants: Some(pool_tenants),
        host_tenants: host_tenants.filter(|&h| h < tenants),
        eviction: serving.eviction,
        pet: false,
    })
}

/// The delta pool of parameter-efficient tenants in slots, checked against the GPU memory left
/// after the executors (whose backbones it shares) and the profile's figures.
fn resolve_pet(
    serving: &Serving,
    pet: PetServing,
    models: &[&ModelProfile],
    names: &[String],
    free_bytes: u64,
    tenants: usize,
) -> Result<Tiers> {
    if serving.gpu_pool.is_some() {
        return Err(Error::invalid(
            "gpu_pool",
            "a gpu_pool holds whole weight sets; parameter-efficient tenants keep their deltas in pet.delta_pool",
        ));
    }
    let key = pet.kind.key();
    let mut delta_bytes = 0;
    for (m, name) in models.iter().zip(names) {
        let costs: &PetCosts = m.pet.get(&key).ok_or_else(|| {
            Error::invalid(
                format!("profile model {name}: pet.{key}"),
                format!(
                    "the scenario's tenants are {key} deltas, whose costs the profile does not give (it has: {}): calibrate on a PET zoo",
                    if m.pet.is_empty() { "none".to_string() } else { m.pet.keys().cloned().collect::<Vec<_>>().join(", ") }
                ),
            )
        })?;
        delta_bytes = delta_bytes.max(costs.delta_bytes);
    }
    let slots = |c: Capacity| -> usize {
        match c {
            Capacity::Tenants(n) => n as usize,
            Capacity::Bytes(b) => (b / delta_bytes) as usize,
            Capacity::Auto => ((free_bytes / delta_bytes) as usize).min(tenants),
        }
    };
    let pool = slots(pet.delta_pool);
    if pool as u64 * delta_bytes > free_bytes {
        return Err(Error::invalid(
            "pet.delta_pool",
            format!(
                "{pool} deltas of {delta_bytes} bytes do not fit the {free_bytes} bytes left after {} executors; at most {} fit",
                serving.instances,
                free_bytes / delta_bytes
            ),
        ));
    }
    // Every delta a pass reads is held in the pool while it runs: room for the worst case.
    let in_flight = serving.instances * serving.forward_batch.max(1) as usize;
    if pool < in_flight.min(tenants) {
        return Err(Error::invalid(
            "pet.delta_pool",
            format!(
                "{pool} slots, but {} executors of batches of up to {} rows may hold {in_flight} deltas at once",
                serving.instances, serving.forward_batch
            ),
        ));
    }
    let host = serving.host_cache.map(slots);
    if host == Some(0) {
        return Err(Error::invalid(
            "host_cache",
            "expected room for at least one tenant",
        ));
    }
    Ok(Tiers {
        pool_tenants: Some(pool),
        host_tenants: host.filter(|&h| h < tenants),
        eviction: serving.eviction,
        pet: true,
    })
}
