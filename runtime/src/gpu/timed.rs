//! Timing of the GPU forward pass: CUDA events around graph replays (device time), wall clock
//! around whole `forward` calls (inputs up, outputs down, synchronised), and events after
//! every step of one eager pass (the per-step profile of `ptm bench infer --profile`).

use super::cuda::cu;
use super::model::{pad_inputs, GpuModel};
use super::pet_steps::PetPass;
use super::{bucket, timing::Timing};
use crate::error::Result;
use crate::tokenize::Batch;
use cudarc::driver::sys as drv_sys;
use std::time::Instant;

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

    /// Runs one eager forward pass of `batch` with a CUDA event after every step and returns
    /// the device time per step name, summed over layers, in milliseconds (in order of first
    /// appearance).
    pub fn profile(&mut self, batch: &Batch) -> Result<Vec<(&'static str, f64)>> {
        self.forward(batch)?;
        let (bb, sb) = bucket(batch.batch, batch.seq, self.cfg.max_tokens());
        self.profile_pass(bb, sb, None)
    }

    /// One eager pass of bucket `(bb, sb)` on the inputs in the workspace (with the tenants'
    /// deltas of `pet`), a CUDA event after every step: device milliseconds per step name,
    /// summed over layers, in order of first appearance. What [`GpuModel::profile`] and a PET
    /// slot's step profile (`ptm bench pet --profile`) report.
    pub(super) fn profile_pass(
        &mut self,
        bb: usize,
        sb: usize,
        pet: Option<&PetPass<'_>>,
    ) -> Result<Vec<(&'static str, f64)>> {
        cu(self.gpu.ctx.bind_to_thread(), "bind context")?;
        self.ensure_workspace(bb, sb)?;
        self.ensure_pointer_arrays(bb, sb)?;
        let ctx = self.gpu.ctx.clone();
        let stream = self.gpu.stream.clone();
        let flags = Some(drv_sys::CUevent_flags::CU_EVENT_DEFAULT);
        let start = cu(ctx.new_event(flags), "cuEventCreate")?;
        cu(start.record(&stream), "cuEventRecord")?;
        let mut marks = Vec::new();
        self.enqueue_pass(bb, sb, pet, &mut |name| {
            let ev = cu(ctx.new_event(flags), "cuEventCreate")?;
            cu(ev.record(&stream), "cuEventRecord")?;
            marks.push((name, ev));
            Ok(())
        })?;
        cu(stream.synchronize(), "cuStreamSynchronize")?;
        let mut out: Vec<(&'static str, f64)> = Vec::new();
        let mut prev = &start;
        for (name, ev) in &marks {
            let ms = f64::from(cu(prev.elapsed_ms(ev), "cuEventElapsedTime")?);
            match out.iter_mut().find(|(n, _)| n == name) {
                Some((_, t)) => *t += ms,
                None => out.push((name, ms)),
            }
            prev = ev;
        }
        Ok(out)
    }
}
