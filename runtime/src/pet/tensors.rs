//! Reading the small files of a parameter-efficient tenant with every size bounded: JSON
//! configurations (at most [`MAX_JSON_BYTES`]) and safetensors weight files (at most
//! [`MAX_WEIGHTS_BYTES`], [`MAX_TENSORS`] tensors), each tensor decoded to f32 holding values
//! of the model dtype (rounded once, as the backbone's weights are).

use crate::dtype::DType;
use crate::error::{Error, Result};
use safetensors::SafeTensors;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The largest `adapter_config.json` / `head_config.json` read.
pub const MAX_JSON_BYTES: u64 = 1 << 20;
/// The largest adapter weights file read (a rank-1024 LoRA of every linear of BERT-large in
/// fp32 is about 1.2 GB).
pub const MAX_WEIGHTS_BYTES: u64 = 2 << 30;
/// The most tensors an adapter file may hold.
pub const MAX_TENSORS: usize = 100_000;

/// One tensor of an adapter file.
#[derive(Debug, Clone, PartialEq)]
pub struct RawTensor {
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its values in f32, rounded to the model dtype.
    pub values: Vec<f32>,
}

/// An adapter weights file, tensors by name.
#[derive(Debug, Clone)]
pub struct WeightsFile {
    /// The file.
    pub path: PathBuf,
    /// Its tensors, by name.
    pub tensors: BTreeMap<String, RawTensor>,
}

/// Reads a whole file of at most `max` bytes, naming it when it is larger.
pub fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>> {
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let len = f.metadata().map_err(|e| Error::io(path, e))?.len();
    if len > max {
        return Err(Error::pet(
            path,
            "file size",
            format!("{len} bytes, more than the {max} bytes this runtime reads"),
        ));
    }
    let mut data = Vec::with_capacity(len as usize);
    f.take(max + 1)
        .read_to_end(&mut data)
        .map_err(|e| Error::io(path, e))?;
    if data.len() as u64 > max {
        return Err(Error::pet(
            path,
            "file size",
            format!("grew past {max} bytes while being read"),
        ));
    }
    Ok(data)
}

/// Parses a JSON file of at most [`MAX_JSON_BYTES`] into `T`, naming the file, line and column.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let data = read_bounded(path, MAX_JSON_BYTES)?;
    serde_json::from_slice(&data).map_err(|e| {
        Error::pet(
            path,
            format!("line {} column {}", e.line(), e.column()),
            e.to_string(),
        )
    })
}

/// Rounds f32 values to `dtype` (the identity for fp32).
pub fn round_to(dtype: DType, values: &mut [f32]) {
    if dtype == DType::Fp32 {
        return;
    }
    let mut bytes = Vec::with_capacity(values.len() * 2);
    dtype.encode_f32(values, &mut bytes);
    values.copy_from_slice(&dtype.decode_f32(&bytes));
}

impl WeightsFile {
    /// Reads `path`, decoding every tensor to f32 rounded to `dtype`.
    pub fn read(path: &Path, dtype: DType) -> Result<Self> {
        let data = read_bounded(path, MAX_WEIGHTS_BYTES)?;
        let st = SafeTensors::deserialize(&data).map_err(|e| Error::Safetensors {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        if st.len() > MAX_TENSORS {
            return Err(Error::pet(
                path,
                "tensor count",
                format!("{} tensors, more than {MAX_TENSORS}", st.len()),
            ));
        }
        let mut tensors = BTreeMap::new();
        for (name, view) in st.tensors() {
            let from =
                DType::from_safetensors(view.dtype()).ok_or_else(|| Error::UnsupportedDtype {
                    name: name.clone(),
                    found: format!("{:?}", view.dtype()),
                })?;
            let mut values = from.decode_f32(view.data());
            round_to(dtype, &mut values);
            tensors.insert(
                name,
                RawTensor {
                    shape: view.shape().to_vec(),
                    values,
                },
            );
        }
        Ok(WeightsFile {
            path: path.to_path_buf(),
            tensors,
        })
    }

    /// Checks that tensor `name` has `shape`, naming it and both shapes where it has not.
    pub fn expect_shape(&self, name: &str, t: &RawTensor, shape: &[usize]) -> Result<()> {
        if t.shape != shape {
            return Err(Error::pet(
                &self.path,
                name,
                format!(
                    "shape {:?} does not fit the backbone: expected {shape:?}",
                    t.shape
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_oversized_and_garbage_files() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.json");
        std::fs::write(&p, vec![b' '; (MAX_JSON_BYTES + 1) as usize]).unwrap();
        let e = read_json::<serde_json::Value>(&p).unwrap_err().to_string();
        assert!(e.contains("a.json") && e.contains("1048576"), "{e}");
        std::fs::write(&p, "{\"r\": 8,\n \"x\": }").unwrap();
        let e = read_json::<serde_json::Value>(&p).unwrap_err().to_string();
        assert!(e.contains("line 2"), "{e}");
        let w = d.path().join("w.safetensors");
        std::fs::write(&w, b"\xff\xff\xff\xff\xff\xff\xff\x7fgarbage").unwrap();
        let e = WeightsFile::read(&w, DType::Fp32).unwrap_err().to_string();
        assert!(e.contains("w.safetensors"), "{e}");
    }

    #[test]
    fn rounds_to_the_model_dtype() {
        let mut v = [1.0f32 + 1e-4, 3.0];
        round_to(DType::Fp16, &mut v);
        assert_eq!(v, [1.0, 3.0]);
    }
}
