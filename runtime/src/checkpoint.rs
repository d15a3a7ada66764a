//! Reading `model.safetensors` into a packed host buffer of one dtype, checking every tensor's
//! presence, dtype and shape against the [`Layout`].
//!
//! A checkpoint is checked before anything is allocated for it: every tensor the layout needs
//! must be present with its shape, and every tensor present must be read (tensors of other heads
//! and `position_ids` buffers excepted, see [`crate::layout::ignorable`]) — a configuration with
//! fewer layers than its checkpoint is refused, naming the unused tensors. Weights are checked
//! as they are loaded: a NaN or infinite value (in the dtype loaded) is refused naming the
//! tensor and element, since it would make every output NaN.

use crate::config::Config;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::layout::{self, Entry, Layout};
use safetensors::SafeTensors;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

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
    /// Refuses a path that is not a regular file (a device such as `/dev/zero` would never end).
    pub fn from_file(path: &Path, cfg: &Config, dtype: DType) -> Result<Self> {
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        if !meta.is_file() {
            return Err(Error::Safetensors {
                path: path.to_path_buf(),
                message: "not a regular file".into(),
            });
        }
        let data = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(&data, cfg, dtype).map_err(|e| with_path(e, path))
    }

    /// Like [`PackedWeights::from_file`], from the file's bytes.
    pub fn from_bytes(data: &[u8], cfg: &Config, dtype: DType) -> Result<Self> {
        let st = SafeTensors::deserialize(data).map_err(|e| Error::Safetensors {
            path: MEMORY.into(),
            message: e.to_string(),
        })?;
        let layout = Layout::for_config(cfg)?;
        // Check every tensor first, so nothing is allocated for a checkpoint that is refused.
        let mut views = Vec::with_capacity(layout.entries().len());
        let mut read = BTreeSet::new();
        for e in layout.entries() {
            let (name, view) = e
                .candidates
                .iter()
                .find_map(|n| st.tensor(n).ok().map(|v| (n.as_str(), v)))
                .ok_or_else(|| Error::MissingTensor {
                    name: e.name.clone(),
                    tried: e.candidates.join(", "),
                    expected: e.shape.clone(),
                })?;
            let from =
                DType::from_safetensors(view.dtype()).ok_or_else(|| Error::UnsupportedDtype {
                    name: name.to_string(),
                    found: format!("{:?}", view.dtype()),
                })?;
            if view.shape() != e.shape.as_slice() {
                return Err(Error::WrongShape {
                    name: name.to_string(),
                    expected: e.shape.clone(),
                    found: view.shape().to_vec(),
                });
            }
            read.insert(name);
            views.push((e, name, from, view));
        }
        check_unused(Path::new(MEMORY), cfg, st.names(), &read)?;
        let total = layout.total_elements() * dtype.size_bytes();
        let mut bytes = Vec::new();
        bytes.try_reserve_exact(total).map_err(|_| {
            Error::Input(format!(
                "cannot allocate {total} bytes for the packed weights"
            ))
        })?;
        for (e, name, from, view) in views {
            let pad = e.offset * dtype.size_bytes() - bytes.len();
            bytes.resize(bytes.len() + pad, 0);
            let start = bytes.len();
            dtype.convert_from(from, view.data(), &mut bytes);
            check_finite(Path::new(MEMORY), name, dtype, &bytes[start..], 0)?;
        }
        bytes.resize(total, 0);
        Ok(PackedWeights {
            layout,
            dtype,
            bytes,
        })
    }
}

/// The path errors of [`PackedWeights::from_bytes`] carry until the caller knows the file.
const MEMORY: &str = "<memory>";

/// Replaces the placeholder path of an error from [`PackedWeights::from_bytes`] with `path`.
fn with_path(e: Error, path: &Path) -> Error {
    let path = path.to_path_buf();
    match e {
        Error::Safetensors { message, .. } => Error::Safetensors { path, message },
        Error::UnusedTensors {
            count,
            names,
            config,
            ..
        } => Error::UnusedTensors {
            path,
            count,
            names,
            config,
        },
        Error::NonFinite {
            name, dtype, index, ..
        } => Error::NonFinite {
            path,
            name,
            dtype,
            index,
        },
        other => other,
    }
}

/// Refuses the tensors of `all` that were not `read` (see [`layout::unused`]), naming the first
/// few and the configuration's sizes.
pub(crate) fn check_unused<'a>(
    path: &Path,
    cfg: &Config,
    all: impl IntoIterator<Item = &'a str>,
    read: &BTreeSet<&str>,
) -> Result<()> {
    let unused = layout::unused(all, read);
    if unused.is_empty() {
        return Ok(());
    }
    const SHOWN: usize = 8;
    let mut names = unused[..unused.len().min(SHOWN)].join(", ");
    if unused.len() > SHOWN {
        names += ", …";
    }
    Err(Error::UnusedTensors {
        path: PathBuf::from(path),
        count: unused.len(),
        names,
        config: format!(
            "{}, num_hidden_layers {}, hidden_size {}, head {:?} with {} labels",
            cfg.model_type,
            cfg.num_hidden_layers,
            cfg.hidden_size,
            cfg.task(),
            cfg.labels()
        ),
    })
}

/// Refuses a NaN or infinite value among `bytes` (values of `dtype`, the first being element
/// `first` of tensor `name`).
pub(crate) fn check_finite(
    path: &Path,
    name: &str,
    dtype: DType,
    bytes: &[u8],
    first: usize,
) -> Result<()> {
    // A value is not finite when its exponent bits are all ones. Blocks are tested without
    // branching (so the test vectorises) and searched only when one holds such a value.
    let half = |c: &[u8]| u32::from(u16::from_le_bytes([c[0], c[1]]));
    let bad = match dtype {
        DType::Fp32 => first_all_ones(bytes, 4, 0x7f80_0000, |c| {
            u32::from_le_bytes([c[0], c[1], c[2], c[3]])
        }),
        DType::Fp16 => first_all_ones(bytes, 2, 0x7c00, half),
        DType::Bf16 => first_all_ones(bytes, 2, 0x7f80, half),
    };
    match bad {
        None => Ok(()),
        Some(i) => Err(Error::NonFinite {
            path: PathBuf::from(path),
            name: name.to_string(),
            dtype: dtype.to_string(),
            index: first + i,
        }),
    }
}

/// The index of the first element of `size` bytes (read by `word`) whose bits under `mask` are
/// all set.
fn first_all_ones(
    bytes: &[u8],
    size: usize,
    mask: u32,
    word: impl Fn(&[u8]) -> u32 + Copy,
) -> Option<usize> {
    const BLOCK: usize = 4096;
    let hit = |c: &[u8]| word(c) & mask == mask;
    for (k, block) in bytes.chunks(BLOCK).enumerate() {
        if block.chunks_exact(size).fold(false, |acc, c| acc | hit(c)) {
            let i = block.chunks_exact(size).position(hit)?;
            return Some(k * BLOCK / size + i);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_values_are_found_at_their_index() {
        for dtype in [DType::Fp32, DType::Fp16, DType::Bf16] {
            let mut values = vec![1.5f32; 5000];
            let mut bytes = Vec::new();
            dtype.encode_f32(&values, &mut bytes);
            assert!(check_finite(Path::new("f"), "t", dtype, &bytes, 0).is_ok());
            for (at, bad) in [(0, f32::NAN), (2047, f32::INFINITY), (4999, -f32::INFINITY)] {
                values[at] = bad;
                bytes.clear();
                dtype.encode_f32(&values, &mut bytes);
                match check_finite(Path::new("f"), "t", dtype, &bytes, 7) {
                    Err(Error::NonFinite { index, .. }) => assert_eq!(index, at + 7, "{dtype}"),
                    other => panic!("{dtype}: {other:?}"),
                }
                values[at] = 1.5;
            }
        }
    }
}
