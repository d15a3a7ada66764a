//! What a run recorded: per request when it started and ended, where it ran and which load it
//! needed; per instance its counts and busy time; per tenant its loads; optionally every phase.
//! [`crate::metrics::Report`] summarises a [`Run`]; the [`crate::ledger::Ledger`] is its only
//! writer.

use crate::time::Nanos;
use crate::workload::{RequestId, TenantId};

/// What one instance did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceStats {
    /// Requests it completed.
    pub requests: u64,
    /// Switches (loads of another tenant's weights over the ones it held).
    pub switches: u64,
    /// Cold loads (its first load, when it held nothing; with tiers: from the tenant's file).
    pub cold_loads: u64,
    /// Loads from the GPU pool (tier 1).
    pub pool_loads: u64,
    /// Batches it ran (as many as requests without cross-request batching).
    pub batches: u64,
    /// Time spent loading or inferring.
    pub busy_ns: Nanos,
    /// Time spent loading.
    pub loading_ns: Nanos,
    /// The tenant it held before time 0, if any.
    pub preloaded: Option<TenantId>,
}

/// The load a dispatch needed before its inference, ordered from none to the costliest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
#[repr(u8)]
pub enum Load {
    /// None: the instance held the tenant's weights.
    #[default]
    None,
    /// A copy from the GPU pool (tier 1), device to device.
    Pool,
    /// A switch: the instance held another tenant's weights (with tiers: a copy from the host
    /// cache, tier 2).
    Switch,
    /// A cold load: the instance held nothing (with tiers: a read of the tenant's file).
    Cold,
}

impl Load {
    /// The load an instance holding `resident` needs to serve `tenant` in FastPTM's model (no
    /// tiers: see [`crate::ledger::Residency::load_needed`]).
    pub fn needed(resident: Option<TenantId>, tenant: TenantId) -> Load {
        match resident {
            None => Load::Cold,
            Some(r) if r == tenant => Load::None,
            Some(_) => Load::Switch,
        }
    }

    /// The span kind of this load's phase (`None` for no load).
    pub fn span(self) -> Option<SpanKind> {
        match self {
            Load::None => None,
            Load::Pool => Some(SpanKind::PoolLoad),
            Load::Switch => Some(SpanKind::Switch),
            Load::Cold => Some(SpanKind::ColdLoad),
        }
    }

    /// Lower-case name for tables and CSV: `none`, `pool`, `switch` or `cold`.
    pub fn name(self) -> &'static str {
        match self {
            Load::None => "none",
            Load::Pool => "pool",
            Load::Switch => "switch",
            Load::Cold => "cold",
        }
    }
}

/// One phase of one instance, for timelines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// The instance.
    pub instance: u32,
    /// What it did.
    pub kind: SpanKind,
    /// The request it served.
    pub request: RequestId,
    /// Start.
    pub start_ns: Nanos,
    /// End.
    pub end_ns: Nanos,
}

/// What an instance was doing during a [`Span`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    /// Its first load.
    ColdLoad,
    /// A switch to another tenant.
    Switch,
    /// A copy from the GPU pool.
    PoolLoad,
    /// Inference.
    Inference,
}

/// Everything a run recorded; [`crate::metrics::Report`] summarises it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Run {
    /// When each request started (was dispatched).
    pub start_ns: Vec<Nanos>,
    /// When each request completed.
    pub end_ns: Vec<Nanos>,
    /// Which instance served each request.
    pub served_by: Vec<u32>,
    /// The load each request's dispatch needed.
    pub load: Vec<Load>,
    /// The batch each request ran in (batches numbered in dispatch order).
    pub batch: Vec<u32>,
    /// Per instance.
    pub instances: Vec<InstanceStats>,
    /// Per tenant: how often its weights were loaded (cold loads and switches).
    pub tenant_loads: Vec<u64>,
    /// Time during which at least one instance was busy.
    pub gpu_busy_ns: Nanos,
    /// Every phase, when recording was asked for.
    pub timeline: Option<Vec<Span>>,
    /// Tenants evicted from the GPU pool.
    pub pool_evictions: u64,
    /// Tenants evicted from the host cache.
    pub host_evictions: u64,
    /// Prefetches into the GPU pool started.
    pub prefetches: u64,
}

impl Run {
    /// Room for request `id`'s record (requests are recorded by dense id).
    pub(crate) fn push_request(&mut self) {
        self.start_ns.push(0);
        self.end_ns.push(0);
        self.served_by.push(0);
        self.load.push(Load::None);
        self.batch.push(0);
    }

    /// Drops the first `n` requests' records (serving keeps only requests in flight).
    pub(crate) fn drop_first(&mut self, n: usize) {
        self.start_ns.drain(..n);
        self.end_ns.drain(..n);
        self.served_by.drain(..n);
        self.load.drain(..n);
        self.batch.drain(..n);
    }
}
