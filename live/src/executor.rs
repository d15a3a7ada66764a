//! What an instance runs on: an [`Executor`] holds one tenant's weights at a time and runs
//! requests on them. The runtime's switching slots are one ([`crate::slot::SlotExecutor`]);
//! tests use executors that sleep for a profile's costs.

use crate::error::Result;
use ptm_sim::workload::{Request, TenantId};

/// One text's output: the head's values and their shape.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RowOutput {
    /// Shape of `values`: `[labels]`, `[tokens, labels]` or `[hidden]`.
    pub shape: Vec<usize>,
    /// Logits (row-major) or the embedding.
    pub values: Vec<f32>,
}

/// One instance's engine: holds one tenant's weights at a time and runs requests.
pub trait Executor: Send {
    /// Loads `tenant`'s weights into this instance (`cold`: it held nothing before).
    fn load(&mut self, tenant: TenantId, cold: bool) -> Result<()>;
    /// Runs `request` on the weights it holds: on `rows` (token ids per text) when given,
    /// returning one output per row, else on random tokens of the request's shape.
    fn infer(&mut self, request: &Request, rows: Option<&[Vec<u32>]>) -> Result<Vec<RowOutput>>;
}
