//! A loaded model: configuration, tokenizer, and an engine (candle CPU or cudarc GPU).

use crate::bert::{self, Bert, HeadOutput};
use crate::checkpoint::PackedWeights;
use crate::config::{Config, Task};
use crate::device::Device;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::KernelOptions;
use crate::tokenize::{Batch, TextEncoder};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The backend that runs the forward pass.
pub enum Engine {
    /// candle on the CPU.
    Cpu(Box<Bert>),
    /// cudarc on a GPU.
    Cuda(Box<crate::gpu::GpuModel>),
}

/// The result for one input text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TextOutput {
    /// The text.
    pub text: String,
    /// Its token ids, special tokens included.
    pub token_ids: Vec<u32>,
    /// The head.
    pub task: Task,
    /// Label names (classification heads).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// Shape of `values`: `[labels]`, `[tokens, labels]` or `[hidden]`.
    pub shape: Vec<usize>,
    /// Logits (row-major) or the embedding.
    pub values: Vec<f32>,
}

/// A model ready to run.
pub struct Model {
    /// Its configuration.
    pub cfg: Config,
    /// The folder it was read from.
    pub dir: PathBuf,
    /// The dtype it computes in.
    pub dtype: DType,
    /// The device it runs on.
    pub device: Device,
    encoder: TextEncoder,
    engine: Engine,
}

impl Model {
    /// Loads `dir/config.json`, `dir/model.safetensors` and `dir/tokenizer.json`.
    pub fn load(dir: &Path, device: Device, dtype: DType) -> Result<Self> {
        let cfg = Config::from_file(&dir.join("config.json"))?;
        let weights = PackedWeights::from_file(&dir.join("model.safetensors"), &cfg, dtype)?;
        let encoder = TextEncoder::from_file(&dir.join("tokenizer.json"), &cfg)?;
        let engine = Self::engine(&weights, &cfg, device)?;
        Ok(Model {
            cfg,
            dir: dir.to_path_buf(),
            dtype,
            device,
            encoder,
            engine,
        })
    }

    /// Builds an engine for packed weights on `device` (on a GPU, with the default
    /// [`KernelOptions`]).
    pub fn engine(weights: &PackedWeights, cfg: &Config, device: Device) -> Result<Engine> {
        match device {
            Device::Cpu => Ok(Engine::Cpu(Box::new(bert::load(weights, cfg)?))),
            Device::Cuda(n) => Ok(Engine::Cuda(Box::new(crate::gpu::GpuModel::new(
                weights,
                cfg,
                n,
                KernelOptions::default(),
            )?))),
        }
    }

    /// Tokenizes texts into a batch padded to the longest.
    pub fn encode(&self, texts: &[String]) -> Result<Batch> {
        self.encoder.encode(texts)
    }

    /// Runs the head on a batch.
    pub fn forward(&mut self, batch: &Batch) -> Result<HeadOutput> {
        run(&mut self.engine, batch)
    }

    /// Tokenizes and runs `texts`, one output per text.
    pub fn infer(&mut self, texts: &[String]) -> Result<Vec<TextOutput>> {
        if texts.is_empty() {
            return Err(Error::Input("no text given".into()));
        }
        let batch = self.encode(texts)?;
        let out = self.forward(&batch)?;
        let lengths = batch.lengths();
        let labels = self.cfg.label_names();
        Ok(texts
            .iter()
            .enumerate()
            .map(|(b, text)| {
                let row = out.row(b);
                let (shape, values) = match out.task {
                    Task::TokenClassification => {
                        let l = out.shape[2];
                        (vec![lengths[b], l], row[..lengths[b] * l].to_vec())
                    }
                    _ => (vec![row.len()], row.to_vec()),
                };
                TextOutput {
                    text: text.clone(),
                    token_ids: batch.row_ids(b).to_vec(),
                    task: out.task,
                    labels: labels.clone(),
                    shape,
                    values,
                }
            })
            .collect())
    }
}

/// Runs an engine on a batch.
pub fn run(engine: &mut Engine, batch: &Batch) -> Result<HeadOutput> {
    match engine {
        Engine::Cpu(m) => m.forward(batch),
        Engine::Cuda(m) => m.forward(batch),
    }
}
