//! Times of the GPU forward pass, in milliseconds: per-iteration samples and their median.
//! (Measured by `GpuModel::time_forward` and `GpuModel::profile` in `timed.rs`.)

/// Per-iteration times of one batch, in milliseconds.
#[derive(Debug, Clone, Default)]
pub struct Timing {
    /// Device time of the forward pass (CUDA events around one replay or eager enqueue).
    pub device_ms: Vec<f64>,
    /// Wall time of `forward` (copies and synchronisation included).
    pub call_ms: Vec<f64>,
}

/// The median of `v` (0 when empty).
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        0.0
    } else {
        s[s.len() / 2]
    }
}
