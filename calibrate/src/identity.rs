//! What a profile is compared with: this runtime build (version, build identity, kernel
//! options), a zoo's model (architecture, dtype, encoder shape), and the device a run uses
//! (kind, name, driver) — what `ptm calibrate` records in a profile and what [`crate::Check`]
//! compares a profile against.

use crate::{Error, Result};
use ptm_runtime::zoo::{model_dir, Arch};
use ptm_runtime::{Config, DType, Device, KernelOptions, Zoo};
use ptm_sim::profile::{DeviceKind, EncoderShape, ModelIdentity, RuntimeBuild};
use std::path::Path;

/// This runtime build, running `options` (`None`: the CPU, which runs no GPU kernels).
pub fn this_build(options: Option<KernelOptions>) -> RuntimeBuild {
    RuntimeBuild {
        version: ptm_runtime::identity::VERSION.to_string(),
        build: ptm_runtime::identity::BUILD.to_string(),
        kernel_options: options
            .map(|o| {
                o.fields()
                    .iter()
                    .map(|&(k, v)| (k.to_string(), v))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// The identity of a zoo's model: its architecture, the dtype it runs in, its encoder shape.
pub fn model_identity(arch: Arch, dtype: DType, cfg: &Config) -> ModelIdentity {
    ModelIdentity {
        arch: arch.name().to_string(),
        dtype: dtype.to_string(),
        encoder: Some(EncoderShape {
            model_type: cfg.model_type.clone(),
            layers: cfg.num_hidden_layers,
            hidden_size: cfg.hidden_size,
            heads: cfg.num_attention_heads,
            intermediate_size: cfg.intermediate_size,
            vocab_size: cfg.vocab_size,
        }),
    }
}

/// The CPU backend's device name, e.g. `CPU (candle, 16 threads)`.
pub fn cpu_name() -> String {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("CPU (candle, {threads} threads)")
}

/// The NVIDIA driver version from `/proc/driver/nvidia/version`, or `unknown`.
pub fn driver_version() -> String {
    std::fs::read_to_string("/proc/driver/nvidia/version")
        .ok()
        .and_then(|s| parse_driver(&s))
        .unwrap_or_else(|| "unknown".into())
}

/// The first version-looking word (digits and at least one dot) of the file's first line,
/// e.g. `580.159.04` from `NVRM version: NVIDIA UNIX Open Kernel Module for x86_64
/// 580.159.04  Release Build …`.
fn parse_driver(text: &str) -> Option<String> {
    text.lines().next()?.split_whitespace().find_map(|w| {
        let version = w.contains('.')
            && w.chars().all(|c| c.is_ascii_digit() || c == '.')
            && w.starts_with(|c: char| c.is_ascii_digit());
        version.then(|| w.to_string())
    })
}

/// The device a run uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceFacts {
    /// CPU or GPU.
    pub kind: DeviceKind,
    /// Its name, or why it could not be asked (no GPU here).
    pub name: std::result::Result<String, String>,
    /// The driver (`cpu` on the CPU).
    pub driver: String,
}

/// What a run will be, as far as it is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// The device, when given.
    pub device: Option<DeviceFacts>,
    /// The zoo's model, when given.
    pub model: Option<ModelIdentity>,
    /// This build (with the kernel options the device runs).
    pub build: RuntimeBuild,
}

impl Expected {
    /// A run of the zoo at `zoo` (when given) in `dtype` (default: the zoo's) on `device` (when
    /// given; a GPU's name and driver are asked of this machine).
    pub fn run(zoo: Option<&Path>, device: Option<Device>, dtype: Option<DType>) -> Result<Self> {
        let device = device.map(|d| match d {
            Device::Cpu => DeviceFacts {
                kind: DeviceKind::Cpu,
                name: Ok(cpu_name()),
                driver: "cpu".into(),
            },
            Device::Cuda(n) => DeviceFacts {
                kind: DeviceKind::Cuda,
                name: ptm_runtime::gpu::device_name(n).map_err(|e| e.to_string()),
                driver: driver_version(),
            },
        });
        let model = match zoo {
            None => None,
            Some(dir) if dir.join("pet.ron").is_file() => {
                // Parameter-efficient tenants: the model is their backbone.
                let z = ptm_runtime::pet::PetZoo::read(dir)?;
                let cfg = Config::from_file(&dir.join(&z.backbone).join("config.json"))?;
                Some(model_identity(z.arch, dtype.unwrap_or(z.dtype), &cfg))
            }
            Some(dir) => {
                let z = Zoo::read(dir)?;
                let first = z.models.first().ok_or_else(|| {
                    Error::Invalid(format!("{}: the zoo has no models", dir.display()))
                })?;
                let cfg = Config::from_file(&model_dir(dir, &first.name).join("config.json"))?;
                Some(model_identity(z.arch, dtype.unwrap_or(z.dtype), &cfg))
            }
        };
        let cpu = device.as_ref().is_some_and(|d| d.kind == DeviceKind::Cpu);
        let options = (!cpu).then(KernelOptions::default);
        Ok(Expected {
            device,
            model,
            build: this_build(options),
        })
    }

    /// The same run with kernel options `options` instead of the defaults (an A/B run's: `ptm
    /// serve --pageable-staging`, `ptm run --live --pinned-uploads`); nothing changes on the CPU,
    /// which runs no kernel option.
    pub fn with_options(mut self, options: KernelOptions) -> Self {
        if !self.build.kernel_options.is_empty() {
            self.build = this_build(Some(options));
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_driver_version_is_read_from_the_kernel_module_line() {
        let line = "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  \
                    Release Build  (dvs-builder@U16-I3-B03-4-3)  Thu Oct 30 2025\nGCC version: 12.2";
        assert_eq!(parse_driver(line).as_deref(), Some("580.159.04"));
        assert_eq!(parse_driver("no numbers here"), None);
        assert_eq!(parse_driver(""), None);
    }
}
