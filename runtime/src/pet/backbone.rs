//! The shared backbone of parameter-efficient tenants: a Hugging Face model folder
//! (`config.json`, `model.safetensors`, `tokenizer.json`) read once; its encoder in the packed
//! layout and as the candle model, and its pooler where it has one (a BERT checkpoint saved as
//! `BertModel` or any BERT task model; RoBERTa's classification head has its own dense layer,
//! so a RoBERTa backbone's pooler is not used).

use crate::bert::{self, Bert, Linear};
use crate::checkpoint::PackedWeights;
use crate::config::{Config, ModelType};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::tokenize::TextEncoder;
use candle_core::{Device, Tensor};
use safetensors::SafeTensors;
use std::path::{Path, PathBuf};

/// A backbone loaded for the CPU reference.
#[derive(Debug)]
pub struct Backbone {
    /// The folder it was read from.
    pub dir: PathBuf,
    /// The dtype it computes in.
    pub dtype: DType,
    /// The encoder's weights, packed (the layout of `config()`).
    pub weights: PackedWeights,
    cfg: Config,
    pub(crate) bert: Bert,
    pub(crate) pooler: Option<Linear>,
}

/// `cfg` as a bare encoder (`…Model`, no labels).
pub fn encoder_config(cfg: &Config) -> Result<Config> {
    let mut c = cfg.clone();
    c.architectures = vec![match c.kind()? {
        ModelType::Bert => "BertModel".into(),
        ModelType::Roberta => "RobertaModel".into(),
    }];
    c.id2label = None;
    c.num_labels = None;
    Ok(c)
}

impl Backbone {
    /// Reads `dir/config.json` and `dir/model.safetensors` in `dtype`.
    pub fn load(dir: &Path, dtype: DType) -> Result<Self> {
        let cfg = encoder_config(&Config::from_file(&dir.join("config.json"))?)?;
        let path = dir.join("model.safetensors");
        let data = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let named = |e: Error| match e {
            Error::Safetensors { message, .. } => Error::Safetensors {
                path: path.clone(),
                message,
            },
            other => other,
        };
        let weights = PackedWeights::from_bytes(&data, &cfg, dtype).map_err(named)?;
        let bert = bert::load(&weights, &cfg)?;
        let pooler = if cfg.kind()? == ModelType::Bert {
            read_pooler(&data, &cfg, dtype).map_err(named)?
        } else {
            None
        };
        Ok(Backbone {
            dir: dir.to_path_buf(),
            dtype,
            weights,
            cfg,
            bert,
            pooler,
        })
    }

    /// The encoder's configuration (a bare encoder: `BertModel` / `RobertaModel`).
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Whether the backbone has a pooler that sequence classifiers may use.
    pub fn has_pooler(&self) -> bool {
        self.pooler.is_some()
    }

    /// The pooler's weight and bias as f32 values (model-dtype values), if any.
    pub fn pooler_values(&self) -> Result<Option<(Vec<f32>, Vec<f32>)>> {
        match &self.pooler {
            None => Ok(None),
            Some(p) => Ok(Some((
                p.w.flatten_all()?.to_vec1::<f32>()?,
                p.b.to_vec1::<f32>()?,
            ))),
        }
    }

    /// The tokenizer of the backbone (`tokenizer.json`), shared by its tenants.
    pub fn text_encoder(&self) -> Result<TextEncoder> {
        TextEncoder::from_file(&self.dir.join("tokenizer.json"), &self.cfg)
    }
}

/// The pooler of a BERT checkpoint (`pooler.dense.*` with any model prefix), if present.
fn read_pooler(data: &[u8], cfg: &Config, dtype: DType) -> Result<Option<Linear>> {
    let st = SafeTensors::deserialize(data).map_err(|e| Error::Safetensors {
        path: "<memory>".into(),
        message: e.to_string(),
    })?;
    let h = cfg.hidden_size;
    let find = |suffix: &str, shape: &[usize]| -> Result<Option<Tensor>> {
        for p in cfg.kind()?.prefixes() {
            let name = format!("{p}pooler.dense.{suffix}");
            if let Ok(v) = st.tensor(&name) {
                let from =
                    DType::from_safetensors(v.dtype()).ok_or_else(|| Error::UnsupportedDtype {
                        name: name.clone(),
                        found: format!("{:?}", v.dtype()),
                    })?;
                if v.shape() != shape {
                    return Err(Error::WrongShape {
                        name,
                        expected: shape.to_vec(),
                        found: v.shape().to_vec(),
                    });
                }
                let mut bytes = Vec::new();
                dtype.convert_from(from, v.data(), &mut bytes);
                let vals = dtype.decode_f32(&bytes);
                return Ok(Some(Tensor::from_vec(vals, shape, &Device::Cpu)?));
            }
        }
        Ok(None)
    };
    match (find("weight", &[h, h])?, find("bias", &[h])?) {
        (Some(w), Some(b)) => Ok(Some(Linear { w, b })),
        (None, None) => Ok(None),
        _ => Err(Error::MissingTensor {
            name: "pooler.dense".into(),
            tried: "pooler.dense.weight and pooler.dense.bias (both or neither)".into(),
            expected: vec![h, h],
        }),
    }
}
