//! Writing one seeded tenant of a PET zoo in its real layout: LoRA and BitFit in PEFT's
//! (`adapter_config.json` + `adapter_model.safetensors`, heads as `modules_to_save`), bottleneck
//! adapters in the `adapters` library's (`adapter_config.json` + `adapter.safetensors`, a flex
//! head in `head_config.json` + `model_head.safetensors`). LoRA A ~ N(0, 1/in), B ~ N(0, 0.01²);
//! BitFit biases = the backbone's + N(0, 0.01²); adapters down ~ N(0, 1/h), up ~ N(0, 0.02²).

use super::peft::task_type;
use super::sites::{model_prefix, Module};
use super::write::{self, NamedTensor};
use super::zoo::{normal, peft_target_names, rng, PetSpec, Placement, BACKBONE_DIR};
use crate::bert::LayerLinear;
use crate::config::{Config, ModelType, Task};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::zoo::tenant_task;
use rand_pcg::Pcg64Mcg;
use std::collections::BTreeMap;
use std::path::Path;

/// What every tenant writer needs.
pub(crate) struct Ctx<'a> {
    pub(crate) cfg: &'a Config,
    pub(crate) kind: ModelType,
    pub(crate) spec: &'a PetSpec,
    pub(crate) dtype: DType,
    pub(crate) seed: u64,
    pub(crate) biases: &'a BTreeMap<String, Vec<f32>>,
}

/// The classifier (and for RoBERTa sequence classification, the dense layer) of a tenant,
/// under the tensor names `name(module, suffix)` gives.
fn head_tensors(
    c: &Ctx,
    r: &mut Pcg64Mcg,
    task: Task,
    labels: usize,
    name: &dyn Fn(Module, &str) -> String,
) -> Vec<NamedTensor> {
    let h = c.cfg.hidden_size;
    let mut v = Vec::new();
    if task == Task::SequenceClassification && c.kind == ModelType::Roberta {
        v.push((
            name(Module::Pooler, "weight"),
            vec![h, h],
            normal(r, h * h, 0.02),
        ));
        v.push((name(Module::Pooler, "bias"), vec![h], normal(r, h, 0.02)));
    }
    if task != Task::Embedding {
        v.push((
            name(Module::Classifier, "weight"),
            vec![labels, h],
            normal(r, labels * h, 0.02),
        ));
        v.push((
            name(Module::Classifier, "bias"),
            vec![labels],
            normal(r, labels, 0.02),
        ));
    }
    v
}

/// Writes tenant `i` into `dir`; returns (parameters, bytes).
pub(crate) fn write(c: &Ctx, dir: &Path, i: usize, name: &str) -> Result<(usize, u64)> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let (task, labels) = tenant_task(i);
    let mut r = rng(c.seed, i as u64, 1);
    let count = |t: &[NamedTensor]| t.iter().map(|t| t.2.len()).sum::<usize>();
    let mut bytes = 0;
    let (mut tensors, file, config, mut parameters) = match c.spec {
        PetSpec::Lora { .. } | PetSpec::Bitfit => {
            let (t, file, conf) = peft_tenant(c, &mut r, task, labels)?;
            (t, file, conf, 0)
        }
        PetSpec::Adapter {
            placement,
            reduction_factor,
        } => {
            let (t, conf) = adapter_tenant(c, &mut r, *placement, *reduction_factor, name)?;
            let mut head_params = 0;
            if task != Task::Embedding {
                let (mut ht, hc) = adapter_head(c, &mut r, task, labels, name);
                head_params = count(&ht);
                bytes += write::safetensors(&dir.join("model_head.safetensors"), c.dtype, &mut ht)?;
                bytes += write::json(&dir.join("head_config.json"), &hc)?;
            }
            (t, "adapter.safetensors", conf, head_params)
        }
    };
    parameters += count(&tensors);
    bytes += write::safetensors(&dir.join(file), c.dtype, &mut tensors)?;
    bytes += write::json(&dir.join("adapter_config.json"), &config)?;
    Ok((parameters, bytes))
}

/// A LoRA or BitFit tenant in the PEFT layout.
fn peft_tenant(
    c: &Ctx,
    r: &mut Pcg64Mcg,
    task: Task,
    labels: usize,
) -> Result<(Vec<NamedTensor>, &'static str, serde_json::Value)> {
    let key = |m: Module, s: &str| format!("base_model.model.{}.{s}", m.peft_key(c.kind, task));
    let mut t = Vec::new();
    let modules_to_save = match (task, c.kind) {
        (Task::Embedding, _) => serde_json::Value::Null,
        _ => serde_json::json!(["classifier"]),
    };
    let config = match c.spec {
        PetSpec::Lora {
            rank,
            alpha,
            targets,
        } => {
            for l in 0..c.cfg.num_hidden_layers {
                for w in LayerLinear::ALL.iter().filter(|w| targets.contains(w)) {
                    let m = Module::Linear(l, *w);
                    let (out, inp) = m.linear_shape(c.cfg, 0).unwrap_or((0, 0));
                    let sa = 1.0 / (inp as f32).sqrt();
                    t.push((
                        key(m, "lora_A.weight"),
                        vec![*rank, inp],
                        normal(r, rank * inp, sa),
                    ));
                    t.push((
                        key(m, "lora_B.weight"),
                        vec![out, *rank],
                        normal(r, out * rank, 0.01),
                    ));
                }
            }
            serde_json::json!({
                "alpha_pattern": {},
                "base_model_name_or_path": BACKBONE_DIR,
                "bias": "none",
                "fan_in_fan_out": false,
                "inference_mode": true,
                "init_lora_weights": true,
                "layers_pattern": null,
                "layers_to_transform": null,
                "lora_alpha": alpha,
                "lora_dropout": 0.0,
                "modules_to_save": modules_to_save,
                "peft_type": "LORA",
                "r": rank,
                "rank_pattern": {},
                "revision": null,
                "target_modules": peft_target_names(targets, c.cfg.num_hidden_layers),
                "task_type": task_type(task),
                "use_dora": false,
                "use_rslora": false,
            })
        }
        _ => {
            for m in Module::bias_sites(c.cfg) {
                let canonical = format!("{}.bias", m.path(c.kind, Task::Embedding));
                let base = c
                    .biases
                    .get(&canonical)
                    .ok_or_else(|| Error::Zoo(format!("the backbone has no bias {canonical}")))?;
                let noise = normal(r, base.len(), 0.01);
                let v = base.iter().zip(noise).map(|(b, n)| b + n).collect();
                t.push((key(m, "bias"), vec![base.len()], v));
            }
            serde_json::json!({
                "base_model_name_or_path": BACKBONE_DIR,
                "bias": "all",
                "modules_to_save": modules_to_save,
                "peft_type": "BITFIT",
                "task_type": task_type(task),
            })
        }
    };
    t.extend(head_tensors(c, r, task, labels, &key));
    Ok((t, "adapter_model.safetensors", config))
}

/// A bottleneck-adapter tenant in the `adapters` library's layout.
fn adapter_tenant(
    c: &Ctx,
    r: &mut Pcg64Mcg,
    placement: Placement,
    reduction_factor: usize,
    name: &str,
) -> Result<(Vec<NamedTensor>, serde_json::Value)> {
    let h = c.cfg.hidden_size;
    let m = (h / reduction_factor.max(1)).max(1);
    let pre = model_prefix(c.kind);
    let houlsby = placement == Placement::Houlsby;
    let mut t = Vec::new();
    for l in 0..c.cfg.num_hidden_layers {
        let sites: &[&str] = if houlsby {
            &["attention.output", "output"]
        } else {
            &["output"]
        };
        for s in sites {
            let p = format!("{pre}encoder.layer.{l}.{s}.adapters.{name}");
            t.push((
                format!("{p}.adapter_down.0.weight"),
                vec![m, h],
                normal(r, m * h, 1.0 / (h as f32).sqrt()),
            ));
            t.push((
                format!("{p}.adapter_down.0.bias"),
                vec![m],
                normal(r, m, 0.02),
            ));
            t.push((
                format!("{p}.adapter_up.weight"),
                vec![h, m],
                normal(r, h * m, 0.02),
            ));
            t.push((format!("{p}.adapter_up.bias"), vec![h], normal(r, h, 0.02)));
        }
    }
    let config = serde_json::json!({
        "config": {
            "adapter_residual_before_ln": false,
            "cross_adapter": false,
            "dropout": 0.0,
            "init_weights": "bert",
            "inv_adapter": null,
            "inv_adapter_reduction_factor": null,
            "is_parallel": false,
            "leave_out": [],
            "ln_after": false,
            "ln_before": false,
            "mh_adapter": houlsby,
            "non_linearity": if houlsby { "swish" } else { "relu" },
            "original_ln_after": true,
            "original_ln_before": !houlsby,
            "output_adapter": true,
            "phm_layer": false,
            "reduction_factor": reduction_factor,
            "residual_before_ln": true,
            "scaling": 1.0,
            "stochastic_depth": 0.0,
            "use_gating": false,
        },
        "hidden_size": h,
        "model_class": format!("{}AdapterModel", family(c.kind)),
        "model_name": BACKBONE_DIR,
        "model_type": c.cfg.model_type,
        "name": name,
    });
    Ok((t, config))
}

fn family(kind: ModelType) -> &'static str {
    match kind {
        ModelType::Bert => "Bert",
        ModelType::Roberta => "Roberta",
    }
}

/// A flex head of the `adapters` library for an adapter tenant: on BERT a classification head
/// over the backbone's pooler (one layer), on RoBERTa dense + tanh + output (two layers); a
/// tagging head (one layer).
fn adapter_head(
    c: &Ctx,
    r: &mut Pcg64Mcg,
    task: Task,
    labels: usize,
    name: &str,
) -> (Vec<NamedTensor>, serde_json::Value) {
    let h = c.cfg.hidden_size;
    let two = task == Task::SequenceClassification && c.kind == ModelType::Roberta;
    let out = if two { 4 } else { 1 };
    let mut t = Vec::new();
    if two {
        t.push((
            format!("heads.{name}.1.weight"),
            vec![h, h],
            normal(r, h * h, 0.02),
        ));
        t.push((format!("heads.{name}.1.bias"), vec![h], normal(r, h, 0.02)));
    }
    t.push((
        format!("heads.{name}.{out}.weight"),
        vec![labels, h],
        normal(r, labels * h, 0.02),
    ));
    t.push((
        format!("heads.{name}.{out}.bias"),
        vec![labels],
        normal(r, labels, 0.02),
    ));
    let label2id: BTreeMap<String, usize> =
        (0..labels).map(|k| (format!("LABEL_{k}"), k)).collect();
    let head_type = if task == Task::SequenceClassification {
        "classification"
    } else {
        "tagging"
    };
    let conf = serde_json::json!({
        "config": {
            "head_type": head_type,
            "num_labels": labels,
            "layers": if two { 2 } else { 1 },
            "activation_function": "tanh",
            "label2id": label2id,
            "use_pooler": task == Task::SequenceClassification && !two,
            "bias": true,
            "dropout_prob": null,
        },
        "hidden_size": h,
        "model_class": format!("{}AdapterModel", family(c.kind)),
        "model_name": BACKBONE_DIR,
        "model_type": c.cfg.model_type,
        "name": name,
    });
    (t, conf)
}
