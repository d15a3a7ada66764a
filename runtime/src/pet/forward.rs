//! The mixed-tenant forward pass on the CPU (the numeric reference of the segmented GPU
//! kernels): one padded batch whose rows belong to several tenants, in segments of consecutive
//! rows. The backbone's matrix products run once over all rows; each tenant's delta is applied
//! to its segment only, and each segment gets its tenant's head.
//!
//! At a linear layer: `y = x·Wᵀ` for all rows, then per segment `+ b` (the tenant's bias where
//! it replaces the backbone's) `+ scale · round(x_seg·Aᵀ)·Bᵀ` (its LoRA pair, if any), all in
//! f32, before the linear's own rounding point. At a layer norm, the tenant's bias replaces the
//! backbone's for its rows. At the end of a sublayer with an adapter, `h` becomes the adapter's
//! output for those rows (see [`super::bottleneck`]) before `LN(h + residual)`. Rows of tenants
//! with nothing at a site compute exactly what the plain model computes.

use super::backbone::Backbone;
use super::sites::Module;
use super::tenant::{AdapterResidual, Bottleneck, LoraDelta, PetTenant};
use crate::bert::{Delta, EncoderHooks, LayerLinear, LayerNorm, Linear, LnPos, Rounding};
use crate::config::Task;
use crate::error::{Error, Result};
use crate::tokenize::Batch;
use crate::HeadOutput;
use candle_core::Tensor;

/// A run of consecutive rows of a batch that belong to one tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Index of the tenant in the slice given to [`forward_mixed`].
    pub tenant: usize,
    /// Rows (texts) of the segment.
    pub rows: usize,
}

/// A segment placed in the batch.
struct Placed<'a> {
    tenant: &'a PetTenant,
    row_start: usize,
    rows: usize,
    tok_start: usize,
    tok_len: usize,
}

struct Mixed<'a> {
    segs: Vec<Placed<'a>>,
    backbone: &'a Backbone,
    r: Rounding,
}

fn cat(parts: Vec<Tensor>) -> Result<Tensor> {
    Ok(Tensor::cat(&parts, 0)?)
}

impl Mixed<'_> {
    fn round(&self, t: Tensor, on: bool) -> Result<Tensor> {
        self.backbone.bert.round_to_dtype(t, on)
    }

    /// `scale · round(x·Aᵀ)·Bᵀ`, f32.
    fn lora(&self, d: &LoraDelta, x: &Tensor) -> Result<Tensor> {
        let t = self.round(x.matmul(&d.a.t()?)?, self.r.pet)?;
        Ok((t.matmul(&d.b.t()?)? * d.scale)?)
    }

    /// Linear `m` over all rows with each segment's bias and LoRA.
    fn linear(&self, m: Module, lin: &Linear, x: &Tensor) -> Result<Tensor> {
        let touched = self
            .segs
            .iter()
            .any(|s| s.tenant.lora.contains_key(&m) || s.tenant.biases.contains_key(&m));
        if !touched {
            return lin.forward(x);
        }
        let y = lin.product(x)?;
        let mut parts = Vec::with_capacity(self.segs.len());
        for s in &self.segs {
            let b = s.tenant.biases.get(&m).unwrap_or(&lin.b);
            let mut ys = y.narrow(0, s.tok_start, s.tok_len)?.broadcast_add(b)?;
            if let Some(d) = s.tenant.lora.get(&m) {
                ys = (ys + self.lora(d, &x.narrow(0, s.tok_start, s.tok_len)?)?)?;
            }
            parts.push(ys);
        }
        cat(parts)
    }

    /// Layer norm of one segment's rows `x` with its tenant's bias.
    fn ln_segment(&self, s: &Placed, pos: LnPos, ln: &LayerNorm, x: &Tensor) -> Result<Tensor> {
        let b = s.tenant.biases.get(&Module::Ln(pos)).unwrap_or(&ln.b);
        Ok(ln.scaled(x)?.broadcast_add(b)?)
    }

    /// The adapter's output `out` for one segment (the sublayer then ends with `LN(out + r)`).
    fn adapter(
        &self,
        s: &Placed,
        ad: &Bottleneck,
        pos: LnPos,
        ln: &LayerNorm,
        h: &Tensor,
        res: &Tensor,
    ) -> Result<Tensor> {
        let style = s.tenant.style;
        let x32 = if style.original_ln_before {
            self.ln_segment(s, pos, ln, &(h + res)?)?
        } else {
            h.clone()
        };
        let x = self.round(x32.clone(), self.r.pet)?;
        let d = self.round(ad.down.forward(&x)?, self.r.pet)?;
        let d = self.round(ad.act.apply(&d)?, self.r.pet)?;
        let up = (ad.up.forward(&d)? * ad.scaling)?;
        let skip = match style.residual {
            AdapterResidual::Sublayer => h.clone(),
            AdapterResidual::AdapterInput => x32,
            AdapterResidual::PostAdd => (h + res)?,
        };
        Ok((up + skip)?)
    }

    /// The pooler of a segment's tenant: its own, or the backbone's with its bias replaced.
    fn pooler(&self, t: &PetTenant) -> Result<Linear> {
        let base = t
            .head
            .pooler
            .as_ref()
            .or(self.backbone.pooler.as_ref())
            .ok_or_else(|| Error::pet(&t.dir, "pooler", "no pooler for a sequence classifier"))?;
        let b = t.biases.get(&Module::Pooler).unwrap_or(&base.b);
        Ok(Linear {
            w: base.w.clone(),
            b: b.clone(),
        })
    }
}

impl EncoderHooks for Mixed<'_> {
    fn linear(&self, layer: usize, which: LayerLinear, lin: &Linear, x: &Tensor) -> Result<Tensor> {
        Mixed::linear(self, Module::Linear(layer, which), lin, x)
    }

    fn layer_norm(&self, pos: LnPos, ln: &LayerNorm, x: &Tensor) -> Result<Tensor> {
        let m = Module::Ln(pos);
        if !self.segs.iter().any(|s| s.tenant.biases.contains_key(&m)) {
            return ln.forward(x);
        }
        let y = ln.scaled(x)?;
        let parts = self
            .segs
            .iter()
            .map(|s| {
                let b = s.tenant.biases.get(&m).unwrap_or(&ln.b);
                Ok(y.narrow(0, s.tok_start, s.tok_len)?.broadcast_add(b)?)
            })
            .collect::<Result<Vec<_>>>()?;
        cat(parts)
    }

    fn sublayer_end(
        &self,
        pos: LnPos,
        ln: &LayerNorm,
        h: &Tensor,
        residual: &Tensor,
    ) -> Result<Tensor> {
        if !self
            .segs
            .iter()
            .any(|s| s.tenant.adapters.contains_key(&pos))
        {
            return self.layer_norm(pos, ln, &(h + residual)?);
        }
        let mut parts = Vec::with_capacity(self.segs.len());
        for s in &self.segs {
            let hs = h.narrow(0, s.tok_start, s.tok_len)?;
            parts.push(match s.tenant.adapters.get(&pos) {
                Some(ad) => {
                    let rs = residual.narrow(0, s.tok_start, s.tok_len)?;
                    self.adapter(s, ad, pos, ln, &hs, &rs)?
                }
                None => hs,
            });
        }
        self.layer_norm(pos, ln, &(cat(parts)? + residual)?)
    }
}

/// Runs `batch` through `backbone` with its rows split into `segments` of `tenants`; one head
/// output per segment, in order. Rounding points as `r` (the recipe: [`Rounding::ALL`]).
pub fn forward_mixed(
    backbone: &Backbone,
    tenants: &[&PetTenant],
    batch: &Batch,
    segments: &[Segment],
    r: Rounding,
) -> Result<Vec<HeadOutput>> {
    let rows: usize = segments.iter().map(|s| s.rows).sum();
    if segments.is_empty() || rows != batch.batch || segments.iter().any(|s| s.rows == 0) {
        return Err(Error::Input(format!(
            "segments must cover the batch's {} rows with at least one row each (they cover {rows} in {})",
            batch.batch,
            segments.len()
        )));
    }
    let s = batch.seq;
    let mut segs = Vec::with_capacity(segments.len());
    let mut row = 0;
    for seg in segments {
        let t = *tenants.get(seg.tenant).ok_or_else(|| {
            Error::Input(format!(
                "segment names tenant {} of {}",
                seg.tenant,
                tenants.len()
            ))
        })?;
        if !t.fits(backbone.config()) {
            return Err(Error::Incompatible {
                tenant: t.name.clone(),
                reason: format!(
                    "it was read against another backbone than {}",
                    backbone.dir.display()
                ),
            });
        }
        segs.push(Placed {
            tenant: t,
            row_start: row,
            rows: seg.rows,
            tok_start: row * s,
            tok_len: seg.rows * s,
        });
        row += seg.rows;
    }
    let mixed = Mixed { segs, backbone, r };
    let bert = &backbone.bert;
    let (x, mask) = bert.encode(batch, r, &mixed)?;
    let mut out = Vec::with_capacity(mixed.segs.len());
    for p in &mixed.segs {
        let t = p.tenant;
        let xs = x.narrow(0, p.tok_start, p.tok_len)?;
        let ms = mask.narrow(0, p.row_start, p.rows)?;
        let pooler = if t.head.task == Task::SequenceClassification {
            Some(mixed.pooler(t)?)
        } else {
            None
        };
        let lora = t.lora.get(&Module::Pooler);
        let delta = |first: &Tensor, y: Tensor| -> Result<Tensor> {
            match lora {
                Some(d) => Ok((y + mixed.lora(d, first)?)?),
                None => Ok(y),
            }
        };
        let hook: Option<Delta> = lora.is_some().then_some(&delta as Delta);
        out.push(bert.head_with(
            t.head.task,
            pooler.as_ref().map(|p| (p, hook)),
            t.head.classifier.as_ref(),
            t.head.labels,
            &xs,
            &ms,
            (p.rows, s),
            r,
        )?);
    }
    Ok(out)
}
