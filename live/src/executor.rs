//! What an instance runs on: an [`Executor`] holds one tenant's weights at a time in its arena
//! and runs batches of requests on them. The runtime's switching slots are one
//! ([`crate::slot::SlotExecutor`]); tests use executors that sleep for a profile's costs.
//!
//! The ledger decides every load and where it comes from ([`Source`]); an executor only does
//! it. With a GPU weight pool, the pool's slots are shared by the executors of one device: a
//! load from the pool copies a slot into the arena; a load from the host or the tenant's file
//! also writes the tenant into the pool slot the ledger chose (promotion); a [`Prefetcher`]
//! copies tenants from the host into pool slots ahead of need, apart from any executor.

use crate::error::Result;
use ptm_sim::ledger::Load;
use ptm_sim::workload::{Request, TenantId};

/// One text's output: the head's values and their shape.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RowOutput {
    /// Shape of `values`: `[labels]`, `[tokens, labels]` or `[hidden]`.
    pub shape: Vec<usize>,
    /// Logits (row-major) or the embedding.
    pub values: Vec<f32>,
}

/// Where a load reads a tenant's weights, as the ledger decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Its checkpoint file (a cold load).
    File,
    /// The host cache (a switch).
    Host,
    /// The GPU pool's slot.
    Pool(u32),
}

impl Source {
    /// The source of a load of kind `load` (`None` for no load) with the tenant's pool slot.
    pub fn of(load: Load, pool_slot: Option<u32>) -> Option<Source> {
        match (load, pool_slot) {
            (Load::None, _) => None,
            (Load::Cold, _) => Some(Source::File),
            (Load::Switch, _) => Some(Source::Host),
            (Load::Pool, Some(slot)) => Some(Source::Pool(slot)),
            (Load::Pool, None) => Some(Source::Host),
        }
    }
}

/// One request of a batch, with its texts' token ids when it has them (else the executor
/// runs random tokens of the request's shape).
#[derive(Debug, Clone, Copy)]
pub struct Item<'a> {
    /// The request.
    pub request: &'a Request,
    /// Its rows' token ids.
    pub rows: Option<&'a [Vec<u32>]>,
}

/// One instance's engine: holds one tenant's weights at a time (or, with parameter-efficient
/// tenants, its backbone) and runs batches.
pub trait Executor: Send {
    /// Loads `tenant`'s weights into this executor's arena from `source`; with `promote`, also
    /// writes them into that GPU pool slot. For a parameter-efficient tenant: loads its delta
    /// from `source` into the delta pool's slot `promote` (a mixed batch may need several).
    fn load(&mut self, tenant: TenantId, source: Source, promote: Option<u32>) -> Result<()>;
    /// Runs a batch of requests of the tenant it holds (their rows together, in passes),
    /// returning one output per row, per request.
    fn infer(&mut self, batch: &[Item<'_>]) -> Result<Vec<Vec<RowOutput>>>;
}

/// Copies tenants from the host cache into GPU pool slots, apart from the executors.
pub trait Prefetcher: Send {
    /// Copies `tenant` into pool slot `slot`; returns once it has landed.
    fn prefetch(&mut self, tenant: TenantId, slot: u32) -> Result<()>;
}
