//! How loads from the GPU weight pool and forward passes slow each other, when measured.
//!
//! A load from the pool (tier 1) is a device-to-device copy of a tenant's packed weights into an
//! executor's arena on the pool's one stream: it reads and writes device memory while other
//! executors' passes read their weights from the same memory. [`PoolCopyContention`] holds the
//! two factors `ptm calibrate` measures through the live path (`calibrate/src/pool_contention.rs`):
//! a forward request timed on one executor while another loads from the pool back to back, over
//! the request alone; and a pool load timed while another executor runs forward requests back to
//! back, over the load alone.
//!
//! With the figures (and contention by resource), the simulator puts pool loads on their own
//! FIFO lane (the pool stream: one copy at a time, in the order issued) and re-times the passes
//! on the SMs and the copies on that lane whenever either side turns busy or idle
//! (`engine/share.rs`). Without them (every profile calibrated before this field existed) a pool
//! load keeps its earlier model — its time alone stretched at its start by the pool loads'
//! curve at the executors busy — and passes do not slow beside it; the report's cost model says
//! that the figure was not measured. Nothing is invented.

use super::validate_stretch;
use crate::error::Result;
use serde::{Deserialize, Serialize};

/// The measured cross factors between pool loads and forward passes (see the module doc).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolCopyContention {
    /// Factor of a forward pass while a load from the pool is in flight (passes while another
    /// executor loads from the pool back to back, over passes alone).
    pub forward_during_pool_copy: f64,
    /// Factor of a load from the pool while a forward pass runs (pool loads while another
    /// executor runs passes back to back, over pool loads alone).
    pub pool_copy_during_forward: f64,
    /// Tokens (rows × sequence length) of the passes both factors were measured with.
    pub tokens: u32,
    /// How they were measured, in words.
    #[serde(default)]
    pub method: String,
}

impl PoolCopyContention {
    /// Checks both factors (positive, at most the stretch bound); `field` names the section.
    pub fn validate(&self, field: &str) -> Result<()> {
        validate_stretch(
            &[self.forward_during_pool_copy],
            &format!("{field}.forward_during_pool_copy"),
        )?;
        validate_stretch(
            &[self.pool_copy_during_forward],
            &format!("{field}.pool_copy_during_forward"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Profile;

    #[test]
    fn old_profiles_load_without_it_and_new_ones_round_trip() {
        let p = Profile::example();
        assert!(p.models["bert-base"].pool_contention.is_none());
        let text = ron::ser::to_string_pretty(&p, Default::default()).unwrap();
        assert!(!text.contains("pool_contention"), "absent stays unwritten");
        let mut p = p;
        p.models.get_mut("bert-base").unwrap().pool_contention = Some(PoolCopyContention {
            forward_during_pool_copy: 1.25,
            pool_copy_during_forward: 1.5,
            tokens: 256,
            method: "test".into(),
        });
        let text = ron::ser::to_string_pretty(&p, Default::default()).unwrap();
        assert_eq!(Profile::from_ron(&text, "p.ron").unwrap(), p);
    }

    #[test]
    fn bad_factors_are_refused_naming_the_field() {
        let mut p = Profile::example();
        p.models.get_mut("bert-base").unwrap().pool_contention = Some(PoolCopyContention {
            forward_during_pool_copy: 1.1,
            pool_copy_during_forward: 0.0,
            tokens: 128,
            method: String::new(),
        });
        let err = p.validate("p.ron").unwrap_err().to_string();
        assert!(
            err.starts_with("p.ron: models.bert-base.pool_contention.pool_copy_during_forward"),
            "{err}"
        );
    }
}
