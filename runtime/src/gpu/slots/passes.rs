//! A request's passes on a slot, back to back: inputs staged on the slot's stream, each pass's
//! CUDA graph replayed, its outputs gathered in a device buffer, one synchronisation at the end
//! — what a live instance runs per request and what `ptm calibrate` times as a forward pass.

use super::{event_ms, timing_event, GpuSlot, SlotSet};
use crate::bert::HeadOutput;
use crate::error::{Error, Result};
use crate::gpu::cuda::{cu, DevBuf};
use crate::tokenize::Batch;
use cudarc::driver::result as drv;

/// Passes enqueued by [`GpuSlot::enqueue_passes`], until [`GpuSlot::finish`].
pub struct Staged {
    /// Per pass: (batch bucket, sequence bucket, first output float, output floats).
    plan: Vec<(usize, usize, usize, usize)>,
    total: usize,
    /// Host inputs of the queued copies: alive until the stream has read them.
    inputs: Vec<(Vec<i32>, Vec<i32>, Vec<i32>)>,
}

impl GpuSlot {
    /// Runs the tenant it holds on several batches enqueued back to back (inputs staged on the
    /// stream, each pass's outputs gathered on the device), synchronising once at the end:
    /// what a request of several passes costs, without a host round trip between passes.
    /// Outputs equal [`GpuSlot::forward`]'s, batch by batch.
    pub fn forward_many(&mut self, batches: &[Batch]) -> Result<Vec<HeadOutput>> {
        let staged = self.enqueue_passes(batches)?;
        self.finish(staged, batches)
    }

    /// The first half of [`GpuSlot::forward_many`]: enqueues the passes on the slot's stream
    /// and returns at once (for timing with events, or to overlap several slots). Inputs come
    /// from pageable memory, which the driver stages before the call returns; `Staged` keeps
    /// them alive until [`GpuSlot::finish`] all the same.
    pub fn enqueue_passes(&mut self, batches: &[Batch]) -> Result<Staged> {
        self.holding()?;
        let m = &mut self.model;
        cu(m.gpu.ctx.bind_to_thread(), "bind context")?;
        let max_tokens = m.cfg.max_tokens();
        let mut plan = Vec::with_capacity(batches.len());
        let (mut bmax, mut smax, mut total) = (0, 0, 0);
        for b in batches {
            b.check(&m.cfg)?;
            let (bb, sb) = crate::gpu::bucket(b.batch, b.seq, max_tokens);
            let floats = m.out_floats(b, bb, sb);
            plan.push((bb, sb, total, floats));
            (bmax, smax, total) = (bmax.max(bb), smax.max(sb), total + floats);
        }
        let mut staged = Staged {
            plan,
            total,
            inputs: Vec::with_capacity(batches.len()),
        };
        if batches.is_empty() {
            return Ok(staged);
        }
        // Grow the workspace first: growing mid-way would move buffers under queued passes.
        m.ensure_workspace(bmax, smax)?;
        if self.outs.as_ref().is_none_or(|o| o.bytes < total * 4) {
            m.synchronize()?;
            self.outs = Some(DevBuf::new(&m.gpu.ctx, total * 4)?);
        }
        let outs = self.outs.as_ref().map_or(0, |o| o.ptr);
        for (b, &(bb, sb, at, floats)) in batches.iter().zip(&staged.plan) {
            // The host inputs stay alive (in `staged`) until `finish` synchronises.
            staged.inputs.push(m.stage(b, bb, sb)?);
            m.run_bucket(bb, sb)?;
            let out =
                m.ws.as_ref()
                    .ok_or_else(|| Error::Cuda("no workspace".into()))?
                    .out
                    .ptr;
            // SAFETY: `out` holds this pass's `floats` results; `outs` has room for all passes.
            cu(
                unsafe {
                    drv::memcpy_dtod_async(
                        outs + (at * 4) as u64,
                        out,
                        floats * 4,
                        m.stream().cu_stream(),
                    )
                },
                "cuMemcpyDtoDAsync",
            )?;
        }
        Ok(staged)
    }

    /// The second half of [`GpuSlot::forward_many`]: waits for the passes of `staged`
    /// (enqueued for `batches`) and returns their outputs.
    pub fn finish(&mut self, staged: Staged, batches: &[Batch]) -> Result<Vec<HeadOutput>> {
        if batches.is_empty() {
            return Ok(Vec::new());
        }
        let m = &self.model;
        let outs = self
            .outs
            .as_ref()
            .ok_or_else(|| Error::Cuda("no output buffer".into()))?
            .ptr;
        let all = m.gpu.download_f32(outs, staged.total)?;
        let results = batches
            .iter()
            .zip(&staged.plan)
            .map(|(b, &(_, sb, at, floats))| m.head_output(b, sb, &all[at..at + floats]))
            .collect();
        Ok(results)
    }
}

impl SlotSet {
    /// Enqueues `batches` as staged passes ([`GpuSlot::enqueue_passes`]) on slots `0..k` at
    /// once, each between two timing events on its stream; returns each slot's device
    /// milliseconds for all its passes, once all have finished.
    pub fn time_passes(&mut self, k: usize, batches: &[Batch]) -> Result<Vec<f64>> {
        let ctx = self.ctx.clone();
        let mut queued = Vec::with_capacity(k);
        for i in 0..k {
            let slot = self.slot(i)?;
            let e0 = timing_event(&ctx)?;
            cu(e0.record(slot.model.stream()), "cuEventRecord")?;
            let staged = slot.enqueue_passes(batches)?;
            let e1 = timing_event(&ctx)?;
            cu(e1.record(slot.model.stream()), "cuEventRecord")?;
            queued.push((e0, e1, staged));
        }
        let mut out = Vec::with_capacity(k);
        for (i, (e0, e1, staged)) in queued.into_iter().enumerate() {
            self.slot(i)?.finish(staged, batches)?;
            out.push(event_ms(&e0, &e1)?);
        }
        Ok(out)
    }
}
