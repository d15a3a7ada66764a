//! Profiles: what a GPU costs, per model, as the simulator consumes it.
//!
//! A profile (a `ron` file) describes one GPU and, for each model it was measured with, the
//! memory an instance takes, the cold load, the switch per loading mode, the per-request overhead
//! and the forward-pass latency over (batch, sequence length). Every cost is a [`Cost`]: a
//! distribution at one busy instance plus a *stretch* curve, the factor by which it grows when
//! `k` of that operation run at once (`stretch[k-1]`; beyond the curve's end its last value
//! holds).
//!
//! How the simulator applies contention depends on what was measured. A model with a
//! [`Contention`] section (written by `ptm calibrate` since issue 16) is simulated by resource:
//! phases share the SMs, the copy engine or the host as that section says and are re-timed
//! whenever a phase on their resource starts or ends ([`contention`]). A model without one (an
//! older calibration, or FastPTM's published costs) keeps the earlier model: each phase is
//! stretched by its cost's curve at the number of instances busy when it starts, and the run's
//! report says so. A [`HostOverhead`] section adds the host's work per dispatch; without one
//! none is added.
//!
//! Forward latency between measured points is interpolated linearly, first in batch within a
//! sequence length, then in sequence length. Below the smallest measured batch or sequence
//! length the smallest measured value holds (small shapes are launch-bound); above the largest
//! the latency grows in proportion (large shapes are compute-bound). Noise is that of the
//! nearest measured point, scaled to the interpolated mean.
//!
//! Bounds ([`crate::limits`]): a cost's draws lie within one hour (see [`dist`]); a stretch
//! factor is at most 1,000; forward points have batch and sequence length of at most
//! 1,000,000. Beyond them a profile is refused, naming the file and field.

pub mod contention;
pub mod dist;
pub mod forward;
pub mod identity;
pub mod pet;
pub mod pool_copy;

pub use contention::{Contention, HostOverhead, Resource, Sharing, MAX_COPY_SIZES, MAX_SM_SIZES};
pub use dist::Dist;
pub use forward::{ForwardPoint, ForwardTable};
pub use identity::{DeviceKind, EncoderShape, ModelIdentity, Provenance, RuntimeBuild};
pub use pet::{PetCosts, PetKind};
pub use pool_copy::PoolCopyContention;

use crate::error::{Error, Result};
use crate::limits::MAX_STRETCH;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A measured (or documented) GPU and the models it was measured with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// The GPU.
    pub gpu: Gpu,
    /// Where the numbers come from: a command, a paper, a log.
    #[serde(default)]
    pub source: String,
    /// Per model: its costs on this GPU. Keys are model names that scenarios use.
    pub models: BTreeMap<String, ModelProfile>,
    /// How the profile was measured, when `ptm calibrate` wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Calibration>,
}

/// Provenance of a measured profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    /// When (UTC, ISO 8601).
    pub date: String,
    /// The command that measured it.
    pub command: String,
    /// The GPU driver (or "cpu").
    pub driver: String,
    /// Warm-up runs before each measured figure.
    pub warmup: usize,
    /// Measured repeats per figure.
    pub repeats: usize,
    /// How the simulator interpolates between the measured points.
    pub interpolation: String,
    /// The runtime build that measured it (absent in profiles written before it was
    /// recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<RuntimeBuild>,
}

/// Statistics of one measured figure, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Measured {
    /// Repeats measured.
    pub n: usize,
    /// Median.
    pub median_ms: f64,
    /// Mean.
    pub mean_ms: f64,
    /// Standard deviation.
    pub std_ms: f64,
    /// 5th percentile.
    pub p5_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// The distribution chosen for `ms` and why (e.g. "log-normal: higher likelihood than normal").
    pub fit: String,
}

/// The GPU a profile describes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gpu {
    /// Its name as the driver reports it.
    pub name: String,
    /// Device memory available to instances, bytes.
    pub memory_bytes: u64,
    /// The kind of device (absent in older profiles: see [`Profile::device_kind`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<DeviceKind>,
}

/// A cost: its distribution with one busy instance and how it stretches with more.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cost {
    /// The duration with one instance busy, milliseconds.
    pub ms: Dist,
    /// Factor with k instances busy at `stretch[k-1]`; empty means 1.0 for any k.
    #[serde(default)]
    pub stretch: Vec<f64>,
    /// The measurement behind `ms`, when calibrated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured: Option<Measured>,
}

impl Cost {
    /// A cost that does not stretch.
    pub fn flat(ms: Dist) -> Self {
        Cost {
            ms,
            stretch: Vec::new(),
            measured: None,
        }
    }

    /// The stretch factor with `busy` instances busy (≥ 1).
    pub fn stretch_at(&self, busy: usize) -> f64 {
        stretch_at(&self.stretch, busy)
    }

    fn validate(&self, field: &str) -> Result<()> {
        self.ms.validate(&format!("{field}.ms"))?;
        validate_stretch(&self.stretch, &format!("{field}.stretch"))
    }
}

/// The factor of a stretch curve with `busy` instances busy (1.0 for an empty curve; the last
/// value beyond its end).
pub fn stretch_at(curve: &[f64], busy: usize) -> f64 {
    match curve.len() {
        0 => 1.0,
        n => curve[busy.clamp(1, n) - 1],
    }
}

fn validate_stretch(curve: &[f64], field: &str) -> Result<()> {
    if curve.iter().all(|f| *f > 0.0 && *f <= MAX_STRETCH) {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            format!("expected positive factors of at most {MAX_STRETCH}, got {curve:?}"),
        ))
    }
}

/// The largest factor of a stretch curve (1.0 for an empty one).
pub fn max_stretch(curve: &[f64]) -> f64 {
    curve.iter().copied().fold(1.0, f64::max)
}

/// Switch costs per loading mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwitchCosts {
    /// Weights copied into the instance's resident model structure.
    pub split: Cost,
    /// The model rebuilt from its configuration and checkpoint.
    pub full: Cost,
    /// FastPTM's split mode (checkpoint re-read into pageable memory, copied in place), when
    /// calibrated: recorded for comparison; the simulator's split mode uses `split`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fastptm: Option<Cost>,
}

/// One model's costs on the profile's GPU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelProfile {
    /// Device memory one instance of this model takes, bytes.
    pub memory_per_instance_bytes: u64,
    /// An instance's first load: context, structure and weights.
    pub cold_load: Cost,
    /// A switch to another tenant's weights.
    pub switch: SwitchCosts,
    /// Bytes of one tenant's packed weights (what a GPU pool or host cache slot holds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights_bytes: Option<u64>,
    /// A load from the GPU weight pool into an executor's arena (device to device), when
    /// calibrated; scenarios with a `gpu_pool` need it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_switch: Option<Cost>,
    /// Per-request work besides forward passes (data preparation, copies), milliseconds; it
    /// stretches with the forward passes.
    #[serde(default = "zero_ms")]
    pub request_overhead_ms: Dist,
    /// Forward-pass latency over (batch, sequence length).
    pub forward: ForwardTable,
    /// The model it was measured with (absent in older profiles: see
    /// [`ModelProfile::identity_or_inferred`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<ModelIdentity>,
    /// Parameter-efficient tenants over this model as a backbone, by kind (e.g. `lora-r8`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pet: BTreeMap<String, PetCosts>,
    /// How its phases share the device's resources, when measured (absent: each phase is
    /// stretched by the instances busy when it starts; see the module doc).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contention: Option<Contention>,
    /// The host's work per dispatch besides loads and passes, when measured (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<HostOverhead>,
    /// How loads from the GPU weight pool and forward passes slow each other, when measured
    /// (absent: not measured, see [`pool_copy`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_contention: Option<PoolCopyContention>,
}

fn zero_ms() -> Dist {
    Dist::Constant(0.0)
}

impl Profile {
    /// Parses and validates a profile; `name` is used in messages. A leading UTF-8 byte-order
    /// mark is skipped.
    pub fn from_ron(text: &str, name: &str) -> Result<Profile> {
        let text = crate::workload::strip_bom(text);
        let profile: Profile = ron::from_str(text).map_err(|e| Error::from_ron(name, e))?;
        profile.validate(name)?;
        Ok(profile)
    }

    /// Checks every cost; errors name the file and the field.
    pub fn validate(&self, name: &str) -> Result<()> {
        if self.gpu.memory_bytes == 0 {
            return Err(Error::invalid(
                format!("{name}: gpu.memory_bytes"),
                "expected > 0",
            ));
        }
        if self.models.is_empty() {
            return Err(Error::invalid(
                format!("{name}: models"),
                "the profile describes no model",
            ));
        }
        for (model, m) in &self.models {
            let f = |field: &str| format!("{name}: models.{model}.{field}");
            if m.memory_per_instance_bytes == 0 {
                return Err(Error::invalid(
                    f("memory_per_instance_bytes"),
                    "expected > 0",
                ));
            }
            m.cold_load.validate(&f("cold_load"))?;
            m.switch.split.validate(&f("switch.split"))?;
            m.switch.full.validate(&f("switch.full"))?;
            if let Some(c) = &m.switch.fastptm {
                c.validate(&f("switch.fastptm"))?;
            }
            if let Some(c) = &m.pool_switch {
                c.validate(&f("pool_switch"))?;
            }
            for (kind, c) in &m.pet {
                c.validate(&f(&format!("pet.{kind}")))?;
            }
            if m.weights_bytes == Some(0) {
                return Err(Error::invalid(f("weights_bytes"), "expected > 0"));
            }
            m.request_overhead_ms.validate(&f("request_overhead_ms"))?;
            m.forward.validate(&f("forward"))?;
            if let Some(c) = &m.contention {
                c.validate(&f("contention"))?;
            }
            if let Some(h) = &m.host {
                h.validate(&f("host"))?;
            }
            if let Some(c) = &m.pool_contention {
                c.validate(&f("pool_contention"))?;
            }
        }
        Ok(())
    }

    /// The model `model`, or an error naming it, who used it, and what the profile has.
    pub fn model(&self, profile_name: &str, model: &str, used_by: &str) -> Result<&ModelProfile> {
        self.models.get(model).ok_or_else(|| Error::UnknownModel {
            profile: profile_name.to_string(),
            model: model.to_string(),
            used_by: used_by.to_string(),
            known: self.models.keys().cloned().collect::<Vec<_>>().join(", "),
        })
    }

    /// A small profile for examples and tests: one model `bert-base` on a 24 GiB GPU, 100 ms
    /// switches, 2.5 ms loads from a GPU pool of 220 MB slots, 4 ms batch-1 forwards, and LoRA
    /// rank-8 tenants over it (`lora-r8`, [`PetCosts::example`]).
    pub fn example() -> Profile {
        let mut models = BTreeMap::new();
        models.insert(
            "bert-base".to_string(),
            ModelProfile {
                memory_per_instance_bytes: 2_000_000_000,
                cold_load: Cost::flat(Dist::Constant(1000.0)),
                switch: SwitchCosts {
                    split: Cost::flat(Dist::Constant(100.0)),
                    full: Cost::flat(Dist::Constant(800.0)),
                    fastptm: None,
                },
                weights_bytes: Some(220_000_000),
                pool_switch: Some(Cost::flat(Dist::Constant(2.5))),
                request_overhead_ms: zero_ms(),
                forward: ForwardTable {
                    points: vec![ForwardPoint {
                        batch: 1,
                        seq_len: 128,
                        ms: Dist::Constant(4.0),
                        measured: None,
                    }],
                    stretch: Vec::new(),
                },
                identity: None,
                pet: BTreeMap::from([("lora-r8".to_string(), PetCosts::example())]),
                contention: None,
                host: None,
                pool_contention: None,
            },
        );
        Profile {
            gpu: Gpu {
                name: "example".into(),
                memory_bytes: 24 << 30,
                kind: None,
            },
            source: "made up for examples".into(),
            models,
            calibration: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_round_trips_through_ron() {
        let p = Profile::example();
        let text = ron::ser::to_string_pretty(&p, Default::default()).unwrap();
        assert_eq!(Profile::from_ron(&text, "p.ron").unwrap(), p);
    }

    #[test]
    fn stretch_holds_its_last_value() {
        let c = Cost {
            stretch: vec![1.0, 1.5, 2.0],
            ..Cost::flat(Dist::Constant(1.0))
        };
        assert_eq!(c.stretch_at(1), 1.0);
        assert_eq!(c.stretch_at(3), 2.0);
        assert_eq!(c.stretch_at(9), 2.0);
        assert_eq!(Cost::flat(Dist::Constant(1.0)).stretch_at(4), 1.0);
    }

    #[test]
    fn errors_name_the_field() {
        let mut p = Profile::example();
        p.models.get_mut("bert-base").unwrap().switch.split.stretch = vec![1.0, -2.0];
        let err = p.validate("p.ron").unwrap_err().to_string();
        assert!(
            err.starts_with("p.ron: models.bert-base.switch.split.stretch"),
            "{err}"
        );
        let err = Profile::from_ron("Profile(gpu: Gpu(name: \"x\"))", "p.ron")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("p.ron:1:"), "{err}");
        let err = p
            .model("p.ron", "bert-large", "tenant A")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("bert-large") && err.contains("tenant A") && err.contains("bert-base"),
            "{err}"
        );
    }
}
