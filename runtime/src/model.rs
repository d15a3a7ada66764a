//! A loaded model: configuration, tokenizer, and an engine (candle CPU or cudarc GPU). A folder
//! with an `adapter_config.json` is a parameter-efficient tenant ([`crate::pet`]): its backbone
//! is loaded with it; it runs on the CPU reference, or on a GPU in a PET slot of one tenant
//! (the mixed-tenant pass with one segment).

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
    /// A parameter-efficient tenant over its backbone, on the CPU.
    Pet(Box<crate::pet::PetSet>),
    /// A parameter-efficient tenant over its backbone, in a PET slot on a GPU.
    PetGpu(Box<crate::pet::PetSlot>),
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
    /// Loads `dir/config.json`, `dir/model.safetensors` and `dir/tokenizer.json`; or, where
    /// `dir` holds an `adapter_config.json`, the parameter-efficient tenant in it over the
    /// backbone it names.
    pub fn load(dir: &Path, device: Device, dtype: DType) -> Result<Self> {
        if dir.join("adapter_config.json").is_file() {
            return Self::load_pet(dir, device, dtype);
        }
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

    /// Loads the parameter-efficient tenant in `dir` with its backbone: on the CPU reference,
    /// or in a PET slot on a GPU.
    pub fn load_pet(dir: &Path, device: Device, dtype: DType) -> Result<Self> {
        if device != Device::Cpu {
            let slot = crate::pet::PetSlot::single(dir, dtype, device, PET_BATCH, usize::MAX)?;
            let cfg = slot.tenant_config(crate::pet::PetId(0))?;
            let encoder = slot.text_encoder()?;
            return Ok(Model {
                cfg,
                dir: dir.to_path_buf(),
                dtype,
                device,
                encoder,
                engine: Engine::PetGpu(Box::new(slot)),
            });
        }
        let set = crate::pet::PetSet::single(dir, dtype)?;
        let tenant = set
            .tenant(0)
            .ok_or_else(|| Error::pet(dir, "tenant", "not registered"))?;
        let cfg = tenant.config(&set.backbone)?;
        let encoder = set.backbone.text_encoder()?;
        Ok(Model {
            cfg,
            dir: dir.to_path_buf(),
            dtype,
            device,
            encoder,
            engine: Engine::Pet(Box::new(set)),
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

/// Rows of one pass of a tenant in a GPU PET slot (`ptm infer` splits longer batches).
pub const PET_BATCH: usize = 16;

/// Runs an engine on a batch.
pub fn run(engine: &mut Engine, batch: &Batch) -> Result<HeadOutput> {
    match engine {
        Engine::Cpu(m) => m.forward(batch),
        Engine::Cuda(m) => m.forward(batch),
        Engine::Pet(set) => set.forward_one(0, batch),
        Engine::PetGpu(slot) => run_pet_slot(slot, batch),
    }
}

/// Tenant 0 of a PET slot on every row of `batch`, in passes of at most [`PET_BATCH`] rows.
fn run_pet_slot(slot: &mut crate::pet::PetSlot, batch: &Batch) -> Result<HeadOutput> {
    let (s, mut values, mut shape) = (batch.seq, Vec::new(), Vec::new());
    let mut task = Task::Embedding;
    for start in (0..batch.batch).step_by(PET_BATCH) {
        let n = PET_BATCH.min(batch.batch - start);
        let part = Batch {
            ids: batch.ids[start * s..(start + n) * s].to_vec(),
            type_ids: batch.type_ids[start * s..(start + n) * s].to_vec(),
            mask: batch.mask[start * s..(start + n) * s].to_vec(),
            batch: n,
            seq: s,
        };
        let m = slot.forward_mixed(&part, &vec![crate::pet::PetId(0); n])?;
        for o in m.outputs {
            task = o.task;
            shape = o.shape;
            values.extend(o.values);
        }
    }
    if let Some(rows) = shape.first_mut() {
        *rows = batch.batch;
    }
    Ok(HeadOutput {
        task,
        values,
        shape,
    })
}
