//! One parameter-efficient tenant as the CPU reference holds it: its LoRA pairs, bias
//! replacements and bottleneck adapters keyed by where they act, and its head. Every tensor is
//! f32 holding values of the backbone's dtype. [`PetTenant::load`] reads a tenant folder in any
//! of the supported layouts (see the [`crate::pet`] module docs) against a loaded backbone.

use super::backbone::Backbone;
use super::sites::Module;
use super::tensors::{self, RawTensor, WeightsFile};
use super::{bottleneck, peft};
use crate::bert::{Linear, LnPos};
use crate::config::{Config, Task};
use crate::error::{Error, Result};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The most labels a tenant's classifier may have.
pub const MAX_LABELS: usize = 65_536;

/// The kind of a parameter-efficient tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PetKind {
    /// LoRA (Hugging Face PEFT layout), possibly with bias replacements (`bias: all|lora_only`).
    Lora,
    /// Bottleneck adapters (the `adapters` library's layout, Houlsby or Pfeiffer placement).
    Adapter,
    /// BitFit: bias replacements only (PEFT-like layout, `peft_type: BITFIT`).
    Bitfit,
}

impl PetKind {
    /// The CLI / file name of the kind.
    pub fn name(self) -> &'static str {
        match self {
            PetKind::Lora => "lora",
            PetKind::Adapter => "adapter",
            PetKind::Bitfit => "bitfit",
        }
    }
}

/// A LoRA pair on one linear: `y += scale · (x Aᵀ) Bᵀ`.
#[derive(Debug, Clone)]
pub(crate) struct LoraDelta {
    /// `[r, in]`.
    pub(crate) a: Tensor,
    /// `[out, r]`.
    pub(crate) b: Tensor,
    /// `alpha / r` (or `alpha / √r` with rsLoRA).
    pub(crate) scale: f64,
    /// The rank.
    pub(crate) rank: usize,
}

/// The non-linearity of a bottleneck adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdapterAct {
    /// `relu` (Pfeiffer's default).
    Relu,
    /// `swish` / `silu` (Houlsby's default).
    Silu,
    /// `gelu`: exact GELU.
    GeluErf,
    /// `gelu_new`: the tanh approximation.
    GeluTanh,
    /// `tanh`.
    Tanh,
}

impl AdapterAct {
    /// Parses an `adapters` library `non_linearity` name.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "relu" => Some(AdapterAct::Relu),
            "swish" | "silu" => Some(AdapterAct::Silu),
            "gelu" => Some(AdapterAct::GeluErf),
            "gelu_new" | "gelu_pytorch_tanh" => Some(AdapterAct::GeluTanh),
            "tanh" => Some(AdapterAct::Tanh),
            _ => None,
        }
    }

    /// Applies the activation to an f32 tensor.
    pub(crate) fn apply(self, t: &Tensor) -> Result<Tensor> {
        Ok(match self {
            AdapterAct::Relu => t.relu()?,
            AdapterAct::Silu => t.silu()?,
            AdapterAct::GeluErf => t.gelu_erf()?,
            AdapterAct::GeluTanh => t.gelu()?,
            AdapterAct::Tanh => t.tanh()?,
        })
    }
}

/// A bottleneck adapter at the end of one sublayer: `up(act(down(x))) · scaling`.
#[derive(Debug)]
pub(crate) struct Bottleneck {
    /// `[m, h]` and `[m]`.
    pub(crate) down: Linear,
    /// `[h, m]` and `[h]`.
    pub(crate) up: Linear,
    pub(crate) act: AdapterAct,
    pub(crate) scaling: f64,
}

/// What the adapter's residual connection adds back (`residual_before_ln`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdapterResidual {
    /// `true`: the sublayer's output `h` (before the residual stream and layer norm).
    Sublayer,
    /// `false`: the adapter's input (`LN(h + residual)` when the layer norm comes before).
    AdapterInput,
    /// `"post_add"`: `h + residual` (only with `original_ln_before`).
    PostAdd,
}

/// How a tenant's adapters are wired around the layer norm (one per tenant, as the `adapters`
/// library configures it: Pfeiffer `original_ln_before = true`, Houlsby `false`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdapterStyle {
    /// The adapter reads `LN(h + residual)` (Pfeiffer) rather than `h` (Houlsby).
    pub original_ln_before: bool,
    /// Its residual connection.
    pub residual: AdapterResidual,
}

/// A tenant's head.
#[derive(Debug)]
pub(crate) struct TenantHead {
    pub(crate) task: Task,
    pub(crate) labels: usize,
    /// The tenant's own pooler (else the backbone's is used).
    pub(crate) pooler: Option<Linear>,
    pub(crate) classifier: Option<Linear>,
    /// Label names in id order, where the tenant's files give them.
    pub(crate) label_names: Option<Vec<String>>,
}

/// One parameter-efficient tenant.
#[derive(Debug)]
pub struct PetTenant {
    /// Its name (the folder's name).
    pub name: String,
    /// Its folder.
    pub dir: PathBuf,
    /// Its kind.
    pub kind: PetKind,
    /// Elements of the tenant's own tensors (head included).
    pub parameters: usize,
    pub(crate) lora: BTreeMap<Module, LoraDelta>,
    pub(crate) biases: BTreeMap<Module, Tensor>,
    pub(crate) adapters: BTreeMap<LnPos, Bottleneck>,
    pub(crate) style: AdapterStyle,
    pub(crate) head: TenantHead,
    /// The structure of the backbone it was read against.
    pub(crate) structure: Structure,
}

/// What a tenant must match in a backbone: model type, hidden size, layers, FFN width.
pub(crate) type Structure = (String, usize, usize, usize);

/// The backbone a tenant folder names, resolved: an absolute path as is; a relative one
/// against the tenant folder's parent (the zoo), then against the current directory.
pub fn resolve_backbone(tenant_dir: &Path, name: &str, field: &str) -> Result<PathBuf> {
    let cfg_path = tenant_dir.join("adapter_config.json");
    if name.is_empty() || name.len() > 4096 {
        return Err(Error::pet(
            &cfg_path,
            field,
            "must name the backbone folder (1 to 4096 characters)",
        ));
    }
    let p = Path::new(name);
    let mut tried = Vec::new();
    let candidates: Vec<PathBuf> = if p.is_absolute() {
        vec![p.to_path_buf()]
    } else {
        let parent = tenant_dir.parent().unwrap_or(Path::new("."));
        vec![parent.join(p), p.to_path_buf()]
    };
    for c in candidates {
        if c.join("config.json").is_file() {
            return Ok(c);
        }
        tried.push(c.display().to_string());
    }
    Err(Error::pet(
        &cfg_path,
        field,
        format!(
            "backbone `{name}` not found (no config.json in: {})",
            tried.join(", ")
        ),
    ))
}

/// Which format a tenant folder holds, told from its `adapter_config.json`.
pub(crate) enum Format {
    /// PEFT (`peft_type` present): LoRA or our BitFit.
    Peft(Box<peft::PeftConfig>),
    /// The `adapters` library (`config` present).
    Adapters(Box<bottleneck::AdaptersConfig>),
}

/// Reads `dir/adapter_config.json` and tells its format.
pub(crate) fn read_format(dir: &Path) -> Result<Format> {
    let path = dir.join("adapter_config.json");
    let v: serde_json::Value = tensors::read_json(&path)?;
    let bad = |e: serde_json::Error| Error::pet(&path, "adapter_config.json", e.to_string());
    if v.get("peft_type").is_some() {
        Ok(Format::Peft(Box::new(
            serde_json::from_value(v).map_err(bad)?,
        )))
    } else if v.get("config").is_some() {
        Ok(Format::Adapters(Box::new(
            serde_json::from_value(v).map_err(bad)?,
        )))
    } else {
        Err(Error::pet(
            &path,
            "adapter_config.json",
            "neither a PEFT config (`peft_type`) nor an `adapters` library config (`config`)",
        ))
    }
}

/// The backbone folder that the tenant at `dir` names.
pub fn backbone_of(dir: &Path) -> Result<PathBuf> {
    match read_format(dir)? {
        Format::Peft(c) => {
            let name = c.base_model_name_or_path.clone().unwrap_or_default();
            resolve_backbone(dir, &name, "base_model_name_or_path")
        }
        Format::Adapters(c) => resolve_backbone(dir, &c.model_name, "model_name"),
    }
}

/// A candle tensor from a raw one.
pub(crate) fn tensor(t: &RawTensor) -> Result<Tensor> {
    Ok(Tensor::from_vec(
        t.values.clone(),
        t.shape.as_slice(),
        &Device::Cpu,
    )?)
}

/// A dense layer from a file's weight and bias (shapes checked by the caller).
pub(crate) fn linear(w: &RawTensor, b: &RawTensor) -> Result<Linear> {
    Ok(Linear {
        w: tensor(w)?,
        b: tensor(b)?,
    })
}

impl PetTenant {
    /// Reads the tenant in `dir` against `backbone`, refusing (naming the file and tensor or
    /// field) anything that does not fit it.
    pub fn load(dir: &Path, backbone: &Backbone) -> Result<Self> {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| dir.display().to_string());
        let parts = match read_format(dir)? {
            Format::Peft(c) => peft::read(dir, &c, backbone)?,
            Format::Adapters(c) => bottleneck::read(dir, &c, backbone)?,
        };
        let cfg = backbone.config();
        Ok(PetTenant {
            name,
            dir: dir.to_path_buf(),
            kind: parts.kind,
            parameters: parts.parameters,
            lora: parts.lora,
            biases: parts.biases,
            adapters: parts.adapters,
            style: parts.style,
            head: parts.head,
            structure: structure(cfg),
        })
    }

    /// The head's task.
    pub fn task(&self) -> Task {
        self.head.task
    }

    /// The head's label count (0 for embeddings).
    pub fn labels(&self) -> usize {
        self.head.labels
    }

    /// LoRA ranks by module path (for reports and tests).
    pub fn lora_ranks(&self) -> Vec<(Module, usize)> {
        self.lora.iter().map(|(m, d)| (*m, d.rank)).collect()
    }

    /// The modules whose bias the tenant replaces.
    pub fn bias_modules(&self) -> Vec<Module> {
        self.biases.keys().copied().collect()
    }

    /// The sublayer ends that carry an adapter.
    pub fn adapter_positions(&self) -> Vec<LnPos> {
        self.adapters.keys().copied().collect()
    }

    /// The tenant's adapter wiring.
    pub fn adapter_style(&self) -> AdapterStyle {
        self.style
    }

    /// The configuration of the whole model this tenant is: the backbone's encoder with the
    /// tenant's head (`architectures`, labels).
    pub fn config(&self, backbone: &Backbone) -> Result<Config> {
        let mut cfg = backbone.config().clone();
        let family = match cfg.kind()? {
            crate::config::ModelType::Bert => "Bert",
            crate::config::ModelType::Roberta => "Roberta",
        };
        cfg.architectures = vec![match self.head.task {
            Task::SequenceClassification => format!("{family}ForSequenceClassification"),
            Task::TokenClassification => format!("{family}ForTokenClassification"),
            Task::Embedding => format!("{family}Model"),
        }];
        cfg.id2label = self.head.label_names.as_ref().map(|names| {
            names
                .iter()
                .enumerate()
                .map(|(i, n)| (i.to_string(), n.clone()))
                .collect()
        });
        cfg.num_labels = (self.head.task != Task::Embedding).then_some(self.head.labels);
        Ok(cfg)
    }

    /// Whether the tenant was read against a backbone of `cfg`'s structure.
    pub(crate) fn fits(&self, cfg: &Config) -> bool {
        self.structure == structure(cfg)
    }
}

pub(crate) fn structure(cfg: &Config) -> Structure {
    (
        cfg.model_type.clone(),
        cfg.hidden_size,
        cfg.num_hidden_layers,
        cfg.intermediate_size,
    )
}

/// What a format reader produces.
pub(crate) struct Parts {
    pub(crate) kind: PetKind,
    pub(crate) parameters: usize,
    pub(crate) lora: BTreeMap<Module, LoraDelta>,
    pub(crate) biases: BTreeMap<Module, Tensor>,
    pub(crate) adapters: BTreeMap<LnPos, Bottleneck>,
    pub(crate) style: AdapterStyle,
    pub(crate) head: TenantHead,
}

impl Parts {
    /// Empty parts of `kind` with an embedding head.
    pub(crate) fn new(kind: PetKind) -> Self {
        Parts {
            kind,
            parameters: 0,
            lora: BTreeMap::new(),
            biases: BTreeMap::new(),
            adapters: BTreeMap::new(),
            style: AdapterStyle {
                original_ln_before: false,
                residual: AdapterResidual::Sublayer,
            },
            head: TenantHead {
                task: Task::Embedding,
                labels: 0,
                pooler: None,
                classifier: None,
                label_names: None,
            },
        }
    }
}

/// A module's (weight, bias), each with its tensor name.
pub(crate) type NamedPair<'a> = ((&'a str, &'a RawTensor), (&'a str, &'a RawTensor));

/// Builds the head of `task` from an optional classifier (weight, bias) and pooler read from
/// `file`, checking shapes against the backbone and that a sequence classifier has a pooler
/// (its own or, for BERT, the backbone's).
pub(crate) fn build_head(
    file: &WeightsFile,
    task: Task,
    classifier: Option<NamedPair>,
    pooler: Option<NamedPair>,
    backbone: &Backbone,
) -> Result<TenantHead> {
    let h = backbone.config().hidden_size;
    let classifier = match (task, classifier) {
        (Task::Embedding, None) => None,
        (Task::Embedding, Some(((n, _), _))) => {
            return Err(Error::pet(
                &file.path,
                n,
                "a classifier in a tenant whose task is feature extraction (embeddings)",
            ))
        }
        (_, None) => {
            return Err(Error::pet(
                &file.path,
                "classifier.weight",
                format!("missing: a {task:?} tenant needs its classifier"),
            ))
        }
        (_, Some(((wn, w), (bn, b)))) => {
            let labels = w.shape.first().copied().unwrap_or(0);
            if labels == 0 || labels > MAX_LABELS {
                return Err(Error::pet(
                    &file.path,
                    wn,
                    format!("{labels} labels: expected 1 to {MAX_LABELS}"),
                ));
            }
            file.expect_shape(wn, w, &[labels, h])?;
            file.expect_shape(bn, b, &[labels])?;
            Some(linear(w, b)?)
        }
    };
    let labels = classifier
        .as_ref()
        .map_or(0, |c| c.b.dims().first().copied().unwrap_or(0));
    let pooler = match pooler {
        None => None,
        Some(((wn, w), (bn, b))) => {
            file.expect_shape(wn, w, &[h, h])?;
            file.expect_shape(bn, b, &[h])?;
            Some(linear(w, b)?)
        }
    };
    if task == Task::SequenceClassification && pooler.is_none() && !backbone.has_pooler() {
        return Err(Error::pet(
            &file.path,
            "pooler",
            format!(
                "a sequence classifier needs a pooler: neither the tenant nor the backbone {} has one",
                backbone.dir.display()
            ),
        ));
    }
    Ok(TenantHead {
        task,
        labels,
        pooler,
        classifier,
        label_names: None,
    })
}
