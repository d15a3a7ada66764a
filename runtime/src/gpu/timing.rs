//! Timing of the GPU forward pass: CUDA events around graph replays (device time) and wall
//! clock around whole `forward` calls (inputs up, outputs down, synchronised).

use super::{bucket, cuda::cu, pad_inputs, GpuModel};
use crate::error::Result;
use crate::tokenize::Batch;
use std::time::Instant;

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

impl GpuModel {
    /// Times `iters` forward passes of `batch` after `warmup` untimed ones.
    pub fn time_forward(&mut self, batch: &Batch, warmup: usize, iters: usize) -> Result<Timing> {
        for _ in 0..warmup {
            self.forward(batch)?;
        }
        let mut t = Timing::default();
        for _ in 0..iters {
            let start = Instant::now();
            self.forward(batch)?;
            t.call_ms.push(start.elapsed().as_secs_f64() * 1e3);
        }
        // Device time: inputs stay in the workspace; events bracket the replay alone.
        let (bb, sb) = bucket(batch.batch, batch.seq, self.cfg.max_tokens());
        let (ids, types, mask) = pad_inputs(batch, bb, sb, self.cfg.pad_token_id);
        if let Some(ws) = &self.ws {
            self.gpu.upload_async(ws.ids.ptr, &ids)?;
            self.gpu.upload_async(ws.types.ptr, &types)?;
            self.gpu.upload_async(ws.mask.ptr, &mask)?;
        }
        let ctx = self.gpu.ctx.clone();
        let timing = Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT);
        let e0 = cu(ctx.new_event(timing), "cuEventCreate")?;
        let e1 = cu(ctx.new_event(timing), "cuEventCreate")?;
        for _ in 0..iters {
            cu(e0.record(&self.gpu.stream), "cuEventRecord")?;
            self.run_bucket(bb, sb)?;
            cu(e1.record(&self.gpu.stream), "cuEventRecord")?;
            cu(e1.synchronize(), "cuEventSynchronize")?;
            t.device_ms
                .push(f64::from(cu(e0.elapsed_ms(&e1), "cuEventElapsedTime")?));
        }
        Ok(t)
    }
}
