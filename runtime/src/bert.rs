//! BERT / RoBERTa encoder and task heads on candle (CPU): the numeric reference of the runtime.
//!
//! One precision recipe for every dtype, the one the GPU backend follows: weights are stored
//! in the model dtype; every matrix product multiplies operands that hold model-dtype values
//! and accumulates in f32; everything else (biases, residual stream, layer norms, softmax,
//! activations, heads) computes in f32. Values are rounded to the model dtype exactly where the
//! GPU stores them in it, which is where they become matrix-product operands:
//!
//! - layer-norm outputs (the f32 copy stays the residual stream),
//! - Q, K and V after their bias (one rounding of the f32 sum, as cuBLASLt's bias epilogue),
//! - attention probabilities after normalisation, and the attention context,
//! - FFN-up and pooler outputs after their bias, and again after the activation.
//!
//! For an fp32 model every rounding is the identity. [`Rounding`] names these points so that
//! the error each one adds against an all-f32 evaluation can be measured.
//!
//! The encoder loop calls an `EncoderHooks` object at every linear layer, layer norm and
//! sublayer end; the plain model uses the defaults (exactly the computation above), and
//! parameter-efficient tenants (`crate::pet`) override them to apply their deltas to their
//! segment of rows while the backbone's products still run once for the whole batch.

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

/// Where a 16-bit model rounds activations to its dtype (see the module docs). All on is the
/// model's recipe; all off evaluates the same (rounded) weights entirely in f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rounding {
    /// Layer-norm outputs, as operands of the next products (and the embedding / head input).
    pub ln: bool,
    /// Q, K, V after their bias.
    pub qkv: bool,
    /// Attention probabilities.
    pub probs: bool,
    /// Attention context.
    pub ctx: bool,
    /// FFN-up and pooler outputs after the bias, before the activation.
    pub pre_act: bool,
    /// Activation outputs (GELU, tanh of the pooler).
    pub act: bool,
    /// Parameter-efficient tenants' product operands (`crate::pet`): LoRA shrink outputs,
    /// adapter inputs and bottleneck activations.
    pub pet: bool,
}

impl Rounding {
    /// Every rounding point on: the model's recipe.
    pub const ALL: Rounding = Rounding {
        ln: true,
        qkv: true,
        probs: true,
        ctx: true,
        pre_act: true,
        act: true,
        pet: true,
    };
    /// No rounding: the model's weights evaluated in f32.
    pub const NONE: Rounding = Rounding {
        ln: false,
        qkv: false,
        probs: false,
        ctx: false,
        pre_act: false,
        act: false,
        pet: false,
    };
}

/// A dense layer: weight `[out, in]` and bias `[out]`.
#[derive(Debug)]
pub(crate) struct Linear {
    /// f32 (holding model-dtype values).
    pub(crate) w: Tensor,
    /// f32.
    pub(crate) b: Tensor,
}

impl Linear {
    /// `x [n, in] → [n, out]` in f32.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_with_bias(x, &self.b)
    }

    /// `x · Wᵀ` without the bias, f32.
    pub(crate) fn product(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.matmul(&self.w.t()?)?)
    }

    /// `x · Wᵀ + b` for another bias `b` (`[out]`, or `[n, out]` per row).
    pub(crate) fn forward_with_bias(&self, x: &Tensor, b: &Tensor) -> Result<Tensor> {
        Ok(self.product(x)?.broadcast_add(b)?)
    }
}

/// A layer norm over the last dimension: weight and bias `[h]`, f32.
#[derive(Debug)]
pub(crate) struct LayerNorm {
    pub(crate) w: Tensor,
    pub(crate) b: Tensor,
    pub(crate) eps: f64,
}

impl LayerNorm {
    /// Normalises the last dimension of an f32 tensor.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.scaled(x)?.broadcast_add(&self.b)?)
    }

    /// The normalised input times the weight, before the bias is added.
    pub(crate) fn scaled(&self, x: &Tensor) -> Result<Tensor> {
        let mean = x.mean_keepdim(D::Minus1)?;
        let xc = x.broadcast_sub(&mean)?;
        let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
        let y = xc.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        Ok(y.broadcast_mul(&self.w)?)
    }
}

/// A linear layer of an encoder layer.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum LayerLinear {
    /// `attention.self.query`.
    Query,
    /// `attention.self.key`.
    Key,
    /// `attention.self.value`.
    Value,
    /// `attention.output.dense`.
    AttnOut,
    /// `intermediate.dense` (FFN up).
    Up,
    /// `output.dense` (FFN down).
    Down,
}

impl LayerLinear {
    /// All six, in the order of a layer.
    pub const ALL: [LayerLinear; 6] = [
        LayerLinear::Query,
        LayerLinear::Key,
        LayerLinear::Value,
        LayerLinear::AttnOut,
        LayerLinear::Up,
        LayerLinear::Down,
    ];
}

/// The layer norms of the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LnPos {
    /// `embeddings.LayerNorm`.
    Embeddings,
    /// `encoder.layer.N.attention.output.LayerNorm` (ends the attention sublayer).
    Attention(usize),
    /// `encoder.layer.N.output.LayerNorm` (ends the feed-forward sublayer).
    Output(usize),
}

/// Points in the encoder loop where a caller may change the computation (see the module docs).
/// The defaults are the plain model.
pub(crate) trait EncoderHooks {
    /// The f32 output of linear `which` of layer `layer` for the operand `x` (model-dtype
    /// values), bias included, before any rounding.
    fn linear(
        &self,
        _layer: usize,
        _which: LayerLinear,
        lin: &Linear,
        x: &Tensor,
    ) -> Result<Tensor> {
        lin.forward(x)
    }

    /// Layer norm `pos` of the f32 tensor `x`.
    fn layer_norm(&self, _pos: LnPos, ln: &LayerNorm, x: &Tensor) -> Result<Tensor> {
        ln.forward(x)
    }

    /// The end of a sublayer: `h` is the output of its last linear (attention output or FFN
    /// down, f32, bias included), `residual` its input stream; returns the layer norm `pos`
    /// (an [`LnPos::Attention`] or [`LnPos::Output`]) of their sum.
    fn sublayer_end(
        &self,
        pos: LnPos,
        ln: &LayerNorm,
        h: &Tensor,
        residual: &Tensor,
    ) -> Result<Tensor> {
        self.layer_norm(pos, ln, &(h + residual)?)
    }
}

/// An f32 delta hook on a linear's output: `(input, output) → output + delta`.
pub(crate) type Delta<'a> = &'a dyn Fn(&Tensor, Tensor) -> Result<Tensor>;

/// The plain model: every hook at its default.
pub(crate) struct Plain;

impl EncoderHooks for Plain {}

#[derive(Debug)]
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
#[derive(Debug)]
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
            w: get32(&format!("{p}.weight"))?,
            b: get32(&format!("{p}.bias"))?,
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
        word: get32("embeddings.word_embeddings.weight")?,
        pos: get32("embeddings.position_embeddings.weight")?,
        types: get32("embeddings.token_type_embeddings.weight")?,
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
        self.forward_rounding(batch, Rounding::ALL)
    }

    /// Rounds an f32 tensor to the model dtype (and back) where `on`.
    fn round(&self, t: Tensor, on: bool) -> Result<Tensor> {
        if on && self.dtype != CDType::F32 {
            Ok(t.to_dtype(self.dtype)?.to_dtype(CDType::F32)?)
        } else {
            Ok(t)
        }
    }

    /// [`Bert::forward`] with only the rounding points of `r` rounding to the model dtype
    /// (for measuring where a 16-bit model's error comes from).
    pub fn forward_rounding(&self, batch: &Batch, r: Rounding) -> Result<HeadOutput> {
        let (x, mask) = self.encode(batch, r, &Plain)?;
        self.head(&x, &mask, batch.batch, batch.seq, r)
    }

    /// Rounds an f32 tensor to the model dtype (and back) where `on` (crate-visible).
    pub(crate) fn round_to_dtype(&self, t: Tensor, on: bool) -> Result<Tensor> {
        self.round(t, on)
    }

    /// The encoder over a batch with `hooks`: the last hidden states rounded to the model dtype
    /// (`[batch × seq, hidden]`, f32 holding model-dtype values) and the mask as f32 `[batch, seq]`.
    pub(crate) fn encode(
        &self,
        batch: &Batch,
        r: Rounding,
        hooks: &dyn EncoderHooks,
    ) -> Result<(Tensor, Tensor)> {
        batch.check(&self.cfg)?;
        let (b, s, h) = (batch.batch, batch.seq, self.cfg.hidden_size);
        let (nh, dh) = (self.cfg.num_attention_heads, self.cfg.head_dim());
        let round = |t, on| self.round(t, on);
        let dev = Device::Cpu;
        let ids = Tensor::from_slice(&batch.ids, b * s, &dev)?;
        let tt = Tensor::from_slice(&batch.type_ids, b * s, &dev)?;
        let off = self.cfg.position_offset() as u32;
        let pos: Vec<u32> = (0..b * s).map(|i| off + (i % s) as u32).collect();
        let pos = Tensor::from_slice(&pos, b * s, &dev)?;
        let x = (self.word.index_select(&ids, 0)? + self.pos.index_select(&pos, 0)?)?;
        let x = (x + self.types.index_select(&tt, 0)?)?;
        // The residual stream (f32) and its rounded copy (the next products' operand).
        let mut x32 = hooks.layer_norm(LnPos::Embeddings, &self.ln_emb, &x)?; // [b*s, h]
        let mut x = round(x32.clone(), r.ln)?;
        let mask: Vec<f32> = batch.mask.iter().map(|&m| m as f32).collect();
        let mask = Tensor::from_slice(&mask, (b, s), &dev)?;
        let bias = ((mask.clone() - 1.0)? * 1e30)?.reshape((b, 1, 1, s))?;
        let scale = 1.0 / (dh as f64).sqrt();
        let heads = |t: Tensor| -> Result<Tensor> {
            Ok(t.reshape((b, s, nh, dh))?.transpose(1, 2)?.contiguous()?)
        };
        for (n, l) in self.layers.iter().enumerate() {
            let lin = |which, lin: &Linear, x: &Tensor| hooks.linear(n, which, lin, x);
            let q = heads(round(lin(LayerLinear::Query, &l.q, &x)?, r.qkv)?)?;
            let k = heads(round(lin(LayerLinear::Key, &l.k, &x)?, r.qkv)?)?;
            let v = heads(round(lin(LayerLinear::Value, &l.v, &x)?, r.qkv)?)?;
            let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(&bias)?;
            let max = scores.max_keepdim(D::Minus1)?;
            let e = scores.broadcast_sub(&max)?.exp()?;
            let p = round(e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?, r.probs)?;
            let ctx = round(p.matmul(&v)?, r.ctx)?; // [b, nh, s, dh]
            let ctx = ctx.transpose(1, 2)?.contiguous()?.reshape((b * s, h))?;
            let o = lin(LayerLinear::AttnOut, &l.o, &ctx)?;
            let a32 = hooks.sublayer_end(LnPos::Attention(n), &l.ln1, &o, &x32)?;
            let a = round(a32.clone(), r.ln)?;
            let u = round(lin(LayerLinear::Up, &l.up, &a)?, r.pre_act)?;
            let u = self.activate(u)?;
            let u = round(u, r.act)?;
            let d = lin(LayerLinear::Down, &l.down, &u)?;
            x32 = hooks.sublayer_end(LnPos::Output(n), &l.ln2, &d, &a32)?;
            x = round(x32.clone(), r.ln)?;
        }
        Ok((x, mask))
    }

    /// The feed-forward activation of this model.
    fn activate(&self, u: Tensor) -> Result<Tensor> {
        Ok(match self.act {
            Activation::GeluErf => u.gelu_erf()?,
            Activation::GeluTanh => u.gelu()?,
            Activation::Relu => u.relu()?,
            Activation::Tanh => u.tanh()?,
            Activation::Identity => u,
        })
    }

    fn head(
        &self,
        x: &Tensor,
        mask: &Tensor,
        b: usize,
        s: usize,
        r: Rounding,
    ) -> Result<HeadOutput> {
        let pooler = self.pooler.as_ref().map(|p| (p, None));
        self.head_with(
            self.task,
            pooler,
            self.classifier.as_ref(),
            self.cfg.labels(),
            x,
            mask,
            (b, s),
            r,
        )
    }

    /// A head over the rounded last hidden states `x` (`[b × s, hidden]`) of `rows = (b, s)`:
    /// the pooler (with an optional f32 delta hook on its pre-activation output) and the
    /// classifier given, for a task with `labels` labels.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn head_with(
        &self,
        task: Task,
        pooler: Option<(&Linear, Option<Delta>)>,
        classifier: Option<&Linear>,
        labels: usize,
        x: &Tensor,
        mask: &Tensor,
        rows: (usize, usize),
        r: Rounding,
    ) -> Result<HeadOutput> {
        let (b, s) = rows;
        let h = self.cfg.hidden_size;
        let round = |t, on| self.round(t, on);
        let f32v = |t: Tensor| -> Result<Vec<f32>> { Ok(t.flatten_all()?.to_vec1::<f32>()?) };
        let (values, shape) = match (task, pooler, classifier) {
            (Task::SequenceClassification, Some((p, delta)), Some(c)) => {
                let first = x.reshape((b, s, h))?.narrow(1, 0, 1)?.reshape((b, h))?;
                let y = p.forward(&first)?;
                let y = match delta {
                    Some(d) => d(&first, y)?,
                    None => y,
                };
                let pooled = round(y, r.pre_act)?.tanh()?;
                let logits = c.forward(&round(pooled, r.act)?)?;
                (f32v(logits)?, vec![b, labels])
            }
            (Task::TokenClassification, _, Some(c)) => (f32v(c.forward(x)?)?, vec![b, s, labels]),
            (Task::Embedding, _, _) => {
                let x = x.reshape((b, s, h))?;
                let m = mask.reshape((b, s, 1))?;
                let sum = x.broadcast_mul(&m)?.sum(1)?; // [b, h]
                let n = m.sum(1)?.clamp(1e-9, f64::MAX)?; // [b, 1]
                let mean = sum.broadcast_div(&n)?;
                let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
                (f32v(mean.broadcast_div(&norm)?)?, vec![b, h])
            }
            (task, _, _) => {
                return Err(Error::Input(format!(
                    "the {task:?} head is missing its pooler or classifier"
                )))
            }
        };
        Ok(HeadOutput {
            task,
            values,
            shape,
        })
    }
}
