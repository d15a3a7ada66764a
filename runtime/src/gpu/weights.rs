//! Where each tensor of a model lies in its device weight arena: resolved once from the packed
//! [`Layout`] when the model is made. A tensor the encoder needs and the layout lacks is an
//! error naming it; the head's tensors are optional (an embedding arena has none) and a pass
//! that needs a missing one fails naming it. No CUDA here: addresses are plain numbers.

use crate::config::Config;
use crate::error::{Error, Result};
use crate::layout::Layout;

/// A linear layer in the arena: weight (row-major `[out, in]`) and bias addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Linear {
    /// The weight.
    pub w: u64,
    /// The bias.
    pub b: u64,
}

/// A layer norm's scale and shift.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Norm {
    /// γ.
    pub gamma: u64,
    /// β.
    pub beta: u64,
}

/// The embedding tables and their layer norm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Embeddings {
    /// Word embeddings `[vocab, H]`.
    pub word: u64,
    /// Position embeddings `[positions, H]`.
    pub position: u64,
    /// Token-type embeddings `[types, H]`.
    pub token_type: u64,
    /// The layer norm after their sum.
    pub norm: Norm,
}

/// One encoder layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerWeights {
    /// The query weight; key and value follow `qkv_w_stride` elements apart each, so that one
    /// batched GEMM computes Q, K and V.
    pub qkv_w: u64,
    /// Elements from one of the Q/K/V weights to the next.
    pub qkv_w_stride: usize,
    /// The query bias; key and value biases follow `qkv_b_stride` elements apart.
    pub qkv_b: u64,
    /// Elements from one of the Q/K/V biases to the next.
    pub qkv_b_stride: usize,
    /// Attention output projection.
    pub attn_out: Linear,
    /// The layer norm after attention.
    pub attn_norm: Norm,
    /// FFN up projection.
    pub ffn_up: Linear,
    /// FFN down projection.
    pub ffn_down: Linear,
    /// The layer norm after the FFN.
    pub ffn_norm: Norm,
}

/// Every tensor address of a model's arena.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArenaWeights {
    /// The embeddings.
    pub embeddings: Embeddings,
    /// The encoder layers.
    pub layers: Vec<LayerWeights>,
    /// The pooler (sequence classification), if the layout has one.
    pub pooler: Option<Linear>,
    /// The classifier (classification heads), if the layout has one.
    pub classifier: Option<Linear>,
}

/// The error for a tensor a pass needs and the arena's layout does not have.
pub fn missing(name: &str) -> Error {
    Error::MissingTensor {
        name: name.to_string(),
        tried: "the model's packed layout (its device arena)".into(),
        expected: vec![],
    }
}

impl ArenaWeights {
    /// The addresses of `cfg`'s tensors in an arena at `base` holding `layout` with elements
    /// of `element_bytes`.
    pub fn resolve(layout: &Layout, cfg: &Config, base: u64, element_bytes: usize) -> Result<Self> {
        let esz = element_bytes as u64;
        let find = |name: &str| layout.get(name).map(|e| base + e.offset as u64 * esz);
        let at = |name: &str| find(name).ok_or_else(|| missing(name));
        let linear = |stem: &str| -> Result<Linear> {
            Ok(Linear {
                w: at(&format!("{stem}.weight"))?,
                b: at(&format!("{stem}.bias"))?,
            })
        };
        let norm = |stem: &str| -> Result<Norm> {
            Ok(Norm {
                gamma: at(&format!("{stem}.weight"))?,
                beta: at(&format!("{stem}.bias"))?,
            })
        };
        let optional = |stem: &str| -> Option<Linear> {
            Some(Linear {
                w: find(&format!("{stem}.weight"))?,
                b: find(&format!("{stem}.bias"))?,
            })
        };
        let embeddings = Embeddings {
            word: at("embeddings.word_embeddings.weight")?,
            position: at("embeddings.position_embeddings.weight")?,
            token_type: at("embeddings.token_type_embeddings.weight")?,
            norm: norm("embeddings.LayerNorm")?,
        };
        let layers = (0..cfg.num_hidden_layers)
            .map(|n| {
                let p = format!("encoder.layer.{n}");
                let q = linear(&format!("{p}.attention.self.query"))?;
                let k = linear(&format!("{p}.attention.self.key"))?;
                let v = linear(&format!("{p}.attention.self.value"))?;
                if k.w - q.w != v.w - k.w || k.b - q.b != v.b - k.b {
                    return Err(Error::Input(format!(
                        "{p}: query/key/value are not evenly spaced in the arena"
                    )));
                }
                Ok(LayerWeights {
                    qkv_w: q.w,
                    qkv_w_stride: ((k.w - q.w) / esz) as usize,
                    qkv_b: q.b,
                    qkv_b_stride: ((k.b - q.b) / esz) as usize,
                    attn_out: linear(&format!("{p}.attention.output.dense"))?,
                    attn_norm: norm(&format!("{p}.attention.output.LayerNorm"))?,
                    ffn_up: linear(&format!("{p}.intermediate.dense"))?,
                    ffn_down: linear(&format!("{p}.output.dense"))?,
                    ffn_norm: norm(&format!("{p}.output.LayerNorm"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ArenaWeights {
            embeddings,
            layers,
            pooler: optional("pooler.dense"),
            classifier: optional("classifier"),
        })
    }

    /// The pooler, or an error naming its weight.
    pub fn pooler(&self) -> Result<Linear> {
        self.pooler.ok_or_else(|| missing("pooler.dense.weight"))
    }

    /// The classifier, or an error naming its weight.
    pub fn classifier(&self) -> Result<Linear> {
        self.classifier.ok_or_else(|| missing("classifier.weight"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Task;
    use crate::zoo::Arch;

    #[test]
    fn addresses_follow_the_layout_and_qkv_are_evenly_spaced() {
        let cfg = Arch::Tiny.config(Task::SequenceClassification, 3);
        let layout = Layout::for_config(&cfg).unwrap();
        let w = ArenaWeights::resolve(&layout, &cfg, 1 << 20, 2).unwrap();
        assert_eq!(w.layers.len(), cfg.num_hidden_layers);
        let word = layout.get("embeddings.word_embeddings.weight").unwrap();
        assert_eq!(w.embeddings.word, (1 << 20) + 2 * word.offset as u64);
        let l0 = &w.layers[0];
        let addr = |name: &str| (1 << 20) + 2 * layout.get(name).unwrap().offset as u64;
        let stride = 2 * l0.qkv_w_stride as u64;
        assert_eq!(
            l0.qkv_w + stride,
            addr("encoder.layer.0.attention.self.key.weight")
        );
        assert_eq!(
            l0.qkv_w + 2 * stride,
            addr("encoder.layer.0.attention.self.value.weight")
        );
        assert_eq!(l0.ffn_up.b, addr("encoder.layer.0.intermediate.dense.bias"));
        assert!(w.pooler().is_ok() && w.classifier().is_ok());
    }

    #[test]
    fn a_missing_tensor_is_named() {
        // An embedding model's layout has no head: a pass that needs one names the tensor.
        let cfg = Arch::Tiny.config(Task::Embedding, 0);
        let layout = Layout::for_config(&cfg).unwrap();
        let w = ArenaWeights::resolve(&layout, &cfg, 0, 4).unwrap();
        let e = w.classifier().unwrap_err().to_string();
        assert!(e.contains("classifier.weight"), "{e}");
        let e = w.pooler().unwrap_err().to_string();
        assert!(e.contains("pooler.dense.weight"), "{e}");
        // A layout for fewer layers than the config: the first absent tensor is named.
        let mut deeper = cfg.clone();
        deeper.num_hidden_layers += 1;
        let e = ArenaWeights::resolve(&layout, &deeper, 0, 4)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("encoder.layer.2.attention.self.query.weight"),
            "{e}"
        );
    }
}
