//! The GPU backend (cudarc): placeholder while the CPU path is completed.
#![allow(unsafe_code)]

use crate::bert::HeadOutput;
use crate::checkpoint::PackedWeights;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::tokenize::Batch;

/// A model on one GPU.
pub struct GpuModel {}

impl GpuModel {
    /// Uploads the weights to GPU `ordinal`.
    pub fn new(_w: &PackedWeights, _cfg: &Config, ordinal: usize) -> Result<Self> {
        Err(Error::NoGpu {
            requested: format!("cuda:{ordinal}"),
            reason: "not built yet".into(),
        })
    }
    /// Runs a batch.
    pub fn forward(&mut self, _b: &Batch) -> Result<HeadOutput> {
        Err(Error::Cuda("not built".into()))
    }
}
