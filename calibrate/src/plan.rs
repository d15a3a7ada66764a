//! What to measure: the grid, the instance counts, warm-up and repeats.

use crate::{Error, Result};

/// A calibration plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Batch sizes of the forward grid.
    pub batches: Vec<u32>,
    /// Sequence lengths of the forward grid.
    pub seq_lens: Vec<u32>,
    /// Stretch measured with 1..=max_instances busy at once.
    pub max_instances: usize,
    /// Unmeasured runs before each figure.
    pub warmup: usize,
    /// Measured runs per figure.
    pub repeats: usize,
    /// Measured runs of the slow figures (cold loads, FastPTM-mode and full switches).
    pub slow_repeats: usize,
    /// Stretch of the slow figures is measured with 1..=slow_max_instances at once (the last
    /// factor holds beyond).
    pub slow_max_instances: usize,
}

impl Plan {
    /// The full plan of the issue: batch 1–64 × sequence 32–512, 1–8 instances, 3 warm-ups,
    /// 30 repeats (slow figures: 7 repeats, stretch over 1–4 instances).
    pub fn full() -> Plan {
        Plan {
            batches: vec![1, 2, 4, 8, 16, 32, 64],
            seq_lens: vec![32, 64, 128, 256, 512],
            max_instances: 8,
            warmup: 3,
            repeats: 30,
            slow_repeats: 7,
            slow_max_instances: 4,
        }
    }

    /// A quick plan for CI and smoke tests: two batches, two lengths, 1–2 instances.
    pub fn quick() -> Plan {
        Plan {
            batches: vec![1, 4],
            seq_lens: vec![16, 32],
            max_instances: 2,
            warmup: 1,
            repeats: 5,
            slow_repeats: 3,
            slow_max_instances: 2,
        }
    }

    /// Refuses empty grids and zero repeats.
    pub fn validate(&self) -> Result<()> {
        if self.batches.is_empty()
            || self.seq_lens.is_empty()
            || self.batches.contains(&0)
            || self.seq_lens.contains(&0)
        {
            return Err(Error::Invalid(
                "the plan needs batches and sequence lengths ≥ 1".into(),
            ));
        }
        if self.max_instances == 0 || self.repeats < 2 {
            return Err(Error::Invalid(
                "the plan needs ≥ 1 instance and ≥ 2 repeats".into(),
            ));
        }
        Ok(())
    }

    /// Progress steps per model: cold load, three switch modes, one per sequence length, the
    /// concurrent forward, the weight-pool load, and the contention and host-overhead
    /// figures.
    pub fn steps_per_model(&self) -> usize {
        1 + 3 + self.seq_lens.len() + 1 + 1 + crate::contention::STEPS
    }

    /// The forward shape whose stretch is measured: batch 1 at the length nearest 128 (FastPTM's
    /// requests).
    pub fn stretch_shape(&self) -> (u32, u32) {
        let s = *self
            .seq_lens
            .iter()
            .min_by_key(|&&s| s.abs_diff(128))
            .expect("validated: non-empty");
        let b = *self.batches.iter().min().expect("validated: non-empty");
        (b, s)
    }
}
