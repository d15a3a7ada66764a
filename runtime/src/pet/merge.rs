//! A LoRA or BitFit tenant merged into its backbone as an ordinary model: `W + scale·B·A` for
//! every LoRA pair, the tenant's biases in place of the backbone's, its head. The merged
//! model runs through the plain CPU model ([`crate::bert`]) and is what a tenant's segment of a
//! mixed batch must equal. Bottleneck adapters add modules and cannot be merged.

use super::backbone::Backbone;
use super::sites::{split_name, Module};
use super::tenant::PetTenant;
use crate::checkpoint::PackedWeights;
use crate::config::Config;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::layout::Layout;

/// The tenant as one model: its configuration and its weights in fp32.
pub fn merged(backbone: &Backbone, t: &PetTenant) -> Result<(Config, PackedWeights)> {
    if !t.adapters.is_empty() {
        return Err(Error::Incompatible {
            tenant: t.name.clone(),
            reason: "bottleneck adapters add layers and cannot be merged into the backbone".into(),
        });
    }
    let cfg = t.config(backbone)?;
    let kind = cfg.kind()?;
    let layout = Layout::for_config(&cfg)?;
    let mut vals = vec![0f32; layout.total_elements()];
    let pooler = match &t.head.pooler {
        Some(p) => Some((p.w.flatten_all()?.to_vec1::<f32>()?, p.b.to_vec1::<f32>()?)),
        None => backbone.pooler_values()?,
    };
    for e in layout.entries() {
        let module = split_name(kind, &e.name);
        let mut v: Vec<f32> = match module {
            Some((Module::Pooler, s)) => {
                let (w, b) = pooler.as_ref().ok_or_else(|| Error::MissingTensor {
                    name: e.name.clone(),
                    tried: "the tenant and its backbone".into(),
                    expected: e.shape.clone(),
                })?;
                if s == "weight" {
                    w.clone()
                } else {
                    b.clone()
                }
            }
            Some((Module::Classifier, s)) => {
                let c = t
                    .head
                    .classifier
                    .as_ref()
                    .ok_or_else(|| Error::MissingTensor {
                        name: e.name.clone(),
                        tried: "the tenant".into(),
                        expected: e.shape.clone(),
                    })?;
                if s == "weight" {
                    c.w.flatten_all()?.to_vec1::<f32>()?
                } else {
                    c.b.to_vec1::<f32>()?
                }
            }
            _ => backbone
                .weights
                .tensor_f32(&e.name)
                .ok_or_else(|| Error::MissingTensor {
                    name: e.name.clone(),
                    tried: "the backbone".into(),
                    expected: e.shape.clone(),
                })?,
        };
        if let Some((m, suffix)) = module {
            match suffix {
                "weight" => {
                    if let Some(d) = t.lora.get(&m) {
                        let delta = (d.b.matmul(&d.a)? * d.scale)?
                            .flatten_all()?
                            .to_vec1::<f32>()?;
                        v.iter_mut().zip(&delta).for_each(|(w, d)| *w += d);
                    }
                }
                "bias" => {
                    if let Some(b) = t.biases.get(&m) {
                        v = b.to_vec1::<f32>()?;
                    }
                }
                _ => {}
            }
        }
        if v.len() != e.elements() {
            return Err(Error::WrongShape {
                name: e.name.clone(),
                expected: e.shape.clone(),
                found: vec![v.len()],
            });
        }
        vals[e.offset..e.offset + v.len()].copy_from_slice(&v);
    }
    let mut bytes = Vec::with_capacity(vals.len() * 4);
    DType::Fp32.encode_f32(&vals, &mut bytes);
    Ok((
        cfg,
        PackedWeights {
            layout,
            dtype: DType::Fp32,
            bytes,
        },
    ))
}
