//! The PET zoo: one seeded backbone (`backbone/`, a Hugging Face `BertModel` / `RobertaModel`
//! folder with its pooler) and N seeded tenants in their real layouts (LoRA and BitFit: PEFT's
//! `adapter_config.json` + `adapter_model.safetensors`; adapters: the `adapters` library's
//! `adapter_config.json` + `adapter.safetensors` + head files), plus a `pet.ron` index.
//!
//! Tenant `i` has the task and label count of [`crate::zoo::tenant_task`] (sequence
//! classification, token classification, embeddings in turn) and its own seeded weights; the
//! files depend only on (architecture, spec, dtype, seed, i), so any thread count writes the
//! same bytes.

use super::bottleneck;
use super::tenant::PetKind;
use super::write::{self, NamedTensor};
use super::zoo_tenant;
use crate::bert::LayerLinear;
use crate::config::{Config, Task};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::vocab;
use crate::zoo::{tenant_task, Arch};
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use rand_pcg::Pcg64Mcg;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The most tenants one zoo may have.
pub const MAX_TENANTS: usize = 1_000_000;
/// The backbone's folder name inside a PET zoo.
pub const BACKBONE_DIR: &str = "backbone";

/// Where bottleneck adapters go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Placement {
    /// After attention and after the FFN, reading the sublayer output (Houlsby et al.).
    Houlsby,
    /// After the FFN only, reading `LN(h + residual)` (Pfeiffer et al.).
    Pfeiffer,
}

/// What kind of tenants to write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PetSpec {
    /// LoRA of `rank` with `alpha` on the given linears of every layer.
    Lora {
        /// Rank.
        rank: usize,
        /// Alpha (scale = alpha / rank).
        alpha: f64,
        /// The linears of each layer that carry a pair.
        targets: Vec<LayerLinear>,
    },
    /// Bottleneck adapters.
    Adapter {
        /// Houlsby or Pfeiffer.
        placement: Placement,
        /// Hidden size ÷ bottleneck width.
        reduction_factor: usize,
    },
    /// Every bias of the encoder and pooler.
    Bitfit,
}

impl PetSpec {
    /// The kind of tenant the spec makes.
    pub fn kind(&self) -> PetKind {
        match self {
            PetSpec::Lora { .. } => PetKind::Lora,
            PetSpec::Adapter { .. } => PetKind::Adapter,
            PetSpec::Bitfit => PetKind::Bitfit,
        }
    }
}

/// Parses a LoRA target as the CLI names it: `query`, `key`, `value`,
/// `attention.output.dense`, `intermediate.dense`, `output.dense` (the FFN's down
/// projection).
pub fn parse_target(s: &str) -> Result<LayerLinear> {
    Ok(match s {
        "query" => LayerLinear::Query,
        "key" => LayerLinear::Key,
        "value" => LayerLinear::Value,
        "attention.output.dense" => LayerLinear::AttnOut,
        "intermediate.dense" => LayerLinear::Up,
        "output.dense" => LayerLinear::Down,
        _ => {
            return Err(Error::BadOption {
                what: "LoRA target",
                value: s.into(),
                expected:
                    "query, key, value, attention.output.dense, intermediate.dense or output.dense",
            })
        }
    })
}

/// PEFT `target_modules` that select exactly `targets` in every one of `layers` layers (PEFT
/// matches a name against the end of the module key, so the FFN's `output.dense` alone is
/// named per layer: `encoder.layer.N.output.dense`).
pub fn peft_target_names(targets: &[LayerLinear], layers: usize) -> Vec<String> {
    let has = |w| targets.contains(&w);
    let mut v: Vec<String> = Vec::new();
    for (w, n) in [
        (LayerLinear::Query, "query"),
        (LayerLinear::Key, "key"),
        (LayerLinear::Value, "value"),
        (LayerLinear::Up, "intermediate.dense"),
    ] {
        if has(w) {
            v.push(n.into());
        }
    }
    match (has(LayerLinear::AttnOut), has(LayerLinear::Down)) {
        (true, true) => v.push("output.dense".into()),
        (true, false) => v.push("attention.output.dense".into()),
        (false, true) => v.extend((0..layers).map(|l| format!("encoder.layer.{l}.output.dense"))),
        (false, false) => {}
    }
    v
}

/// One tenant of the index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PetZooTenant {
    /// Folder name.
    pub name: String,
    /// Head.
    pub task: Task,
    /// Labels (0 for embeddings).
    pub labels: usize,
    /// Elements of the tenant's own tensors.
    pub parameters: usize,
    /// Bytes of its files.
    pub file_bytes: u64,
}

/// The `pet.ron` index of a PET zoo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PetZoo {
    /// Architecture.
    pub arch: Arch,
    /// Weight dtype of the files.
    pub dtype: DType,
    /// Seed.
    pub seed: u64,
    /// What the tenants are.
    pub spec: PetSpec,
    /// The backbone's folder name.
    pub backbone: String,
    /// Bytes of the backbone's files.
    pub backbone_bytes: u64,
    /// The tenants.
    pub tenants: Vec<PetZooTenant>,
}

impl PetZoo {
    /// Reads `DIR/pet.ron`.
    pub fn read(dir: &Path) -> Result<PetZoo> {
        let p = dir.join("pet.ron");
        let text = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
        ron::from_str(&text).map_err(|e| Error::Zoo(format!("{}: {e}", p.display())))
    }

    /// Bytes of all tenants' files.
    pub fn tenant_bytes(&self) -> u64 {
        self.tenants.iter().map(|t| t.file_bytes).sum()
    }
}

pub(crate) fn rng(seed: u64, tenant: u64, stream: u64) -> Pcg64Mcg {
    let s = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(tenant.wrapping_mul(0xD1B5_4A32_D192_ED03))
        ^ stream.wrapping_mul(0x94D0_49BB_1331_11EB);
    Pcg64Mcg::seed_from_u64(s)
}

pub(crate) fn normal(r: &mut Pcg64Mcg, n: usize, std: f32) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let v: f32 = r.sample(StandardNormal);
            v * std
        })
        .collect()
}

/// The backbone's values by canonical name (deterministic in the seed).
fn backbone_values(cfg: &Config, seed: u64) -> Result<Vec<NamedTensor>> {
    let layout = Layout::for_config(cfg)?;
    let h = cfg.hidden_size;
    let mut specs: Vec<(String, Vec<usize>)> = layout
        .entries()
        .iter()
        .map(|e| (e.name.clone(), e.shape.clone()))
        .collect();
    specs.push(("pooler.dense.weight".into(), vec![h, h]));
    specs.push(("pooler.dense.bias".into(), vec![h]));
    Ok(specs
        .into_iter()
        .enumerate()
        .map(|(k, (name, shape))| {
            let n = shape.iter().product();
            let mut r = rng(seed, u64::MAX, k as u64);
            let vals = if name.contains("LayerNorm") && name.ends_with(".weight") {
                normal(&mut r, n, 0.1)
                    .into_iter()
                    .map(|v| 1.0 + v)
                    .collect()
            } else {
                normal(&mut r, n, 0.02)
            };
            (name, shape, vals)
        })
        .collect())
}

/// Writes the backbone folder; returns its biases by canonical name and its bytes.
fn write_backbone(
    dir: &Path,
    cfg: &Config,
    dtype: DType,
    seed: u64,
) -> Result<(BTreeMap<String, Vec<f32>>, u64)> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let vals = backbone_values(cfg, seed)?;
    let biases = vals
        .iter()
        .filter(|(n, _, _)| n.ends_with(".bias"))
        .map(|(n, _, v)| (n.clone(), v.clone()))
        .collect();
    let mut tensors: Vec<NamedTensor> = vals;
    let mut bytes = write::safetensors(&dir.join("model.safetensors"), dtype, &mut tensors)?;
    let mut c = cfg.clone();
    c.torch_dtype = Some(
        match dtype {
            DType::Fp32 => "float32",
            DType::Fp16 => "float16",
            DType::Bf16 => "bfloat16",
        }
        .into(),
    );
    bytes += write::json(&dir.join("config.json"), &c)?;
    let kind = cfg.kind()?;
    let v = vocab::synthetic_vocab(kind, cfg.vocab_size);
    bytes += write::json(
        &dir.join("tokenizer.json"),
        &vocab::tokenizer_json(kind, &v),
    )?;
    let vt = dir.join("vocab.txt");
    let text = v.join("\n") + "\n";
    std::fs::write(&vt, &text).map_err(|e| Error::io(&vt, e))?;
    bytes += text.len() as u64;
    Ok((biases, bytes))
}

/// Writes a PET zoo of `tenants` tenants of `spec` over a seeded `arch` backbone into `out`
/// (`threads` writers; the bytes do not depend on it); returns the index (also `out/pet.ron`).
pub fn make_pet_zoo(
    arch: Arch,
    spec: &PetSpec,
    tenants: usize,
    out: &Path,
    dtype: DType,
    seed: u64,
    threads: usize,
) -> Result<PetZoo> {
    if tenants == 0 || tenants > MAX_TENANTS {
        return Err(Error::Zoo(format!(
            "{tenants} tenants: expected 1 to {MAX_TENANTS}"
        )));
    }
    let cfg = super::backbone::encoder_config(&arch.config(Task::Embedding, 0))?;
    match spec {
        PetSpec::Lora {
            rank,
            targets,
            alpha,
        } => {
            if *rank == 0 || *rank as u64 > super::peft::MAX_RANK || targets.is_empty() {
                return Err(Error::Zoo(format!(
                    "LoRA rank {rank} with {} targets: expected a rank of 1 to {} and at least one target",
                    targets.len(),
                    super::peft::MAX_RANK
                )));
            }
            if !alpha.is_finite() {
                return Err(Error::Zoo(format!("LoRA alpha {alpha} is not finite")));
            }
        }
        PetSpec::Adapter {
            reduction_factor, ..
        } => {
            if *reduction_factor == 0 || *reduction_factor > cfg.hidden_size {
                return Err(Error::Zoo(format!(
                    "reduction factor {reduction_factor}: expected 1 to the hidden size {}",
                    cfg.hidden_size
                )));
            }
        }
        PetSpec::Bitfit => {}
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let (biases, backbone_bytes) = write_backbone(&out.join(BACKBONE_DIR), &cfg, dtype, seed)?;
    let ctx = zoo_tenant::Ctx {
        cfg: &cfg,
        kind: cfg.kind()?,
        spec,
        dtype,
        seed,
        biases: &biases,
    };
    let width = (tenants - 1).max(1).to_string().len().max(3);
    let names: Vec<String> = (0..tenants)
        .map(|i| format!("{}-{}-t{i:0width$}", arch.name(), spec.kind().name()))
        .collect();
    for n in &names {
        bottleneck::check_adapter_name(n).map_err(|e| Error::Zoo(e.to_string()))?;
    }
    let threads = threads.clamp(1, 64);
    let results: Vec<Result<Vec<(usize, usize, u64)>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|w| {
                let (ctx, names) = (&ctx, &names);
                s.spawn(move || {
                    (w..tenants)
                        .step_by(threads)
                        .map(|i| {
                            let (p, b) =
                                zoo_tenant::write(ctx, &out.join(&names[i]), i, &names[i])?;
                            Ok((i, p, b))
                        })
                        .collect::<Result<Vec<_>>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::Zoo("a zoo writer thread panicked".into())))
            })
            .collect()
    });
    let mut rows = vec![(0usize, 0u64); tenants];
    for r in results {
        for (i, p, b) in r? {
            rows[i] = (p, b);
        }
    }
    let zoo = PetZoo {
        arch,
        dtype,
        seed,
        spec: spec.clone(),
        backbone: BACKBONE_DIR.into(),
        backbone_bytes,
        tenants: rows
            .into_iter()
            .enumerate()
            .map(|(i, (parameters, file_bytes))| {
                let (task, labels) = tenant_task(i);
                PetZooTenant {
                    name: names[i].clone(),
                    task,
                    labels,
                    parameters,
                    file_bytes,
                }
            })
            .collect(),
    };
    let text = ron::ser::to_string_pretty(&zoo, ron::ser::PrettyConfig::default())
        .map_err(|e| Error::Zoo(e.to_string()))?;
    let p = out.join("pet.ron");
    std::fs::write(&p, text + "\n").map_err(|e| Error::io(&p, e))?;
    Ok(zoo)
}
