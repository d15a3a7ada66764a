//! Tier 1 on a GPU: the weight pool, numbered slots of device memory each holding one tenant's
//! packed weights in the [`ArchLayout`], shared by the executors (slots) of one device.
//!
//! Allocated once ([`GpuPool::new`]; [`pool_budget`] says how many fit beside the executors'
//! arenas and workspaces). Loads out of the pool (pool slot → an executor's arena) and
//! promotions into it (an arena → pool slot) are device-to-device copies on the pool's own
//! stream, so they never queue behind host→device copies on the copy stream; prefetches (host
//! cache → pool slot) are host→device copies on the copy stream. Each pool slot remembers the
//! event of the last copy that touched it (its *fence*): a copy into or out of the slot first
//! makes its stream wait for the fence, so a load from a slot is ordered after the promotion or
//! prefetch that filled it and a write never overtakes a read, whatever the streams. The
//! executor's side of the ordering (its queued inferences, an earlier write into its arena, a
//! promotion still reading it) is [`super::slots::GpuSlot`]'s.
//!
//! The CPU twin is [`crate::switch::CpuPool`].

use super::cuda::{cu, open_context, DevBuf};
use super::slots::{slot_budget, CopyStream, CHUNK_BYTES};
use crate::error::{Error, Result};
use crate::gpu::budget::PoolBudget;
use crate::switch::cache::Block;
use crate::switch::{ArchLayout, TenantInfo};
use cudarc::driver::{result as drv, sys as drv_sys, CudaContext, CudaEvent, CudaStream};
use std::sync::Arc;
use std::time::Instant;

/// Which way a copy between a pool slot and an arena goes (the arena's device address).
#[derive(Debug, Clone, Copy)]
enum Direction {
    /// Slot → arena (a load from the pool).
    Out(u64),
    /// Arena → slot (a promotion).
    In(u64),
}

/// One pool slot.
struct PoolSlot {
    buf: DevBuf,
    tenant: Option<TenantInfo>,
    /// The last copy into or out of the slot.
    fence: Option<Arc<CudaEvent>>,
}

/// The weight pool of one GPU.
pub struct GpuPool {
    ctx: Arc<CudaContext>,
    arch: ArchLayout,
    stream: Arc<CudaStream>,
    slots: Vec<PoolSlot>,
}

/// A prefetch's copies, until they have landed.
pub struct Landed(Arc<CudaEvent>);

impl Landed {
    /// Blocks until the copies have landed.
    pub fn wait(&self) -> Result<()> {
        cu(self.0.synchronize(), "cuEventSynchronize")
    }
}

/// How many pool slots of `arch` fit on GPU `ordinal` beside `executors` slots running passes
/// of up to `max_batch × max_seq`.
pub fn pool_budget(
    ordinal: usize,
    arch: &ArchLayout,
    executors: usize,
    max_batch: usize,
    max_seq: usize,
) -> Result<PoolBudget> {
    Ok(PoolBudget::new(
        slot_budget(ordinal, arch, max_batch, max_seq)?,
        executors,
    ))
}

/// A new event for ordering (no timing).
fn fence_event(ctx: &Arc<CudaContext>) -> Result<Arc<CudaEvent>> {
    Ok(Arc::new(cu(
        ctx.new_event(Some(drv_sys::CUevent_flags::CU_EVENT_DISABLE_TIMING)),
        "cuEventCreate",
    )?))
}

impl GpuPool {
    /// `slots` empty pool slots for tenants of `arch` on GPU `ordinal`, allocated now (no
    /// memory check: see [`pool_budget`]).
    pub fn new(ordinal: usize, arch: &ArchLayout, slots: usize) -> Result<Self> {
        let ctx = open_context(ordinal)?;
        let stream = cu(ctx.new_stream(), "cuStreamCreate (pool stream)")?;
        let slots = (0..slots)
            .map(|_| {
                Ok(PoolSlot {
                    buf: DevBuf::new(&ctx, arch.bytes())?,
                    tenant: None,
                    fence: None,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(GpuPool {
            ctx,
            arch: arch.clone(),
            stream,
            slots,
        })
    }

    /// Slots in the pool.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the pool has no slots.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The layout of every slot.
    pub fn arch(&self) -> &ArchLayout {
        &self.arch
    }

    /// The stream pool loads and promotions run on.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    fn slot(&self, slot: u32) -> Result<&PoolSlot> {
        self.slots.get(slot as usize).ok_or_else(|| {
            Error::Input(format!(
                "pool slot {slot} out of range (the pool has {})",
                self.slots.len()
            ))
        })
    }

    fn slot_mut(&mut self, slot: u32) -> Result<&mut PoolSlot> {
        let n = self.slots.len();
        self.slots.get_mut(slot as usize).ok_or_else(|| {
            Error::Input(format!("pool slot {slot} out of range (the pool has {n})"))
        })
    }

    /// The tenant in `slot` (the last one written there, its copy possibly still in flight:
    /// copies out of the slot are ordered after it).
    pub fn tenant(&self, slot: u32) -> Result<&TenantInfo> {
        self.slot(slot)?
            .tenant
            .as_ref()
            .ok_or_else(|| Error::Input(format!("pool slot {slot} is empty")))
    }

    fn check_bytes(&self, bytes: usize, what: &str) -> Result<()> {
        if bytes == self.arch.bytes() {
            Ok(())
        } else {
            Err(Error::Input(format!(
                "{what}: {bytes} bytes where a pool slot holds {}",
                self.arch.bytes()
            )))
        }
    }

    /// Enqueues the copy of `slot` (which must hold `name`) into `dst` (`bytes` of device
    /// memory) on the pool stream, after the slot's fence and whatever the caller made the
    /// stream wait for; returns the tenant and the copy's completion.
    pub fn copy_out(
        &mut self,
        slot: u32,
        name: &str,
        dst: u64,
        bytes: usize,
    ) -> Result<(TenantInfo, Arc<CudaEvent>)> {
        self.check_bytes(bytes, "loading from the pool")?;
        let info = self.tenant(slot)?.clone();
        if info.name != name {
            return Err(Error::Input(format!(
                "pool slot {slot} holds `{}`, not `{name}`",
                info.name
            )));
        }
        let done = self.fenced_copy(slot, Direction::Out(dst), bytes)?;
        Ok((info, done))
    }

    /// Enqueues the copy of `info`'s packed weights at `src` (`bytes` of device memory, an
    /// arena) into `slot` on the pool stream, after the slot's fence and whatever the caller
    /// made the stream wait for (the arena's last write); returns its completion. The slot
    /// holds `info` from now on (evicting whoever was there).
    pub fn copy_in(
        &mut self,
        slot: u32,
        info: &TenantInfo,
        src: u64,
        bytes: usize,
    ) -> Result<Arc<CudaEvent>> {
        self.check_bytes(bytes, "promoting into the pool")?;
        let done = self.fenced_copy(slot, Direction::In(src), bytes)?;
        self.slot_mut(slot)?.tenant = Some(info.clone());
        Ok(done)
    }

    /// Enqueues a device-to-device copy of `bytes` between `slot` and an arena on the pool
    /// stream, after the slot's fence, and makes its completion the slot's new fence.
    fn fenced_copy(&mut self, slot: u32, dir: Direction, bytes: usize) -> Result<Arc<CudaEvent>> {
        let done = fence_event(&self.ctx)?;
        let (stream, ctx) = (self.stream.clone(), self.ctx.clone());
        let s = self.slot_mut(slot)?;
        cu(ctx.bind_to_thread(), "bind context")?;
        if let Some(f) = &s.fence {
            cu(stream.wait(f), "cuStreamWaitEvent")?;
        }
        let (dst, src, what) = match dir {
            Direction::Out(arena) => (arena, s.buf.ptr, "cuMemcpyDtoDAsync (pool → arena)"),
            Direction::In(arena) => (s.buf.ptr, arena, "cuMemcpyDtoDAsync (arena → pool)"),
        };
        // SAFETY: both ranges are `bytes` long (checked by the callers) and live device
        // allocations; the fences order this copy after the slot's last use.
        cu(
            unsafe { drv::memcpy_dtod_async(dst, src, bytes, stream.cu_stream()) },
            what,
        )?;
        cu(done.record(&stream), "cuEventRecord")?;
        s.fence = Some(done.clone());
        Ok(done)
    }

    /// Enqueues the copy of `info`'s pinned host `block` into `slot` (a prefetch): chunked
    /// host→device copies on `copy`, after the slot's fence; returns their completion (which
    /// also fences the block). The slot holds `info` from now on.
    pub fn put_from_host(
        &mut self,
        slot: u32,
        info: &TenantInfo,
        block: &mut Block,
        copy: &CopyStream,
    ) -> Result<Landed> {
        let bytes = block.as_slice();
        self.check_bytes(bytes.len(), "prefetching into the pool")?;
        let done = fence_event(&self.ctx)?;
        let ctx = self.ctx.clone();
        let s = self.slot_mut(slot)?;
        cu(ctx.bind_to_thread(), "bind context")?;
        if let Some(f) = &s.fence {
            cu(copy.wait(f), "cuStreamWaitEvent")?;
        }
        for (i, chunk) in bytes.chunks(CHUNK_BYTES).enumerate() {
            // SAFETY: the chunk lies in the slot (sizes checked above); the pinned block stays
            // alive and unwritten until `done` completes (its fence, set below).
            cu(
                unsafe {
                    drv::memcpy_htod_async(
                        s.buf.ptr + (i * CHUNK_BYTES) as u64,
                        chunk,
                        copy.cu_stream(),
                    )
                },
                "cuMemcpyHtoDAsync (host → pool)",
            )?;
        }
        cu(done.record(copy), "cuEventRecord")?;
        s.fence = Some(done.clone());
        s.tenant = Some(info.clone());
        block.set_fence(done.clone());
        Ok(Landed(done))
    }

    /// The floor of a load from the pool, for benchmarks: `iters` device-to-device copies of
    /// `slot` into a scratch buffer of the same size on the pool stream, each timed on its own
    /// (wall milliseconds from enqueue to landed, device milliseconds between CUDA events).
    pub fn time_copy_floor(&mut self, slot: u32, iters: usize) -> Result<Vec<(f64, f64)>> {
        let scratch = DevBuf::new(&self.ctx, self.arch.bytes())?;
        let src = self.slot(slot)?.buf.ptr;
        cu(self.stream.synchronize(), "cuStreamSynchronize")?;
        let timing = || {
            cu(
                self.ctx
                    .new_event(Some(drv_sys::CUevent_flags::CU_EVENT_DEFAULT)),
                "cuEventCreate",
            )
        };
        let mut out = Vec::with_capacity(iters);
        for _ in 0..iters {
            let (e0, e1) = (timing()?, timing()?);
            let t = Instant::now();
            cu(e0.record(&self.stream), "cuEventRecord")?;
            // SAFETY: both buffers hold `arch.bytes()` bytes; the scratch buffer is ours.
            cu(
                unsafe {
                    drv::memcpy_dtod_async(
                        scratch.ptr,
                        src,
                        self.arch.bytes(),
                        self.stream.cu_stream(),
                    )
                },
                "cuMemcpyDtoDAsync (floor)",
            )?;
            cu(e1.record(&self.stream), "cuEventRecord")?;
            cu(e1.synchronize(), "cuEventSynchronize")?;
            let wall = t.elapsed().as_secs_f64() * 1e3;
            out.push((
                wall,
                f64::from(cu(e0.elapsed_ms(&e1), "cuEventElapsedTime")?),
            ));
        }
        Ok(out)
    }

    /// A timing event recorded on the pool stream now.
    pub fn event(&self) -> Result<CudaEvent> {
        let e = cu(
            self.ctx
                .new_event(Some(drv_sys::CUevent_flags::CU_EVENT_DEFAULT)),
            "cuEventCreate",
        )?;
        cu(e.record(&self.stream), "cuEventRecord")?;
        Ok(e)
    }
}

impl Drop for GpuPool {
    fn drop(&mut self) {
        // Copies in flight read or write the slots: let them finish before the memory goes.
        let _ = self.ctx.bind_to_thread();
        let _ = self.stream.synchronize();
        for s in &self.slots {
            if let Some(f) = &s.fence {
                let _ = f.synchronize();
            }
        }
    }
}
