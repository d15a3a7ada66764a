//! Where a parameter-efficient tenant acts in a BERT-family encoder: the modules it may add a
//! delta to or replace a bias of, their canonical paths (Hugging Face naming without the model
//! prefix), their shapes, and the parsing of checkpoint tensor names into (module, suffix).
//!
//! Canonical paths: `encoder.layer.N.attention.self.{query,key,value}`,
//! `encoder.layer.N.attention.output.dense`, `encoder.layer.N.intermediate.dense`,
//! `encoder.layer.N.output.dense`, `embeddings.LayerNorm`, `encoder.layer.N.attention.output.
//! LayerNorm`, `encoder.layer.N.output.LayerNorm`, `pooler.dense`, `classifier`. A RoBERTa
//! sequence-classification head names its dense `classifier.dense` and its output
//! `classifier.out_proj` (as `transformers` does); both map to [`Module::Pooler`] and
//! [`Module::Classifier`].

use crate::bert::{LayerLinear, LnPos};
use crate::config::{Config, ModelType, Task};

/// A module of the encoder or its head that a tenant can change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Module {
    /// A linear layer of encoder layer N.
    Linear(usize, LayerLinear),
    /// A layer norm.
    Ln(LnPos),
    /// The pooler dense layer (`pooler.dense`; RoBERTa's `classifier.dense`).
    Pooler,
    /// The classifier (`classifier`; RoBERTa sequence classification: `classifier.out_proj`).
    Classifier,
}

fn linear_path(which: LayerLinear) -> &'static str {
    match which {
        LayerLinear::Query => "attention.self.query",
        LayerLinear::Key => "attention.self.key",
        LayerLinear::Value => "attention.self.value",
        LayerLinear::AttnOut => "attention.output.dense",
        LayerLinear::Up => "intermediate.dense",
        LayerLinear::Down => "output.dense",
    }
}

/// Whether a RoBERTa sequence-classification head names its modules `classifier.dense` /
/// `classifier.out_proj`.
fn roberta_seq(kind: ModelType, task: Task) -> bool {
    kind == ModelType::Roberta && task == Task::SequenceClassification
}

impl Module {
    /// The canonical path of the module in a model of `kind` with head `task` (the model
    /// prefix `bert.` / `roberta.` not included).
    pub fn path(&self, kind: ModelType, task: Task) -> String {
        match *self {
            Module::Linear(l, w) => format!("encoder.layer.{l}.{}", linear_path(w)),
            Module::Ln(LnPos::Embeddings) => "embeddings.LayerNorm".into(),
            Module::Ln(LnPos::Attention(l)) => {
                format!("encoder.layer.{l}.attention.output.LayerNorm")
            }
            Module::Ln(LnPos::Output(l)) => format!("encoder.layer.{l}.output.LayerNorm"),
            Module::Pooler if roberta_seq(kind, task) => "classifier.dense".into(),
            Module::Pooler => "pooler.dense".into(),
            Module::Classifier if roberta_seq(kind, task) => "classifier.out_proj".into(),
            Module::Classifier => "classifier".into(),
        }
    }

    /// The path PEFT matches `target_modules` against: [`Module::path`] with the model prefix
    /// a model with a head has (`bert.` / `roberta.`; none for a bare encoder, and none for the
    /// head's own modules).
    pub fn peft_key(&self, kind: ModelType, task: Task) -> String {
        let path = self.path(kind, task);
        let head_module = path.starts_with("classifier");
        match (task, head_module) {
            (Task::Embedding, _) | (_, true) => path,
            _ => format!("{}{path}", model_prefix(kind)),
        }
    }

    /// `(out, in)` of a linear module (`labels` rows for the classifier); `None` for a layer
    /// norm.
    pub fn linear_shape(&self, cfg: &Config, labels: usize) -> Option<(usize, usize)> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        match *self {
            Module::Linear(_, LayerLinear::Up) => Some((i, h)),
            Module::Linear(_, LayerLinear::Down) => Some((h, i)),
            Module::Linear(..) | Module::Pooler => Some((h, h)),
            Module::Classifier => Some((labels, h)),
            Module::Ln(_) => None,
        }
    }

    /// Elements of the module's bias (its output width; `h` for a layer norm).
    pub fn bias_len(&self, cfg: &Config, labels: usize) -> usize {
        self.linear_shape(cfg, labels)
            .map_or(cfg.hidden_size, |(out, _)| out)
    }

    /// Whether the module exists in a model of `cfg`'s shape (layer index in range).
    pub fn exists_in(&self, cfg: &Config) -> bool {
        match *self {
            Module::Linear(l, _)
            | Module::Ln(LnPos::Attention(l))
            | Module::Ln(LnPos::Output(l)) => l < cfg.num_hidden_layers,
            _ => true,
        }
    }

    /// The encoder layer a module belongs to, if any.
    pub fn layer(&self) -> Option<usize> {
        match *self {
            Module::Linear(l, _)
            | Module::Ln(LnPos::Attention(l))
            | Module::Ln(LnPos::Output(l)) => Some(l),
            _ => None,
        }
    }

    /// The linear modules a LoRA may target, in model order: every encoder linear, then the
    /// pooler.
    pub fn lora_candidates(cfg: &Config) -> Vec<Module> {
        let mut v: Vec<Module> = (0..cfg.num_hidden_layers)
            .flat_map(|l| LayerLinear::ALL.map(|w| Module::Linear(l, w)))
            .collect();
        v.push(Module::Pooler);
        v
    }

    /// Every module with a bias that BitFit trains, in model order: the embedding layer norm,
    /// each layer's six linears and two layer norms, and the pooler.
    pub fn bias_sites(cfg: &Config) -> Vec<Module> {
        let mut v = vec![Module::Ln(LnPos::Embeddings)];
        for l in 0..cfg.num_hidden_layers {
            for w in LayerLinear::ALL {
                v.push(Module::Linear(l, w));
                if w == LayerLinear::AttnOut {
                    v.push(Module::Ln(LnPos::Attention(l)));
                }
            }
            v.push(Module::Ln(LnPos::Output(l)));
        }
        v.push(Module::Pooler);
        v
    }
}

/// The model prefix of a family's task models (`bert.` / `roberta.`).
pub fn model_prefix(kind: ModelType) -> &'static str {
    match kind {
        ModelType::Bert => "bert.",
        ModelType::Roberta => "roberta.",
    }
}

fn parse_layer_rest(l: usize, rest: &str) -> Option<(Module, &str)> {
    const LNS: [(&str, bool); 2] = [
        ("attention.output.LayerNorm.", true),
        ("output.LayerNorm.", false),
    ];
    for (p, attention) in LNS {
        if let Some(s) = rest.strip_prefix(p) {
            let pos = if attention {
                LnPos::Attention(l)
            } else {
                LnPos::Output(l)
            };
            return Some((Module::Ln(pos), s));
        }
    }
    for w in LayerLinear::ALL {
        if let Some(s) = rest
            .strip_prefix(linear_path(w))
            .and_then(|s| s.strip_prefix('.'))
        {
            return Some((Module::Linear(l, w), s));
        }
    }
    None
}

/// Splits a tensor name (the `base_model.model.` of PEFT already removed) into the module it
/// belongs to and the rest (`lora_A.weight`, `bias`, `weight`…).
/// The encoder may carry the model prefix (`bert.`, `roberta.`, `model.`) or none.
pub fn split_name(kind: ModelType, name: &str) -> Option<(Module, &str)> {
    if let Some(s) = name.strip_prefix("classifier.") {
        if let Some(s) = s.strip_prefix("dense.") {
            return Some((Module::Pooler, s));
        }
        if let Some(s) = s.strip_prefix("out_proj.") {
            return Some((Module::Classifier, s));
        }
        return Some((Module::Classifier, s));
    }
    let body = kind
        .prefixes()
        .iter()
        .filter(|p| !p.is_empty())
        .find_map(|p| name.strip_prefix(p))
        .unwrap_or(name);
    if let Some(s) = body.strip_prefix("pooler.dense.") {
        return Some((Module::Pooler, s));
    }
    if let Some(s) = body.strip_prefix("embeddings.LayerNorm.") {
        return Some((Module::Ln(LnPos::Embeddings), s));
    }
    let rest = body.strip_prefix("encoder.layer.")?;
    let (num, rest) = rest.split_once('.')?;
    if num.is_empty() || num.len() > 4 || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let l: usize = num.parse().ok()?;
    parse_layer_rest(l, rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_round_trip_through_split_name() {
        let cfg = crate::zoo::Arch::Tiny.config(Task::SequenceClassification, 3);
        let mut all = Module::bias_sites(&cfg);
        all.push(Module::Classifier);
        for kind in [ModelType::Bert, ModelType::Roberta] {
            for task in [Task::SequenceClassification, Task::TokenClassification] {
                for m in &all {
                    for prefix in ["", model_prefix(kind)] {
                        let p = m.path(kind, task);
                        let name = if p.starts_with("classifier") {
                            format!("{p}.bias")
                        } else {
                            format!("{prefix}{p}.bias")
                        };
                        assert_eq!(split_name(kind, &name), Some((*m, "bias")), "{name}");
                    }
                }
            }
        }
        assert_eq!(
            split_name(
                ModelType::Bert,
                "base.encoder.layer.0.attention.self.query.bias"
            ),
            None
        );
        assert_eq!(
            split_name(
                ModelType::Bert,
                "bert.encoder.layer.1.output.dense.lora_A.weight"
            ),
            Some((Module::Linear(1, LayerLinear::Down), "lora_A.weight"))
        );
        assert_eq!(
            split_name(
                ModelType::Bert,
                "encoder.layer.0.attention.output.dense.weight"
            ),
            Some((Module::Linear(0, LayerLinear::AttnOut), "weight"))
        );
        // Bottleneck adapters hang off `attention.output` / `output`, not a linear.
        assert_eq!(
            split_name(
                ModelType::Bert,
                "encoder.layer.1.output.adapters.a.adapter_up.weight"
            ),
            None
        );
        assert_eq!(
            split_name(ModelType::Bert, "encoder.layer.x.output.dense.bias"),
            None
        );
        assert_eq!(
            split_name(ModelType::Bert, "encoder.layer.99999.output.dense.bias"),
            None
        );
        assert_eq!(split_name(ModelType::Bert, "lm_head.bias"), None);
    }

    #[test]
    fn bias_sites_count() {
        let cfg = crate::zoo::Arch::BertBase.config(Task::Embedding, 0);
        assert_eq!(Module::bias_sites(&cfg).len(), 1 + 12 * 8 + 1);
        assert_eq!(Module::lora_candidates(&cfg).len(), 12 * 6 + 1);
    }
}
