//! Tenants in the Hugging Face PEFT layout: LoRA (`peft_type: LORA`) and our BitFit
//! (`peft_type: BITFIT`), `adapter_config.json` + `adapter_model.safetensors`.
//!
//! Tensor names are PEFT's saved names: `base_model.model.` + the module key + the parameter,
//! e.g. `base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight` (`[r, in]`)
//! and `….lora_B.weight` (`[out, r]`); the adapter name (`default`) is not in saved names. A
//! `modules_to_save` head is saved as the module's own parameters,
//! `base_model.model.classifier.weight` / `.bias` (RoBERTa: `classifier.dense.*`,
//! `classifier.out_proj.*`; a saved pooler: `base_model.model.bert.pooler.dense.*`). With
//! `bias: all` or `lora_only` PEFT also saves biases (`….key.bias`, `….LayerNorm.bias`, and
//! `….query.base_layer.bias` for a module LoRA wraps): they replace the backbone's. Copies PEFT may add beside a head (`….original_module.*`,
//! `….modules_to_save.*`) are skipped.
//!
//! Supported config fields: `r`, `lora_alpha`, `target_modules`, `layers_to_transform`,
//! `rank_pattern` and `alpha_pattern` (matched as PEFT does: [`super::targets`]), `use_rslora`
//! (scale `alpha/√r`), `bias`, `modules_to_save`, `task_type` (`SEQ_CLS`, `TOKEN_CLS`,
//! `FEATURE_EXTRACTION` or none), `base_model_name_or_path`. `fan_in_fan_out` is accepted and
//! has no effect: PEFT itself turns it off for `nn.Linear` layers, which BERT's are. Refused,
//! naming the field: `use_dora`, `lora_bias`, `exclude_modules`, `layer_replication`,
//! `target_parameters`, `trainable_token_indices`, LoRA on embeddings.
//!
//! BitFit (our layout, as PEFT would save a LoRA with `bias: all` and no LoRA pairs):
//! `{"peft_type": "BITFIT", "base_model_name_or_path": …, "task_type": …}` and biases named
//! `base_model.model.bert.embeddings.LayerNorm.bias`, `….encoder.layer.N.attention.self.
//! {query,key,value}.bias`, `….attention.output.dense.bias`, `….attention.output.LayerNorm.
//! bias`, `….intermediate.dense.bias`, `….output.dense.bias`, `….output.LayerNorm.bias`,
//! `….pooler.dense.bias`, any subset, plus the head as above.

use super::backbone::Backbone;
use super::sites::{split_name, Module};
use super::targets::{pattern_value, Selector};
use super::tenant::{build_head, tensor, LoraDelta, NamedPair, Parts, PetKind};
use super::tensors::{RawTensor, WeightsFile};
use crate::config::{Config, ModelType, Task};
use crate::error::{Error, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// The highest LoRA rank read.
pub const MAX_RANK: u64 = 4096;
/// The most `target_modules` entries, `layers_to_transform` entries and pattern keys read.
pub const MAX_LIST: usize = 4096;
/// The longest name or pattern read.
pub const MAX_NAME_CHARS: usize = 4096;

/// `target_modules`: one regular expression or a list of names.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Targets {
    /// A regular expression over the whole module key (or `all-linear`).
    One(String),
    /// Names: a module matches when its key equals one or ends with `.name`.
    List(Vec<String>),
}

/// `layers_to_transform`: one layer or several.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Layers {
    /// One layer index.
    One(u64),
    /// Layer indices.
    List(Vec<u64>),
}

/// The fields of a PEFT `adapter_config.json` that this runtime reads (others are ignored).
#[derive(Debug, Clone, Deserialize)]
pub struct PeftConfig {
    /// `LORA` or `BITFIT`.
    pub peft_type: String,
    /// The backbone folder (relative to the zoo, or absolute).
    #[serde(default)]
    pub base_model_name_or_path: Option<String>,
    /// `SEQ_CLS`, `TOKEN_CLS`, `FEATURE_EXTRACTION` or none.
    #[serde(default)]
    pub task_type: Option<String>,
    /// The LoRA rank.
    #[serde(default)]
    pub r: Option<u64>,
    /// The LoRA alpha.
    #[serde(default)]
    pub lora_alpha: Option<f64>,
    /// The modules LoRA applies to.
    #[serde(default)]
    pub target_modules: Option<Targets>,
    /// Modules saved whole (the head).
    #[serde(default)]
    pub modules_to_save: Option<Vec<String>>,
    /// Accepted; no effect on `nn.Linear` layers (PEFT turns it off for them).
    #[serde(default)]
    pub fan_in_fan_out: Option<bool>,
    /// `none`, `all` or `lora_only`.
    #[serde(default)]
    pub bias: Option<String>,
    /// rsLoRA scaling `alpha/√r`.
    #[serde(default)]
    pub use_rslora: Option<bool>,
    /// DoRA (refused).
    #[serde(default)]
    pub use_dora: Option<bool>,
    /// Layers LoRA is restricted to.
    #[serde(default)]
    pub layers_to_transform: Option<Layers>,
    /// Ranks by module pattern.
    #[serde(default)]
    pub rank_pattern: Option<BTreeMap<String, u64>>,
    /// Alphas by module pattern.
    #[serde(default)]
    pub alpha_pattern: Option<BTreeMap<String, f64>>,
    /// Refused where set.
    #[serde(default)]
    pub layer_replication: Option<serde_json::Value>,
    /// Refused where set.
    #[serde(default)]
    pub target_parameters: Option<serde_json::Value>,
    /// Refused where set.
    #[serde(default)]
    pub trainable_token_indices: Option<serde_json::Value>,
    /// Refused where set.
    #[serde(default)]
    pub exclude_modules: Option<serde_json::Value>,
    /// A bias on LoRA's B (refused where true).
    #[serde(default)]
    pub lora_bias: Option<bool>,
}

fn is_set(v: &Option<serde_json::Value>) -> bool {
    match v {
        None | Some(serde_json::Value::Null) => false,
        Some(serde_json::Value::Array(a)) => !a.is_empty(),
        Some(serde_json::Value::Object(o)) => !o.is_empty(),
        Some(_) => true,
    }
}

/// The task of a `task_type`.
pub fn task_of(task_type: Option<&str>) -> Option<Task> {
    match task_type {
        Some("SEQ_CLS") => Some(Task::SequenceClassification),
        Some("TOKEN_CLS") => Some(Task::TokenClassification),
        Some("FEATURE_EXTRACTION") | None => Some(Task::Embedding),
        Some(_) => None,
    }
}

/// The `task_type` of a task.
pub fn task_type(task: Task) -> &'static str {
    match task {
        Task::SequenceClassification => "SEQ_CLS",
        Task::TokenClassification => "TOKEN_CLS",
        Task::Embedding => "FEATURE_EXTRACTION",
    }
}

/// What a bias tensor may replace under `bias`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum BiasPolicy {
    None,
    All,
    LoraOnly,
}

/// Reads a PEFT-layout tenant (LoRA or BitFit) in `dir` against `backbone`.
pub(crate) fn read(dir: &Path, cfg: &PeftConfig, backbone: &Backbone) -> Result<Parts> {
    let cfg_path = dir.join("adapter_config.json");
    let bad = |what: &str, m: &str| Error::pet(&cfg_path, what, m);
    let kind = match cfg.peft_type.as_str() {
        "LORA" => PetKind::Lora,
        "BITFIT" => PetKind::Bitfit,
        other => {
            return Err(bad(
                "peft_type",
                &format!("`{other}` is not read here: expected LORA or BITFIT"),
            ))
        }
    };
    if cfg.use_dora == Some(true) {
        return Err(bad("use_dora", "DoRA tenants are not supported"));
    }
    if cfg.lora_bias == Some(true) {
        return Err(bad("lora_bias", "a bias on LoRA's B is not supported"));
    }
    for (field, v) in [
        ("layer_replication", &cfg.layer_replication),
        ("target_parameters", &cfg.target_parameters),
        ("trainable_token_indices", &cfg.trainable_token_indices),
        ("exclude_modules", &cfg.exclude_modules),
    ] {
        if is_set(v) {
            return Err(bad(field, "not supported (must be null or absent)"));
        }
    }
    let task = task_of(cfg.task_type.as_deref()).ok_or_else(|| {
        bad(
            "task_type",
            "expected SEQ_CLS, TOKEN_CLS, FEATURE_EXTRACTION or null",
        )
    })?;
    let policy = match (kind, cfg.bias.as_deref()) {
        (PetKind::Bitfit, _) => BiasPolicy::All,
        (_, None | Some("none")) => BiasPolicy::None,
        (_, Some("all")) => BiasPolicy::All,
        (_, Some("lora_only")) => BiasPolicy::LoraOnly,
        (_, Some(other)) => {
            return Err(bad(
                "bias",
                &format!("`{other}`: expected none, all or lora_only"),
            ))
        }
    };
    let bcfg = backbone.config();
    let mkind = bcfg.kind()?;
    // LoRA: the targeted modules and each one's rank and scale.
    let mut targets: BTreeMap<Module, (usize, f64)> = BTreeMap::new();
    if kind == PetKind::Lora {
        let r = cfg
            .r
            .ok_or_else(|| bad("r", "missing: a LoRA needs its rank"))?;
        let alpha = cfg.lora_alpha.unwrap_or(8.0);
        let sel = Selector::new(cfg, &cfg_path)?;
        for m in Module::lora_candidates(bcfg) {
            let key = m.peft_key(mkind, task);
            if !sel.selects(&key, m.layer()) {
                continue;
            }
            let rank =
                pattern_value(&cfg.rank_pattern, &key, "rank_pattern", &cfg_path)?.unwrap_or(r);
            let alpha = pattern_value(&cfg.alpha_pattern, &key, "alpha_pattern", &cfg_path)?
                .unwrap_or(alpha);
            if rank == 0 || rank > MAX_RANK {
                return Err(bad(
                    "r",
                    &format!("rank {rank} for `{key}`: expected 1 to {MAX_RANK}"),
                ));
            }
            if !alpha.is_finite() || alpha.abs() > 1e6 {
                return Err(bad(
                    "lora_alpha",
                    &format!("{alpha} for `{key}`: expected a finite number of magnitude ≤ 1e6"),
                ));
            }
            let scale = if cfg.use_rslora == Some(true) {
                alpha / (rank as f64).sqrt()
            } else {
                alpha / rank as f64
            };
            targets.insert(m, (rank as usize, scale));
        }
        if targets.is_empty() {
            return Err(bad(
                "target_modules",
                "selects no linear layer of the backbone (LoRA on embeddings or layer norms is not supported)",
            ));
        }
    }
    let wpath = dir.join("adapter_model.safetensors");
    if !wpath.is_file() {
        let msg = if dir.join("adapter_model.bin").is_file() {
            "missing; only adapter_model.bin (a pickle) is there, which this runtime does not read: save with safetensors"
        } else {
            "missing"
        };
        return Err(Error::pet(&wpath, "adapter_model.safetensors", msg));
    }
    let file = WeightsFile::read(&wpath, backbone.dtype)?;
    let mut parts = Parts::new(kind);
    let mut pairs: BTreeMap<Module, (Option<&RawTensor>, Option<&RawTensor>)> = BTreeMap::new();
    let mut head: BTreeMap<(Module, bool), (&str, &RawTensor)> = BTreeMap::new();
    // A pooler saved whole (modules_to_save) is part of the head; a pooler bias alone is BitFit.
    let pooler_whole = file.tensors.keys().any(|n| {
        n.strip_prefix("base_model.model.")
            .and_then(|r| split_name(mkind, r))
            == Some((Module::Pooler, "weight"))
    });
    let mut biases: BTreeMap<Module, (&str, &RawTensor)> = BTreeMap::new();
    for (name, t) in &file.tensors {
        let refuse = |m: &str| Error::pet(&file.path, name.as_str(), m);
        let rest = name
            .strip_prefix("base_model.model.")
            .ok_or_else(|| refuse("PEFT tensor names start with `base_model.model.`"))?;
        let (module, suffix) = split_name(mkind, rest).ok_or_else(|| {
            refuse("not a tensor of a BERT-family LoRA or BitFit tenant this runtime reads")
        })?;
        if !module.exists_in(bcfg) {
            return Err(refuse(&format!(
                "layer out of range: the backbone has {} layers",
                bcfg.num_hidden_layers
            )));
        }
        if suffix.starts_with("original_module.") || suffix.starts_with("modules_to_save.") {
            continue;
        }
        let is_head = module == Module::Classifier || (module == Module::Pooler && pooler_whole);
        // A LoRA-wrapped linear keeps its own parameters under `base_layer` (`bias: all`).
        let suffix = if suffix == "base_layer.bias" && targets.contains_key(&module) {
            "bias"
        } else {
            suffix
        };
        match suffix {
            "lora_A.weight" | "lora_B.weight" => {
                if !targets.contains_key(&module) {
                    return Err(refuse(
                        "a LoRA tensor on a module that target_modules does not select for this backbone",
                    ));
                }
                let e = pairs.entry(module).or_default();
                if suffix == "lora_A.weight" {
                    e.0 = Some(t);
                } else {
                    e.1 = Some(t);
                }
            }
            "weight" | "bias" if is_head => {
                head.insert((module, suffix == "weight"), (name.as_str(), t));
            }
            "bias" => {
                let allowed = match policy {
                    BiasPolicy::All => true,
                    BiasPolicy::LoraOnly => targets.contains_key(&module),
                    BiasPolicy::None => false,
                };
                if !allowed {
                    return Err(refuse(&format!(
                        "a bias the config's `bias: {}` does not save",
                        cfg.bias.as_deref().unwrap_or("none")
                    )));
                }
                biases.insert(module, (name.as_str(), t));
            }
            "weight" => {
                return Err(refuse(
                    "a full weight of an encoder module: only heads (classifier, pooler) may be saved whole",
                ))
            }
            _ => {
                return Err(refuse(
                    "not a parameter this runtime reads (LoRA pairs, biases and heads are)",
                ))
            }
        }
    }
    for (m, (rank, scale)) in &targets {
        let key = format!("base_model.model.{}", m.peft_key(mkind, task));
        let (out, inp) = m.linear_shape(bcfg, 0).unwrap_or((0, 0));
        let (a, b) = pairs.get(m).copied().unwrap_or((None, None));
        let a = a.ok_or_else(|| {
            Error::pet(
                &file.path,
                format!("{key}.lora_A.weight"),
                format!("missing: expected shape [{rank}, {inp}]"),
            )
        })?;
        let b = b.ok_or_else(|| {
            Error::pet(
                &file.path,
                format!("{key}.lora_B.weight"),
                format!("missing: expected shape [{out}, {rank}]"),
            )
        })?;
        file.expect_shape(&format!("{key}.lora_A.weight"), a, &[*rank, inp])?;
        file.expect_shape(&format!("{key}.lora_B.weight"), b, &[out, *rank])?;
        parts.parameters += a.values.len() + b.values.len();
        parts.lora.insert(
            *m,
            LoraDelta {
                a: tensor(a)?,
                b: tensor(b)?,
                scale: *scale,
                rank: *rank,
            },
        );
    }
    for (m, (name, t)) in biases {
        file.expect_shape(name, t, &[m.bias_len(bcfg, 0)])?;
        parts.parameters += t.values.len();
        parts.biases.insert(m, tensor(t)?);
    }
    parts.head = read_head(&file, task, &head, bcfg, backbone)?;
    parts.parameters += head.values().map(|(_, t)| t.values.len()).sum::<usize>();
    Ok(parts)
}

/// The head from the classifier and pooler tensors found (each needs its weight and bias).
fn read_head(
    file: &WeightsFile,
    task: Task,
    head: &BTreeMap<(Module, bool), (&str, &RawTensor)>,
    cfg: &Config,
    backbone: &Backbone,
) -> Result<super::tenant::TenantHead> {
    let pair = |m: Module| -> Result<Option<NamedPair>> {
        match (head.get(&(m, true)), head.get(&(m, false))) {
            (None, None) => Ok(None),
            (Some(w), Some(b)) => Ok(Some((*w, *b))),
            (Some((n, _)), None) | (None, Some((n, _))) => Err(Error::pet(
                &file.path,
                *n,
                "a head module needs both its weight and its bias",
            )),
        }
    };
    let kind = cfg.kind()?;
    let pooler = pair(Module::Pooler)?;
    if task == Task::SequenceClassification && kind == ModelType::Roberta && pooler.is_none() {
        return Err(Error::pet(
            &file.path,
            "base_model.model.classifier.dense.weight",
            "missing: a RoBERTa sequence classifier saves its dense layer (modules_to_save)",
        ));
    }
    build_head(file, task, pair(Module::Classifier)?, pooler, backbone)
}
