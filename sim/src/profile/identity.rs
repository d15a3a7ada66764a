//! What a measured profile describes, so that it is not applied to another model, device or
//! build: the device's kind (with `Gpu::name` and `Calibration::driver`), the runtime that
//! measured it (version, build identity, kernel options) and, per model, its architecture and
//! dtype. Every field is optional in the file: profiles written before they existed still
//! load, and [`Profile::device_kind`] / [`ModelProfile::identity_or_inferred`] recover what the
//! older fields imply.

use super::{ModelProfile, Profile};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The kind of device a profile was measured on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    /// The CPU backend (candle).
    Cpu,
    /// A CUDA GPU.
    Cuda,
}

impl fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeviceKind::Cpu => "cpu",
            DeviceKind::Cuda => "cuda",
        })
    }
}

/// The runtime build a profile was measured with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeBuild {
    /// The runtime crate's version.
    pub version: String,
    /// The build's identity (a content hash of the runtime's sources).
    pub build: String,
    /// The GPU kernel options it ran, by name (empty on the CPU).
    #[serde(default)]
    pub kernel_options: BTreeMap<String, bool>,
}

/// The model a profile's entry was measured with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelIdentity {
    /// The zoo architecture (`ptm zoo make --arch`), e.g. `bert-base`.
    pub arch: String,
    /// The dtype it ran in (`fp32`, `fp16`, `bf16`).
    pub dtype: String,
    /// The encoder's shape, when recorded: `model_type`, layers, hidden width, heads, FFN
    /// width, vocabulary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoder: Option<EncoderShape>,
}

/// The shape of an encoder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncoderShape {
    /// `bert` or `roberta`.
    pub model_type: String,
    /// Encoder layers.
    pub layers: usize,
    /// Hidden width.
    pub hidden_size: usize,
    /// Attention heads.
    pub heads: usize,
    /// Feed-forward width.
    pub intermediate_size: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
}

/// Where a fact about a profile comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provenance {
    /// Recorded in the file.
    Recorded,
    /// Implied by older fields (the driver `cpu`, a model name `<arch>-<dtype>`).
    Inferred,
}

/// The dtypes a model name may end in (`ptm calibrate` names models `<arch>-<dtype>`).
const DTYPES: [&str; 3] = ["fp32", "fp16", "bf16"];

impl Profile {
    /// The device kind: recorded, or inferred for older calibrated profiles (driver `cpu`: the
    /// CPU; any other driver: a GPU); `None` for profiles not written by `ptm calibrate`.
    pub fn device_kind(&self) -> Option<(DeviceKind, Provenance)> {
        if let Some(k) = self.gpu.kind {
            return Some((k, Provenance::Recorded));
        }
        let c = self.calibration.as_ref()?;
        let kind = if c.driver == "cpu" {
            DeviceKind::Cpu
        } else {
            DeviceKind::Cuda
        };
        Some((kind, Provenance::Inferred))
    }

    /// The runtime build that measured it, when recorded.
    pub fn runtime_build(&self) -> Option<&RuntimeBuild> {
        self.calibration.as_ref()?.runtime.as_ref()
    }
}

impl ModelProfile {
    /// The model's identity: recorded, or inferred from a name `<arch>-<dtype>` (how `ptm
    /// calibrate` names models) for older calibrated profiles; `None` otherwise.
    pub fn identity_or_inferred(&self, name: &str) -> Option<(ModelIdentity, Provenance)> {
        if let Some(id) = &self.identity {
            return Some((id.clone(), Provenance::Recorded));
        }
        let (arch, dtype) = name.rsplit_once('-')?;
        if arch.is_empty() || !DTYPES.contains(&dtype) {
            return None;
        }
        let id = ModelIdentity {
            arch: arch.to_string(),
            dtype: dtype.to_string(),
            encoder: None,
        };
        Some((id, Provenance::Inferred))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Calibration;

    #[test]
    fn older_profiles_imply_their_device_and_models() {
        let mut p = Profile::example();
        assert_eq!(p.device_kind(), None, "not calibrated: unknown");
        let m = p.models["bert-base"].clone();
        assert_eq!(m.identity_or_inferred("bert-base"), None);
        assert_eq!(m.identity_or_inferred("bert-wwm-base-chinese"), None);
        let (id, how) = m.identity_or_inferred("bert-base-fp16").unwrap();
        assert_eq!(
            (id.arch.as_str(), id.dtype.as_str(), how),
            ("bert-base", "fp16", Provenance::Inferred)
        );
        p.calibration = Some(Calibration {
            date: "d".into(),
            command: "c".into(),
            driver: "cpu".into(),
            warmup: 1,
            repeats: 2,
            interpolation: "i".into(),
            runtime: None,
        });
        assert_eq!(
            p.device_kind(),
            Some((DeviceKind::Cpu, Provenance::Inferred))
        );
        p.gpu.kind = Some(DeviceKind::Cuda);
        assert_eq!(
            p.device_kind(),
            Some((DeviceKind::Cuda, Provenance::Recorded))
        );
    }

    #[test]
    fn the_shipped_profiles_still_load() {
        for (name, text) in [
            (
                "h200.ron",
                include_str!("../../../scenarios/profiles/h200.ron"),
            ),
            (
                "h100.ron",
                include_str!("../../../scenarios/profiles/h100.ron"),
            ),
            (
                "rtx3090-fastptm.ron",
                include_str!("../../../scenarios/profiles/rtx3090-fastptm.ron"),
            ),
        ] {
            let p = Profile::from_ron(text, name).unwrap();
            // The H200's was re-measured with builds recorded; the others predate them.
            assert_eq!(p.runtime_build().is_some(), name == "h200.ron", "{name}");
        }
        let h200 = Profile::from_ron(
            include_str!("../../../scenarios/profiles/h200.ron"),
            "h200.ron",
        )
        .unwrap();
        assert_eq!(
            h200.device_kind(),
            Some((DeviceKind::Cuda, Provenance::Recorded))
        );
        let h100 = Profile::from_ron(
            include_str!("../../../scenarios/profiles/h100.ron"),
            "h100.ron",
        )
        .unwrap();
        assert_eq!(
            h100.device_kind(),
            Some((DeviceKind::Cuda, Provenance::Inferred))
        );
        let (id, _) = h100.models["bert-base-fp16"]
            .identity_or_inferred("bert-base-fp16")
            .unwrap();
        assert_eq!((id.arch.as_str(), id.dtype.as_str()), ("bert-base", "fp16"));
    }
}
