//! What parameter-efficient tenants cost over a backbone model: the extra time a forward pass
//! pays per distinct tenant in its batch (each tenant's delta applied to its segment of rows),
//! and the load of one tenant's delta into the GPU's delta pool from the host or its file.
//!
//! A PET tenant (a LoRA, a bottleneck adapter, BitFit biases) shares its backbone's forward
//! pass with every other tenant of the batch: a pass of `rows × seq_len` over `k` distinct
//! tenants costs the backbone's pass times `1 + overhead` plus `k × segment`. Its delta lives in
//! a pool of slots on the GPU (thousands of them), in the host's memory, or in its file.

use super::{Cost, Dist};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// A kind of parameter-efficient tenant, as scenarios name it; its [`key`](PetKind::key) is
/// what a profile's `pet` map is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PetKind {
    /// LoRA of this rank (PEFT layout).
    Lora {
        /// Rank.
        rank: u32,
    },
    /// Houlsby bottleneck adapters (two a layer) of this reduction factor.
    Houlsby {
        /// Hidden size ÷ bottleneck size.
        reduction: u32,
    },
    /// Pfeiffer bottleneck adapters (one a layer) of this reduction factor.
    Pfeiffer {
        /// Hidden size ÷ bottleneck size.
        reduction: u32,
    },
    /// BitFit: bias-only deltas.
    Bitfit,
}

/// The most fixed time a profile may say a mixed pass adds, milliseconds.
pub const MAX_OVERHEAD_MS: f64 = 1000.0;

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

impl PetKind {
    /// `lora-r8`, `houlsby-f16`, `pfeiffer-f16`, `bitfit`.
    pub fn key(self) -> String {
        match self {
            PetKind::Lora { rank } => format!("lora-r{rank}"),
            PetKind::Houlsby { reduction } => format!("houlsby-f{reduction}"),
            PetKind::Pfeiffer { reduction } => format!("pfeiffer-f{reduction}"),
            PetKind::Bitfit => "bitfit".into(),
        }
    }
}

/// The costs of one kind of parameter-efficient tenant (e.g. `lora-r8`) over a backbone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PetCosts {
    /// Fraction a mixed pass adds to the backbone's pass of the same shape, whatever the
    /// tenants (the delta kernels' fixed part).
    pub overhead: f64,
    /// Time a mixed pass adds whatever its size and tenants, milliseconds (host work: the plan,
    /// its tables, the outputs per segment). 0 where not measured (profiles before it).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub overhead_ms: f64,
    /// Time a pass adds per distinct tenant in its batch, milliseconds.
    pub segment_ms: Dist,
    /// Bytes of one tenant's delta (a slot of the GPU delta pool).
    pub delta_bytes: u64,
    /// A delta's load from the host into the GPU pool.
    pub load_host: Cost,
    /// A delta's load from its file.
    pub load_file: Cost,
    /// Whether a load overlaps the backbone's layers before the first one that needs it
    /// (then only what exceeds one layer's time delays the pass).
    #[serde(default)]
    pub pipelined: bool,
}

impl PetCosts {
    /// Refuses negative or non-finite figures; `field` names it in errors.
    pub fn validate(&self, field: &str) -> Result<()> {
        if !(self.overhead.is_finite() && (0.0..=100.0).contains(&self.overhead)) {
            return Err(Error::invalid(
                format!("{field}.overhead"),
                format!("expected a fraction from 0 to 100, got {}", self.overhead),
            ));
        }
        if !(self.overhead_ms.is_finite() && (0.0..=MAX_OVERHEAD_MS).contains(&self.overhead_ms)) {
            return Err(Error::invalid(
                format!("{field}.overhead_ms"),
                format!(
                    "expected milliseconds from 0 to {MAX_OVERHEAD_MS}, got {}",
                    self.overhead_ms
                ),
            ));
        }
        self.segment_ms.validate(&format!("{field}.segment_ms"))?;
        if self.delta_bytes == 0 {
            return Err(Error::invalid(
                format!("{field}.delta_bytes"),
                "expected > 0",
            ));
        }
        self.load_host.validate(&format!("{field}.load_host"))?;
        self.load_file.validate(&format!("{field}.load_file"))
    }

    /// An example for tests: LoRA rank 8 on BERT-base, 3 % overhead, 15 µs a segment, 0.6 MB
    /// deltas, 20 µs from the host, 2 ms from the file, pipelined.
    pub fn example() -> Self {
        PetCosts {
            overhead: 0.03,
            overhead_ms: 0.0,
            segment_ms: Dist::Constant(0.015),
            delta_bytes: 600_000,
            load_host: Cost::flat(Dist::Constant(0.02)),
            load_file: Cost::flat(Dist::Constant(2.0)),
            pipelined: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_time_outside_its_range_is_refused_naming_the_field() {
        for bad in [-0.1, f64::NAN, MAX_OVERHEAD_MS * 2.0] {
            let p = PetCosts {
                overhead_ms: bad,
                ..PetCosts::example()
            };
            let e = p.validate("models.m.pet.lora-r8").unwrap_err().to_string();
            assert!(e.contains("models.m.pet.lora-r8.overhead_ms"), "{e}");
        }
        assert!(PetCosts::example().validate("p").is_ok());
    }

    #[test]
    fn a_profile_without_the_fixed_time_reads_it_as_zero_and_writes_it_only_when_set() {
        let text = ron::to_string(&PetCosts::example()).unwrap();
        assert!(!text.contains("overhead_ms"), "{text}");
        let back: PetCosts = ron::from_str(&text).unwrap();
        assert_eq!(back.overhead_ms, 0.0);
        let set = PetCosts {
            overhead_ms: 0.2,
            ..PetCosts::example()
        };
        let text = ron::to_string(&set).unwrap();
        assert_eq!(ron::from_str::<PetCosts>(&text).unwrap(), set);
    }
}
