//! Floating-point formats the runtime computes in, and conversion of raw tensor bytes.

use crate::error::{Error, Result};
use half::{bf16, f16};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The dtype weights and activations are held in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    /// IEEE single precision.
    #[default]
    Fp32,
    /// IEEE half precision.
    Fp16,
    /// bfloat16.
    Bf16,
}

impl DType {
    /// Bytes per element.
    pub fn size_bytes(self) -> usize {
        match self {
            DType::Fp32 => 4,
            DType::Fp16 | DType::Bf16 => 2,
        }
    }

    /// The safetensors name of this dtype.
    pub fn safetensors_name(self) -> &'static str {
        match self {
            DType::Fp32 => "F32",
            DType::Fp16 => "F16",
            DType::Bf16 => "BF16",
        }
    }

    /// The matching candle dtype.
    pub fn to_candle(self) -> candle_core::DType {
        match self {
            DType::Fp32 => candle_core::DType::F32,
            DType::Fp16 => candle_core::DType::F16,
            DType::Bf16 => candle_core::DType::BF16,
        }
    }

    /// Maps a safetensors dtype, if it is one of ours.
    pub fn from_safetensors(d: safetensors::Dtype) -> Option<Self> {
        match d {
            safetensors::Dtype::F32 => Some(DType::Fp32),
            safetensors::Dtype::F16 => Some(DType::Fp16),
            safetensors::Dtype::BF16 => Some(DType::Bf16),
            _ => None,
        }
    }

    /// Encodes `values` in this dtype (little endian), appending to `out`.
    pub fn encode_f32(self, values: &[f32], out: &mut Vec<u8>) {
        out.reserve(values.len() * self.size_bytes());
        match self {
            DType::Fp32 => values
                .iter()
                .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
            DType::Fp16 => values
                .iter()
                .for_each(|v| out.extend_from_slice(&f16::from_f32(*v).to_le_bytes())),
            DType::Bf16 => values
                .iter()
                .for_each(|v| out.extend_from_slice(&bf16::from_f32(*v).to_le_bytes())),
        }
    }

    /// Decodes little-endian bytes of this dtype into f32 values.
    pub fn decode_f32(self, bytes: &[u8]) -> Vec<f32> {
        match self {
            DType::Fp32 => bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            DType::Fp16 => bytes
                .chunks_exact(2)
                .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            DType::Bf16 => bytes
                .chunks_exact(2)
                .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
        }
    }

    /// Converts raw little-endian bytes of dtype `from` into this dtype, appending to `out`.
    pub fn convert_from(self, from: DType, bytes: &[u8], out: &mut Vec<u8>) {
        if from == self {
            out.extend_from_slice(bytes);
        } else {
            self.encode_f32(&from.decode_f32(bytes), out);
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DType::Fp32 => "fp32",
            DType::Fp16 => "fp16",
            DType::Bf16 => "bf16",
        })
    }
}

impl FromStr for DType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "fp32" | "f32" | "float32" => Ok(DType::Fp32),
            "fp16" | "f16" | "float16" | "half" => Ok(DType::Fp16),
            "bf16" | "bfloat16" => Ok(DType::Bf16),
            _ => Err(Error::BadOption {
                what: "dtype",
                value: s.to_string(),
                expected: "fp32, fp16 or bf16",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_parses() {
        let v = [1.0f32, -2.5, 0.1];
        for d in [DType::Fp32, DType::Fp16, DType::Bf16] {
            let mut b = Vec::new();
            d.encode_f32(&v, &mut b);
            assert_eq!(b.len(), 3 * d.size_bytes());
            let back = d.decode_f32(&b);
            assert!((back[1] + 2.5).abs() < 1e-6);
            assert!((back[2] - 0.1).abs() < 1e-2);
            assert_eq!(d.to_string().parse::<DType>().ok(), Some(d));
        }
        assert!("int8".parse::<DType>().is_err());
    }
}
