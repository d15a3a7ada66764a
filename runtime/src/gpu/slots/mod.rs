//! GPU slots: per slot a fixed weight arena in the [`ArchLayout`], the model structure over it
//! (its own compute stream, cuBLAS handle, workspace and CUDA graphs), and a `ready` event.
//! A switch enqueues host→device copies of a tenant's pinned block in chunks of
//! [`CHUNK_BYTES`] on the set's one copy stream (after the slot's queued work, so weights in
//! use are never overwritten), records `ready`, and makes the slot's stream wait on it: the
//! call returns at once, the slot's next inference starts when its weights have arrived, and
//! other slots' streams never wait. Arena addresses never move, so every captured graph stays
//! valid for every tenant. A [`GpuSlot`] also stands alone: a live instance owns one and shares
//! the copy stream ([`copy_stream`]) and the host cache with the others, and runs a request's
//! passes back to back ([`GpuSlot::forward_many`]). Also here: the baselines (`fastptm`, `full`)
//! and timing helpers; `tiers.rs`: loads from and promotions into the GPU weight pool;
//! `cold.rs`: the cold path (a checkpoint read by several threads into pinned staging, copied
//! to the arena chunk by chunk while the reads go on).
//!
//! Every write into an arena (switch, pool load, cold load) first makes its stream wait for the
//! slot's queued inferences, the slot's previous write (`ready`) and a promotion still reading
//! the arena (`read_fence`): whichever streams the copies run on, they never overtake each
//! other or a pass that reads the weights.

use super::cuda::{cu, open_context, DevBuf};
use super::workspace::WorkspaceBytes;
use super::{GpuModel, KernelOptions};
use crate::bert::HeadOutput;
use crate::checkpoint::PackedWeights;
use crate::config::Config;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::switch::{ArchLayout, HostCache, TenantInfo};
use crate::tokenize::Batch;
use cudarc::driver::{result as drv, sys as drv_sys, CudaContext, CudaEvent, CudaStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

mod cold;
mod passes;
mod tiers;
pub use cold::COLD_CHUNK_BYTES;
pub use passes::Staged;

pub use super::budget::{SlotBudget, CHUNK_BYTES, HEADROOM_BYTES};

/// The slots of `arch` that fit on GPU `ordinal` for batches up to `max_batch × max_seq`.
pub fn slot_budget(
    ordinal: usize,
    arch: &ArchLayout,
    max_batch: usize,
    max_seq: usize,
) -> Result<SlotBudget> {
    let ctx = open_context(ordinal)?;
    let (free_bytes, _) = cu(ctx.mem_get_info(), "cuMemGetInfo")?;
    let cfg = arch.head_config()?;
    let (bb, sb) = super::bucket(max_batch, max_seq, cfg.max_tokens());
    let arena_bytes = arch.bytes();
    Ok(SlotBudget::new(
        free_bytes,
        arena_bytes,
        WorkspaceBytes::new(&cfg, arch.max_labels, bb, sb, arch.dtype).device_bytes(),
    ))
}

/// One slot: a model whose weight arena tenants are switched into. A [`SlotSet`] owns several
/// and their copy stream; a live instance owns one and shares the copy stream and host cache.
pub struct GpuSlot {
    arch: ArchLayout,
    model: GpuModel,
    tenant: Option<TenantInfo>,
    /// The last write into the arena: the slot's stream waits for it before running.
    ready: Arc<CudaEvent>,
    /// The last copy reading the arena (a promotion into the pool), if any: the next write
    /// waits for it.
    read_fence: Option<Arc<CudaEvent>>,
    /// Outputs of the passes of one [`GpuSlot::forward_many`] call, gathered on the device.
    outs: Option<DevBuf>,
}

/// The slots of one architecture on one GPU, with their copy stream.
pub struct SlotSet {
    ctx: Arc<CudaContext>,
    copy: Arc<CudaStream>,
    slots: Vec<GpuSlot>,
}

/// A recorded point on a stream, for timing.
pub type Event = CudaEvent;

/// Milliseconds between two recorded events.
pub fn event_ms(a: &Event, b: &Event) -> Result<f64> {
    cu(a.synchronize(), "cuEventSynchronize")?;
    cu(b.synchronize(), "cuEventSynchronize")?;
    Ok(f64::from(cu(a.elapsed_ms(b), "cuEventElapsedTime")?))
}

fn timing_event(ctx: &Arc<CudaContext>) -> Result<CudaEvent> {
    cu(
        ctx.new_event(Some(drv_sys::CUevent_flags::CU_EVENT_DEFAULT)),
        "cuEventCreate",
    )
}

/// A stream that switches' copies run on, shared by slots.
pub type CopyStream = Arc<CudaStream>;

/// A new copy stream on GPU `ordinal` (switches of every slot sharing it run in issue order).
pub fn copy_stream(ordinal: usize) -> Result<CopyStream> {
    let ctx = open_context(ordinal)?;
    cu(ctx.new_stream(), "cuStreamCreate (copy stream)")
}

impl GpuSlot {
    /// An empty slot of `arch` on GPU `ordinal` with activations reserved for batches up to
    /// `max_batch × max_seq` (no memory check: see [`slot_budget`]), running the kernels
    /// `options` choose.
    pub fn new(
        ordinal: usize,
        arch: &ArchLayout,
        max_batch: usize,
        max_seq: usize,
        options: KernelOptions,
    ) -> Result<Self> {
        let cfg = arch.head_config()?;
        let mut model = GpuModel::with_layout(&arch.layout, arch.dtype, &cfg, ordinal, options)?;
        model.reserve(max_batch, max_seq)?;
        let ready = Arc::new(cu(model.gpu.ctx.new_event(None), "cuEventCreate")?);
        Ok(GpuSlot {
            arch: arch.clone(),
            model,
            tenant: None,
            ready,
            read_fence: None,
            outs: None,
        })
    }

    /// The tenant it holds (or is switching to).
    pub fn tenant(&self) -> Option<&TenantInfo> {
        self.tenant.as_ref()
    }

    /// Its model (for timing replays).
    pub fn model_mut(&mut self) -> &mut GpuModel {
        &mut self.model
    }

    /// Switches to tenant `name` of `cache`: asynchronous copies of `chunk_bytes`
    /// (`usize::MAX`: one copy) on `copy`, after the slot's queued work; the slot's next work
    /// waits for them.
    pub fn switch(
        &mut self,
        copy: &CopyStream,
        cache: &mut HostCache,
        name: &str,
        chunk_bytes: usize,
    ) -> Result<()> {
        if cache.arch() != &self.arch {
            return Err(Error::Input(format!(
                "host cache layout does not match the slot's (switching in `{name}`)"
            )));
        }
        let (info, block) = cache.get(name)?;
        self.model.retarget(&info.cfg)?;
        cu(self.model.gpu.ctx.bind_to_thread(), "bind context")?;
        self.before_write(copy)?;
        let (arena, arena_bytes) = self.model.arena();
        let bytes = block.as_slice();
        if bytes.len() != arena_bytes {
            return Err(Error::Input(format!(
                "tenant `{name}` has {} bytes, the arena {arena_bytes}",
                bytes.len()
            )));
        }
        for (i, chunk) in bytes.chunks(chunk_bytes.max(1)).enumerate() {
            let dst = arena + (i * chunk_bytes) as u64;
            // SAFETY: dst..dst+len lies in the slot's arena (sizes checked above); the host
            // block stays alive and unwritten until `ready` completes (its fence).
            cu(
                unsafe { drv::memcpy_htod_async(dst, chunk, copy.cu_stream()) },
                "cuMemcpyHtoDAsync",
            )?;
        }
        // A new event: the old one may also fence a pool slot or a block.
        let ready = Arc::new(cu(
            self.model
                .gpu
                .ctx
                .new_event(Some(drv_sys::CUevent_flags::CU_EVENT_DISABLE_TIMING)),
            "cuEventCreate",
        )?);
        cu(ready.record(copy), "cuEventRecord")?;
        cu(self.model.stream().wait(&ready), "cuStreamWaitEvent")?;
        block.set_fence(ready.clone());
        self.ready = ready;
        self.tenant = Some(info.clone());
        Ok(())
    }

    /// Makes `stream` wait until the arena may be written: the slot's queued inferences are
    /// done (write after read), its previous write has landed (write after write) and no
    /// promotion reads it any more.
    fn before_write(&self, stream: &CudaStream) -> Result<()> {
        let busy = cu(self.model.stream().record_event(None), "cuEventRecord")?;
        cu(stream.wait(&busy), "cuStreamWaitEvent")?;
        cu(stream.wait(&self.ready), "cuStreamWaitEvent")?;
        if let Some(f) = &self.read_fence {
            cu(stream.wait(f), "cuStreamWaitEvent")?;
        }
        Ok(())
    }

    /// Blocks until the last switch or load has landed.
    pub fn wait(&self) -> Result<()> {
        cu(self.ready.synchronize(), "cuEventSynchronize")
    }

    /// Runs the tenant it holds on a batch.
    pub fn forward(&mut self, batch: &Batch) -> Result<HeadOutput> {
        self.holding()?;
        self.model.forward(batch)
    }

    fn holding(&self) -> Result<()> {
        match self.tenant {
            Some(_) => Ok(()),
            None => Err(Error::Input("the slot holds no tenant yet".into())),
        }
    }

    /// Reads tenant `name` from its checkpoint in `dir` (pageable memory, one thread) and
    /// copies every tensor into the arena with synchronous copies; returns when the weights are
    /// on the device. FastPTM's split-mode switch (a baseline: a live instance's cold load is
    /// [`GpuSlot::load_file`]).
    pub fn load_file_fastptm(&mut self, name: &str, dir: &Path) -> Result<()> {
        let cfg = Config::from_file(&dir.join("config.json"))?;
        self.arch.check_tenant(name, &cfg)?;
        let w = PackedWeights::from_file(&dir.join("model.safetensors"), &cfg, self.arch.dtype)?;
        let offsets = w
            .layout
            .entries()
            .iter()
            .map(|e| self.arch.byte_offset(&e.name))
            .collect::<Result<Vec<_>>>()?;
        self.tenant = None;
        self.model.retarget(&cfg)?;
        self.model.synchronize()?;
        // A promotion may still read the arena, an asynchronous switch still write it.
        self.wait()?;
        if let Some(f) = self.read_fence.take() {
            cu(f.synchronize(), "cuEventSynchronize")?;
        }
        let (arena, _) = self.model.arena();
        for (e, at) in w.layout.entries().iter().zip(offsets) {
            // SAFETY: the tensor lies inside the arena (offsets of the same layout).
            cu(
                unsafe { drv::memcpy_htod_sync(arena + at as u64, w.tensor_bytes(e)) },
                "cuMemcpyHtoD",
            )?;
        }
        self.tenant = Some(TenantInfo {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            cfg,
        });
        Ok(())
    }
}

impl Drop for GpuSlot {
    fn drop(&mut self) {
        // Copies in flight read or write the arena: let them finish before it is freed.
        let _ = self.model.gpu.ctx.bind_to_thread();
        let _ = self.ready.synchronize();
        if let Some(f) = &self.read_fence {
            let _ = f.synchronize();
        }
    }
}

impl SlotSet {
    /// Makes `count` slots of `arch` on GPU `ordinal`, each with activations reserved for
    /// batches up to `max_batch × max_seq` and running the kernels `options` choose; refuses
    /// when they do not fit in free memory.
    pub fn new(
        ordinal: usize,
        arch: &ArchLayout,
        count: usize,
        max_batch: usize,
        max_seq: usize,
        options: KernelOptions,
    ) -> Result<Self> {
        check_fit(ordinal, arch, count, max_batch, max_seq)?;
        let slots = (0..count)
            .map(|_| GpuSlot::new(ordinal, arch, max_batch, max_seq, options))
            .collect::<Result<Vec<_>>>()?;
        let ctx = open_context(ordinal)?;
        let copy = copy_stream(ordinal)?;
        Ok(SlotSet { ctx, copy, slots })
    }

    /// Number of slots.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether there are no slots.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    fn slot(&mut self, slot: usize) -> Result<&mut GpuSlot> {
        let n = self.slots.len();
        self.slots
            .get_mut(slot)
            .ok_or_else(|| Error::Input(format!("slot {slot} does not exist (there are {n})")))
    }

    /// The tenant slot `slot` holds (or is switching to).
    pub fn tenant(&self, slot: usize) -> Option<&TenantInfo> {
        self.slots.get(slot).and_then(GpuSlot::tenant)
    }

    /// The model of slot `slot` (for timing replays).
    pub fn model_mut(&mut self, slot: usize) -> Result<&mut GpuModel> {
        Ok(self.slot(slot)?.model_mut())
    }

    /// The copy stream.
    pub fn copy_stream(&self) -> &Arc<CudaStream> {
        &self.copy
    }

    /// Records a timing event on the copy stream.
    pub fn copy_event(&self) -> Result<Event> {
        let e = timing_event(&self.ctx)?;
        cu(e.record(&self.copy), "cuEventRecord")?;
        Ok(e)
    }

    /// Switches slot `slot` to tenant `name` of `cache`: asynchronous copies of
    /// [`CHUNK_BYTES`] on the copy stream; the slot's next work waits for them.
    pub fn switch(&mut self, slot: usize, cache: &mut HostCache, name: &str) -> Result<()> {
        self.switch_chunked(slot, cache, name, CHUNK_BYTES)
    }

    /// [`SlotSet::switch`] with copies of `chunk_bytes` (`usize::MAX`: one copy).
    pub fn switch_chunked(
        &mut self,
        slot: usize,
        cache: &mut HostCache,
        name: &str,
        chunk_bytes: usize,
    ) -> Result<()> {
        let copy = self.copy.clone();
        self.slot(slot)?.switch(&copy, cache, name, chunk_bytes)
    }

    /// Blocks until slot `slot`'s last switch has landed.
    pub fn wait(&self, slot: usize) -> Result<()> {
        self.slots
            .get(slot)
            .ok_or_else(|| Error::Input(format!("slot {slot} does not exist")))?
            .wait()
    }

    /// Runs slot `slot`'s tenant on a batch.
    pub fn forward(&mut self, slot: usize, batch: &Batch) -> Result<HeadOutput> {
        let s = self.slot(slot)?;
        if s.tenant.is_none() {
            return Err(Error::Input(format!("slot {slot} holds no tenant yet")));
        }
        s.forward(batch)
    }

    /// Times one switch: wall milliseconds (enqueue to landed) and device milliseconds (CUDA
    /// events on the copy stream), with `chunk_bytes` per copy.
    pub fn time_switch(
        &mut self,
        slot: usize,
        cache: &mut HostCache,
        name: &str,
        chunk_bytes: usize,
    ) -> Result<(f64, f64)> {
        self.wait(slot)?;
        cu(self.copy.synchronize(), "cuStreamSynchronize")?;
        let t = Instant::now();
        let e0 = self.copy_event()?;
        self.switch_chunked(slot, cache, name, chunk_bytes)?;
        let e1 = self.copy_event()?;
        cu(e1.synchronize(), "cuEventSynchronize")?;
        let wall = t.elapsed().as_secs_f64() * 1e3;
        Ok((wall, event_ms(&e0, &e1)?))
    }

    /// FastPTM's split mode as a baseline: re-reads the tenant's safetensors file into
    /// pageable memory and copies every tensor in place (synchronous copies). Returns when
    /// the weights are on the device.
    pub fn switch_fastptm(&mut self, slot: usize, name: &str, dir: &Path) -> Result<()> {
        self.slot(slot)?.load_file_fastptm(name, dir)
    }

    /// Enqueues `iters` graph replays of bucket `(bb, sb)` on slot `slot` (inputs already in
    /// its workspace), between two recorded timing events.
    pub fn replay(
        &mut self,
        slot: usize,
        (bb, sb): (usize, usize),
        iters: usize,
    ) -> Result<(Event, Event)> {
        let ctx = self.ctx.clone();
        let m = self.slot(slot)?.model_mut();
        let e0 = timing_event(&ctx)?;
        cu(e0.record(m.stream()), "cuEventRecord")?;
        for _ in 0..iters {
            m.run_bucket(bb, sb)?;
        }
        let e1 = timing_event(&ctx)?;
        cu(e1.record(m.stream()), "cuEventRecord")?;
        Ok((e0, e1))
    }
}

impl Drop for SlotSet {
    fn drop(&mut self) {
        let _ = self.ctx.bind_to_thread();
        let _ = self.copy.synchronize();
    }
}

/// Refuses `count` slots of `arch` on GPU `ordinal` when they do not fit in its free memory.
pub fn check_fit(
    ordinal: usize,
    arch: &ArchLayout,
    count: usize,
    max_batch: usize,
    max_seq: usize,
) -> Result<SlotBudget> {
    let budget = slot_budget(ordinal, arch, max_batch, max_seq)?;
    if count > budget.fit {
        return Err(Error::SlotsDoNotFit {
            device: format!("cuda:{ordinal}"),
            requested: count,
            fit: budget.fit,
            free_bytes: budget.free_bytes,
            per_slot_bytes: budget.per_slot_bytes,
            arena_bytes: budget.arena_bytes,
        });
    }
    Ok(budget)
}

/// The `full` baseline: reads the safetensors file, builds a new model (context, kernels,
/// cuBLAS handle, arena) and uploads the weights tensor by tensor (synchronous copies).
pub fn load_full(
    dir: &Path,
    dtype: DType,
    ordinal: usize,
    options: KernelOptions,
) -> Result<GpuModel> {
    let cfg = Config::from_file(&dir.join("config.json"))?;
    let w = PackedWeights::from_file(&dir.join("model.safetensors"), &cfg, dtype)?;
    let m = GpuModel::with_layout(&w.layout, dtype, &cfg, ordinal, options)?;
    let (arena, _) = m.arena();
    cu(m.gpu.ctx.bind_to_thread(), "bind context")?;
    for e in w.layout.entries() {
        let at = (e.offset * dtype.size_bytes()) as u64;
        // SAFETY: the tensor lies inside the arena allocated for this layout.
        cu(
            unsafe { drv::memcpy_htod_sync(arena + at, w.tensor_bytes(e)) },
            "cuMemcpyHtoD",
        )?;
    }
    Ok(m)
}
