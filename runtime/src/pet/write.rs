//! Writing safetensors files and pretty JSON for the PET zoo: tensors given as f32 values are
//! stored in one dtype, sorted by name, data in header order, header padded to 8 bytes.

use crate::dtype::DType;
use crate::error::{Error, Result};
use serde::Serialize;
use std::io::Write;
use std::path::Path;

/// A tensor to write: name, shape, values (row-major).
pub type NamedTensor = (String, Vec<usize>, Vec<f32>);

/// Writes `tensors` to `path` in `dtype`; returns the file's size in bytes.
pub fn safetensors(path: &Path, dtype: DType, tensors: &mut [NamedTensor]) -> Result<u64> {
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let mut header = serde_json::Map::new();
    let mut meta = serde_json::Map::new();
    meta.insert("format".into(), "pt".into());
    header.insert("__metadata__".into(), meta.into());
    let mut off = 0usize;
    for (name, shape, vals) in tensors.iter() {
        let n: usize = shape.iter().product();
        if n != vals.len() {
            return Err(Error::Zoo(format!(
                "{}: tensor {name} has {} values for shape {shape:?}",
                path.display(),
                vals.len()
            )));
        }
        let bytes = n * dtype.size_bytes();
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": dtype.safetensors_name(), "shape": shape,
                               "data_offsets": [off, off + bytes]}),
        );
        off += bytes;
    }
    let mut h = serde_json::to_vec(&header).map_err(|e| Error::Zoo(e.to_string()))?;
    while h.len() % 8 != 0 {
        h.push(b' ');
    }
    let mut buf = Vec::with_capacity(8 + h.len() + off);
    buf.extend_from_slice(&(h.len() as u64).to_le_bytes());
    buf.extend_from_slice(&h);
    for (_, _, vals) in tensors.iter() {
        dtype.encode_f32(vals, &mut buf);
    }
    let mut f = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    f.write_all(&buf).map_err(|e| Error::io(path, e))?;
    Ok(buf.len() as u64)
}

/// Writes `v` as pretty JSON (with a final newline) to `path`; returns its size in bytes.
pub fn json<T: Serialize>(path: &Path, v: &T) -> Result<u64> {
    let text = serde_json::to_string_pretty(v).map_err(|e| Error::Zoo(e.to_string()))? + "\n";
    std::fs::write(path, &text).map_err(|e| Error::io(path, e))?;
    Ok(text.len() as u64)
}
