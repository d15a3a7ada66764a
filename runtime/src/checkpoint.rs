//! Reading `model.safetensors` into a packed host buffer of one dtype, checking every tensor's
//! presence, dtype and shape against the [`Layout`].

use crate::config::Config;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::layout::{Entry, Layout};
use safetensors::SafeTensors;
use std::path::Path;

/// A model's weights in one contiguous buffer laid out by [`Layout`], in one dtype.
#[derive(Debug, Clone)]
pub struct PackedWeights {
    /// Where each tensor lives.
    pub layout: Layout,
    /// The dtype of `bytes`.
    pub dtype: DType,
    /// The packed little-endian data (`layout.total_elements() * dtype.size_bytes()` bytes).
    pub bytes: Vec<u8>,
}

impl PackedWeights {
    /// The bytes of one tensor.
    pub fn tensor_bytes(&self, e: &Entry) -> &[u8] {
        let s = self.dtype.size_bytes();
        &self.bytes[e.offset * s..(e.offset + e.elements()) * s]
    }

    /// The values of the tensor `name`, decoded to f32 (for tests and inspection).
    pub fn tensor_f32(&self, name: &str) -> Option<Vec<f32>> {
        let e = self.layout.get(name)?;
        Some(self.dtype.decode_f32(self.tensor_bytes(e)))
    }

    /// The same values in another dtype (same layout), e.g. half weights widened to fp32 so
    /// that the CPU can compute in fp32 on exactly the weights a half-precision model holds.
    pub fn to_dtype(&self, dtype: DType) -> PackedWeights {
        let mut bytes = Vec::with_capacity(self.layout.total_elements() * dtype.size_bytes());
        dtype.convert_from(self.dtype, &self.bytes, &mut bytes);
        PackedWeights {
            layout: self.layout.clone(),
            dtype,
            bytes,
        }
    }

    /// Reads `path` (a safetensors file) for `cfg`, converting every tensor to `dtype`.
    pub fn from_file(path: &Path, cfg: &Config, dtype: DType) -> Result<Self> {
        let data = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(&data, cfg, dtype).map_err(|e| match e {
            Error::Safetensors { message, .. } => Error::Safetensors {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        })
    }

    /// Like [`PackedWeights::from_file`], from the file's bytes.
    pub fn from_bytes(data: &[u8], cfg: &Config, dtype: DType) -> Result<Self> {
        let st = SafeTensors::deserialize(data).map_err(|e| Error::Safetensors {
            path: "<memory>".into(),
            message: e.to_string(),
        })?;
        let layout = Layout::for_config(cfg)?;
        let mut bytes = Vec::with_capacity(layout.total_elements() * dtype.size_bytes());
        for e in layout.entries() {
            let pad = e.offset * dtype.size_bytes() - bytes.len();
            bytes.resize(bytes.len() + pad, 0);
            let (name, view) = e
                .candidates
                .iter()
                .find_map(|n| st.tensor(n).ok().map(|v| (n.clone(), v)))
                .ok_or_else(|| Error::MissingTensor {
                    name: e.name.clone(),
                    tried: e.candidates.join(", "),
                    expected: e.shape.clone(),
                })?;
            let from =
                DType::from_safetensors(view.dtype()).ok_or_else(|| Error::UnsupportedDtype {
                    name: name.clone(),
                    found: format!("{:?}", view.dtype()),
                })?;
            if view.shape() != e.shape.as_slice() {
                return Err(Error::WrongShape {
                    name,
                    expected: e.shape.clone(),
                    found: view.shape().to_vec(),
                });
            }
            dtype.convert_from(from, view.data(), &mut bytes);
        }
        bytes.resize(layout.total_elements() * dtype.size_bytes(), 0);
        Ok(PackedWeights {
            layout,
            dtype,
            bytes,
        })
    }
}
