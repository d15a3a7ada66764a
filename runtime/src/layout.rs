//! The tensors a configuration needs, their shapes, the names they may carry in a checkpoint,
//! and their place in one packed, aligned buffer (the layout a device arena uses; weight
//! switching copies a tenant's packed buffer into it).

use crate::config::{Config, ModelType, Task};
use crate::error::{Error, Result};

/// Offsets are multiples of this many elements (256 bytes at 2 bytes per element).
pub const ALIGN_ELEMENTS: usize = 128;

/// One tensor of the model.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Canonical name (HF BERT naming without prefix).
    pub name: String,
    /// Shape, row-major.
    pub shape: Vec<usize>,
    /// Names to look for in a checkpoint, in order of preference.
    pub candidates: Vec<String>,
    /// Offset in elements within the packed buffer.
    pub offset: usize,
}

impl Entry {
    /// Number of elements.
    pub fn elements(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Whether a checkpoint may carry `name` although no configuration here reads it: other heads'
/// weights (pre-training `cls.*`, `lm_head.*`, a pooler the head does not use) and the
/// `position_ids` buffer older checkpoints store.
pub fn ignorable(name: &str) -> bool {
    let bare = ["bert.", "roberta.", "model."]
        .iter()
        .find_map(|p| name.strip_prefix(p))
        .unwrap_or(name);
    bare.starts_with("pooler.")
        || bare.starts_with("cls.")
        || bare.starts_with("lm_head.")
        || bare.ends_with("position_ids")
}

/// The tensors of `all` that were not `read` and are not [`ignorable`], sorted.
pub fn unused<'a>(
    all: impl IntoIterator<Item = &'a str>,
    read: &std::collections::BTreeSet<&str>,
) -> Vec<&'a str> {
    let mut out: Vec<&str> = all
        .into_iter()
        .filter(|n| !read.contains(n) && !ignorable(n))
        .collect();
    out.sort_unstable();
    out
}

/// The ordered tensors of one architecture + head, with packed offsets.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    entries: Vec<Entry>,
    total: usize,
}

fn encoder_candidates(kind: ModelType, name: &str) -> Vec<String> {
    let mut names = vec![name.to_string()];
    if let Some(stem) = name.strip_suffix("LayerNorm.weight") {
        names.push(format!("{stem}LayerNorm.gamma"));
    } else if let Some(stem) = name.strip_suffix("LayerNorm.bias") {
        names.push(format!("{stem}LayerNorm.beta"));
    }
    kind.prefixes()
        .iter()
        .flat_map(|p| names.iter().map(move |n| format!("{p}{n}")))
        .collect()
}

impl Layout {
    /// The layout of `cfg`'s encoder and head.
    pub fn for_config(cfg: &Config) -> Result<Self> {
        let kind = cfg.kind()?;
        let (h, i, l) = (cfg.hidden_size, cfg.intermediate_size, cfg.labels());
        let mut specs: Vec<(String, Vec<usize>, Vec<String>)> = Vec::new();
        let mut enc = |name: String, shape: Vec<usize>| {
            let c = encoder_candidates(kind, &name);
            specs.push((name, shape, c));
        };
        enc(
            "embeddings.word_embeddings.weight".into(),
            vec![cfg.vocab_size, h],
        );
        enc(
            "embeddings.position_embeddings.weight".into(),
            vec![cfg.max_position_embeddings, h],
        );
        enc(
            "embeddings.token_type_embeddings.weight".into(),
            vec![cfg.type_vocab_size, h],
        );
        enc("embeddings.LayerNorm.weight".into(), vec![h]);
        enc("embeddings.LayerNorm.bias".into(), vec![h]);
        for n in 0..cfg.num_hidden_layers {
            let p = format!("encoder.layer.{n}");
            for m in ["query", "key", "value"] {
                enc(format!("{p}.attention.self.{m}.weight"), vec![h, h]);
                enc(format!("{p}.attention.self.{m}.bias"), vec![h]);
            }
            enc(format!("{p}.attention.output.dense.weight"), vec![h, h]);
            enc(format!("{p}.attention.output.dense.bias"), vec![h]);
            enc(format!("{p}.attention.output.LayerNorm.weight"), vec![h]);
            enc(format!("{p}.attention.output.LayerNorm.bias"), vec![h]);
            enc(format!("{p}.intermediate.dense.weight"), vec![i, h]);
            enc(format!("{p}.intermediate.dense.bias"), vec![i]);
            enc(format!("{p}.output.dense.weight"), vec![h, i]);
            enc(format!("{p}.output.dense.bias"), vec![h]);
            enc(format!("{p}.output.LayerNorm.weight"), vec![h]);
            enc(format!("{p}.output.LayerNorm.bias"), vec![h]);
        }
        let task = cfg.task();
        if task == Task::SequenceClassification {
            for (suffix, shape) in [("weight", vec![h, h]), ("bias", vec![h])] {
                let name = format!("pooler.dense.{suffix}");
                let mut c = encoder_candidates(kind, &name);
                c.push(format!("classifier.dense.{suffix}"));
                specs.push((name, shape, c));
            }
        }
        if task != Task::Embedding {
            for (suffix, shape) in [("weight", vec![l, h]), ("bias", vec![l])] {
                let name = format!("classifier.{suffix}");
                let c = vec![name.clone(), format!("classifier.out_proj.{suffix}")];
                specs.push((name, shape, c));
            }
        }
        let mut entries = Vec::with_capacity(specs.len());
        let mut offset: usize = 0;
        for (name, shape, candidates) in specs {
            // Sizes beyond `usize` (a configuration that skipped `Config::validate`) are refused.
            let padded = shape
                .iter()
                .try_fold(1usize, |n, &d| n.checked_mul(d))
                .and_then(|n| n.checked_next_multiple_of(ALIGN_ELEMENTS));
            let next = padded.and_then(|n| offset.checked_add(n));
            let Some(next) = next else {
                return Err(Error::Input(format!(
                    "tensor `{name}` of shape {shape:?} does not fit in memory"
                )));
            };
            entries.push(Entry {
                name,
                shape,
                candidates,
                offset,
            });
            offset = next;
        }
        Ok(Layout {
            entries,
            total: offset,
        })
    }

    /// All tensors in packing order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The entry with this canonical name.
    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// Elements of the packed buffer, alignment padding included.
    pub fn total_elements(&self) -> usize {
        self.total
    }

    /// Parameters of the encoder and head (elements, padding excluded).
    pub fn parameters(&self) -> usize {
        self.entries.iter().map(Entry::elements).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zoo::Arch;

    #[test]
    fn bert_base_has_the_real_parameter_count() {
        let cfg = Arch::BertBase.config(Task::Embedding, 0);
        // bert-base-uncased without pooler: 109,482,240 − 590,592 = 108,891,648
        let l = Layout::for_config(&cfg).unwrap();
        assert_eq!(l.parameters(), 108_891_648);
        assert!(l.entries().iter().all(|e| e.offset % ALIGN_ELEMENTS == 0));
        assert!(l.entries()[0]
            .candidates
            .contains(&"bert.embeddings.word_embeddings.weight".into()));
    }
}
