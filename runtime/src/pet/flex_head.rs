//! The prediction heads of the `adapters` library that an adapter tenant may carry:
//! `head_config.json` + `model_head.safetensors` (`pytorch_model_head.bin`, a pickle, is
//! refused: save with safetensors). Without them the tenant is an embedding tenant.
//!
//! Supported: `classification` with `layers: 2`, `activation_function: tanh`, `use_pooler:
//! false` (dense + tanh + linear on the first token: the pooler and classifier of a BERT head,
//! tensors `heads.<name>.1.*` and `heads.<name>.4.*`, as the library numbers its
//! `nn.Sequential`: dropout, linear, activation, dropout, linear), or `layers: 1` with
//! `use_pooler: true` (the backbone's pooler, then `heads.<name>.1.*`); `tagging` with `layers:
//! 1` (`heads.<name>.1.*` on every token). Label names come from `label2id`.

use super::backbone::Backbone;
use super::bottleneck::{check_name, yes, MAX_ADAPTER_NAME};
use super::tenant::{build_head, Parts};
use super::tensors::{self, RawTensor, WeightsFile};
use crate::config::Task;
use crate::error::{Error, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// The library's `head_config.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct HeadFile {
    /// The head's configuration.
    pub config: HeadConfig,
    /// The head's name (in its tensor names).
    pub name: String,
}

/// A prediction head's configuration.
#[derive(Debug, Clone, Deserialize)]
pub struct HeadConfig {
    /// `classification` or `tagging`.
    pub head_type: String,
    /// Labels.
    pub num_labels: usize,
    /// Dense layers (the last one is the output).
    pub layers: usize,
    /// Activation between layers.
    #[serde(default)]
    pub activation_function: Option<String>,
    /// Whether the head reads the pooler's output.
    #[serde(default)]
    pub use_pooler: bool,
    /// Whether the output layer has a bias.
    #[serde(default = "yes")]
    pub bias: bool,
    /// Label names → ids.
    #[serde(default)]
    pub label2id: Option<BTreeMap<String, usize>>,
}

/// Reads `head_config.json` + `model_head.safetensors` if present (else an embedding tenant).
pub(crate) fn read(dir: &Path, backbone: &Backbone, parts: &mut Parts) -> Result<()> {
    let hpath = dir.join("head_config.json");
    if !hpath.is_file() {
        return Ok(());
    }
    let hf: HeadFile = tensors::read_json(&hpath)?;
    check_name(&hf.name, &hpath, "name")?;
    let hc = &hf.config;
    let bad = |f: &str, m: String| Error::pet(&hpath, f, m);
    let tanh = hc.activation_function.as_deref() == Some("tanh");
    // (task, pooler layer index, classifier layer index)
    let (task, pooler_idx, cls_idx) = match (hc.head_type.as_str(), hc.layers, hc.use_pooler) {
        ("classification", 2, false) if tanh => (Task::SequenceClassification, Some(1), 4),
        ("classification", 1, true) => (Task::SequenceClassification, None, 1),
        ("tagging", 1, _) => (Task::TokenClassification, None, 1),
        (t, l, p) => {
            return Err(bad(
                "config",
                format!(
                    "head_type `{t}` with {l} layers, use_pooler {p}, activation {:?}: supported are classification (2 layers, tanh, no pooler; or 1 layer on the pooler) and tagging (1 layer)",
                    hc.activation_function
                ),
            ))
        }
    };
    if !hc.bias {
        return Err(bad(
            "config.bias",
            "heads without an output bias are not supported".into(),
        ));
    }
    let wpath = dir.join("model_head.safetensors");
    if !wpath.is_file() {
        let msg = if dir.join("pytorch_model_head.bin").is_file() {
            "missing; only pytorch_model_head.bin (a pickle) is there: save with safetensors"
        } else {
            "missing"
        };
        return Err(Error::pet(&wpath, "model_head.safetensors", msg));
    }
    let file = WeightsFile::read(&wpath, backbone.dtype)?;
    let hname = hf.name.as_str();
    let names: Vec<String> = ["weight", "bias"]
        .iter()
        .flat_map(|s| {
            pooler_idx
                .iter()
                .chain(std::iter::once(&cls_idx))
                .map(move |i| format!("heads.{hname}.{i}.{s}"))
        })
        .collect();
    if let Some(extra) = file.tensors.keys().find(|n| !names.contains(n)) {
        return Err(Error::pet(
            &file.path,
            extra.as_str(),
            format!("not a tensor of head `{}` as its config describes", hf.name),
        ));
    }
    let get = |i: usize, s: &str| -> Result<(String, &RawTensor)> {
        let n = format!("heads.{}.{i}.{s}", hf.name);
        let t = file
            .tensors
            .get(&n)
            .ok_or_else(|| Error::pet(&file.path, n.as_str(), "missing"))?;
        Ok((n, t))
    };
    let (cwn, cw) = get(cls_idx, "weight")?;
    let (cbn, cb) = get(cls_idx, "bias")?;
    if cw.shape.first() != Some(&hc.num_labels) {
        return Err(Error::pet(
            &file.path,
            cwn.as_str(),
            format!("shape {:?}, but num_labels is {}", cw.shape, hc.num_labels),
        ));
    }
    let pooler = match pooler_idx {
        Some(i) => Some((get(i, "weight")?, get(i, "bias")?)),
        None => None,
    };
    let pooler_ref = pooler
        .as_ref()
        .map(|((wn, w), (bn, b))| ((wn.as_str(), *w), (bn.as_str(), *b)));
    parts.head = build_head(
        &file,
        task,
        Some(((cwn.as_str(), cw), (cbn.as_str(), cb))),
        pooler_ref,
        backbone,
    )?;
    if let Some(l2i) = &hc.label2id {
        let mut names = vec![String::new(); hc.num_labels];
        for (label, &id) in l2i {
            if id < names.len() && label.len() <= MAX_ADAPTER_NAME {
                names[id] = label.clone();
            }
        }
        if names.iter().all(|n| !n.is_empty()) {
            parts.head.label_names = Some(names);
        }
    }
    parts.parameters += file.tensors.values().map(|t| t.values.len()).sum::<usize>();
    Ok(())
}
