//! What the instances hold before time 0: the policy's preload (OMLS asks for FastPTM's start),
//! nothing, or FastPTM's start for every policy — checked against the instances and tenants.

use crate::error::{Error, Result};
use crate::workload::TenantId;
use serde::{Deserialize, Serialize};

/// What the instances hold before time 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Preload {
    /// Whatever the policy asks for (OMLS: FastPTM's start; the others: nothing).
    #[default]
    Policy,
    /// Nothing: every instance's first load is a cold load.
    Empty,
    /// FastPTM's start for every policy: instance 0 empty, instance i ≥ 1 holding tenant i.
    FastPtm,
}

/// What each of `instances` instances holds before time 0 under `preload` (one entry per
/// instance; `policy_preload` is what the policy asks for); refuses a policy's preload that
/// names a missing instance or tenant.
pub fn initial_residency(
    preload: Preload,
    policy: &str,
    policy_preload: Vec<Option<TenantId>>,
    instances: usize,
    tenants: usize,
) -> Result<Vec<Option<TenantId>>> {
    let mut held: Vec<Option<TenantId>> = match preload {
        Preload::Policy => policy_preload,
        Preload::Empty => Vec::new(),
        Preload::FastPtm => (0..instances)
            .map(|i| (i >= 1 && i < tenants).then_some(i as TenantId))
            .collect(),
    };
    if held.len() > instances || held.iter().flatten().any(|&t| t as usize >= tenants) {
        return Err(Error::Scheduler {
            policy: policy.into(),
            now_ns: 0,
            message: format!(
                "preload {held:?} does not fit {instances} instances and {tenants} tenants"
            ),
        });
    }
    held.resize(instances, None);
    Ok(held)
}
