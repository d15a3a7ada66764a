//! BERT / RoBERTa encoder and task heads on candle (CPU): the numeric reference of the runtime.
//!
//! Matrix products run in the model's dtype; layer norms, softmax, GELU and the heads compute
//! in f32 and round back, as the GPU kernels do.

use crate::checkpoint::PackedWeights;
use crate::config::{Activation, Config, Task};
use crate::error::{Error, Result};
use crate::tokenize::Batch;
use candle_core::{DType as CDType, Device, Tensor, D};

/// The output of a head for a whole batch, as f32.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadOutput {
    /// Which head produced it.
    pub task: Task,
    /// Row-major values: `[batch, labels]`, `[batch, seq, labels]` or `[batch, hidden]`.
    pub values: Vec<f32>,
    /// The shape of `values`.
    pub shape: Vec<usize>,
}

impl HeadOutput {
    /// The values of row `b` (one text).
    pub fn row(&self, b: usize) -> &[f32] {
        let n: usize = self.shape[1..].iter().product();
        &self.values[b * n..(b + 1) * n]
    }
}

struct Linear {
    w: Tensor,
    b: Tensor,
}

impl Linear {
    /// `x [n, in] → [n, out]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.matmul(&self.w.t()?)?.broadcast_add(&self.b)?)
    }
}

struct LayerNorm {
    w: Tensor,
    b: Tensor,
    eps: f64,
}

impl LayerNorm {
    /// Normalises the last dimension in f32 and returns the result in `x`'s dtype.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dt = x.dtype();
        let x = x.to_dtype(CDType::F32)?;
        let mean = x.mean_keepdim(D::Minus1)?;
        let xc = x.broadcast_sub(&mean)?;
        let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
        let y = xc.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        let y = y.broadcast_mul(&self.w)?.broadcast_add(&self.b)?;
        Ok(y.to_dtype(dt)?)
    }
}

struct Layer {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    ln1: LayerNorm,
    up: Linear,
    down: Linear,
    ln2: LayerNorm,
}

/// An encoder with its head, weights held as candle tensors on the CPU.
pub struct Bert {
    cfg: Config,
    task: Task,
    act: Activation,
    dtype: CDType,
    word: Tensor,
    pos: Tensor,
    types: Tensor,
    ln_emb: LayerNorm,
    layers: Vec<Layer>,
    pooler: Option<Linear>,
    classifier: Option<Linear>,
}

/// Builds the model from packed weights (the "var builder" of this crate).
pub fn load(w: &PackedWeights, cfg: &Config) -> Result<Bert> {
    let dev = Device::Cpu;
    let dt = w.dtype.to_candle();
    let get = |name: &str| -> Result<Tensor> {
        let e = w.layout.get(name).ok_or_else(|| Error::MissingTensor {
            name: name.to_string(),
            tried: "the packed layout".into(),
            expected: vec![],
        })?;
        Ok(Tensor::from_raw_buffer(
            w.tensor_bytes(e),
            dt,
            &e.shape,
            &dev,
        )?)
    };
    let get32 = |name: &str| -> Result<Tensor> { Ok(get(name)?.to_dtype(CDType::F32)?) };
    let lin = |p: &str| -> Result<Linear> {
        Ok(Linear {
            w: get(&format!("{p}.weight"))?,
            b: get(&format!("{p}.bias"))?,
        })
    };
    let ln = |p: &str| -> Result<LayerNorm> {
        Ok(LayerNorm {
            w: get32(&format!("{p}.weight"))?,
            b: get32(&format!("{p}.bias"))?,
            eps: cfg.layer_norm_eps,
        })
    };
    let layers = (0..cfg.num_hidden_layers)
        .map(|n| {
            let p = format!("encoder.layer.{n}");
            Ok(Layer {
                q: lin(&format!("{p}.attention.self.query"))?,
                k: lin(&format!("{p}.attention.self.key"))?,
                v: lin(&format!("{p}.attention.self.value"))?,
                o: lin(&format!("{p}.attention.output.dense"))?,
                ln1: ln(&format!("{p}.attention.output.LayerNorm"))?,
                up: lin(&format!("{p}.intermediate.dense"))?,
                down: lin(&format!("{p}.output.dense"))?,
                ln2: ln(&format!("{p}.output.LayerNorm"))?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let task = cfg.task();
    Ok(Bert {
        cfg: cfg.clone(),
        task,
        act: cfg.activation()?,
        dtype: dt,
        word: get("embeddings.word_embeddings.weight")?,
        pos: get("embeddings.position_embeddings.weight")?,
        types: get("embeddings.token_type_embeddings.weight")?,
        ln_emb: ln("embeddings.LayerNorm")?,
        layers,
        pooler: if task == Task::SequenceClassification {
            Some(lin("pooler.dense")?)
        } else {
            None
        },
        classifier: if task == Task::Embedding {
            None
        } else {
            Some(lin("classifier")?)
        },
    })
}

impl Bert {
    /// Runs the encoder and head on a tokenized, padded batch.
    pub fn forward(&self, batch: &Batch) -> Result<HeadOutput> {
        batch.check(&self.cfg)?;
        let (b, s, h) = (batch.batch, batch.seq, self.cfg.hidden_size);
        let (nh, dh) = (self.cfg.num_attention_heads, self.cfg.head_dim());
        let dev = Device::Cpu;
        let ids = Tensor::from_slice(&batch.ids, b * s, &dev)?;
        let tt = Tensor::from_slice(&batch.type_ids, b * s, &dev)?;
        let off = self.cfg.position_offset() as u32;
        let pos: Vec<u32> = (0..b * s).map(|i| off + (i % s) as u32).collect();
        let pos = Tensor::from_slice(&pos, b * s, &dev)?;
        let x = (self.word.index_select(&ids, 0)? + self.pos.index_select(&pos, 0)?)?;
        let x = (x + self.types.index_select(&tt, 0)?)?;
        let mut x = self.ln_emb.forward(&x)?; // [b*s, h]
        let mask: Vec<f32> = batch.mask.iter().map(|&m| m as f32).collect();
        let mask = Tensor::from_slice(&mask, (b, s), &dev)?;
        let bias = ((mask.clone() - 1.0)? * 1e30)?.reshape((b, 1, 1, s))?;
        let scale = 1.0 / (dh as f64).sqrt();
        let heads = |t: Tensor| -> Result<Tensor> {
            Ok(t.reshape((b, s, nh, dh))?.transpose(1, 2)?.contiguous()?)
        };
        for l in &self.layers {
            let q = heads(l.q.forward(&x)?)?;
            let k = heads(l.k.forward(&x)?)?;
            let v = heads(l.v.forward(&x)?)?;
            let scores = q.matmul(&k.t()?)?.to_dtype(CDType::F32)?;
            let scores = (scores * scale)?.broadcast_add(&bias)?;
            let max = scores.max_keepdim(D::Minus1)?;
            let e = scores.broadcast_sub(&max)?.exp()?;
            let p = e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?;
            let ctx = p.to_dtype(self.dtype)?.matmul(&v)?; // [b, nh, s, dh]
            let ctx = ctx.transpose(1, 2)?.contiguous()?.reshape((b * s, h))?;
            let a = l.ln1.forward(&(l.o.forward(&ctx)? + &x)?)?;
            let u = l.up.forward(&a)?.to_dtype(CDType::F32)?;
            let u = match self.act {
                Activation::GeluErf => u.gelu_erf()?,
                Activation::GeluTanh => u.gelu()?,
                Activation::Relu => u.relu()?,
            }
            .to_dtype(self.dtype)?;
            x = l.ln2.forward(&(l.down.forward(&u)? + &a)?)?;
        }
        self.head(&x, &mask, b, s)
    }

    fn head(&self, x: &Tensor, mask: &Tensor, b: usize, s: usize) -> Result<HeadOutput> {
        let h = self.cfg.hidden_size;
        let f32v = |t: Tensor| -> Result<Vec<f32>> {
            Ok(t.to_dtype(CDType::F32)?.flatten_all()?.to_vec1::<f32>()?)
        };
        let (values, shape) = match (self.task, &self.pooler, &self.classifier) {
            (Task::SequenceClassification, Some(p), Some(c)) => {
                let first = x.reshape((b, s, h))?.narrow(1, 0, 1)?.reshape((b, h))?;
                let pooled = p.forward(&first)?.to_dtype(CDType::F32)?.tanh()?;
                let logits = c.forward(&pooled.to_dtype(self.dtype)?)?;
                (f32v(logits)?, vec![b, self.cfg.labels()])
            }
            (Task::TokenClassification, _, Some(c)) => {
                (f32v(c.forward(x)?)?, vec![b, s, self.cfg.labels()])
            }
            _ => {
                let x = x.to_dtype(CDType::F32)?.reshape((b, s, h))?;
                let m = mask.reshape((b, s, 1))?;
                let sum = x.broadcast_mul(&m)?.sum(1)?; // [b, h]
                let n = m.sum(1)?.clamp(1e-9, f64::MAX)?; // [b, 1]
                let mean = sum.broadcast_div(&n)?;
                let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
                (f32v(mean.broadcast_div(&norm)?)?, vec![b, h])
            }
        };
        Ok(HeadOutput {
            task: self.task,
            values,
            shape,
        })
    }
}
