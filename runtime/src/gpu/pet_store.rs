//! Where a GPU PET slot's blocks live: the **adapter pool** (one device allocation of
//! `gpu_slots × slot_bytes`), the **host tier** (one pinned allocation of `host_slots ×
//! slot_bytes`), and the copies between them on the slot's copy stream.
//!
//! A load into the pool is recorded as pending; [`GpuStore::flush`] enqueues every pending
//! load's copies **stage by stage** (the embeddings' part of every block, then layer 0's of
//! every block, …, then the heads') after the compute stream's queued work, recording stage
//! event `s` after the stage-`s` copies: a pass that follows waits for event `s` only before
//! its first kernel reading stage `s`, so the copies run under the backbone's earlier layers.
//! A host slot is rewritten only once no copy reads it (the store tracks the slots read since
//! the copy stream was last synchronised).

use super::cuda::{cu, DevBuf, PinnedBuf};
use crate::error::{Error, Result};
use crate::pet::block::BlockLayout;
use crate::pet::slot::{Src, Store};
use cudarc::driver::{result as drv, sys as drv_sys, CudaContext, CudaEvent, CudaStream};
use std::collections::BTreeSet;
use std::ops::Range;
use std::sync::Arc;

/// A load waiting to be enqueued.
struct Pending {
    slot: u32,
    src: Src,
    stages: Vec<Range<usize>>,
}

/// The pool, the host tier and their copies.
pub(super) struct GpuStore {
    copy: Arc<CudaStream>,
    compute: Arc<CudaStream>,
    pub(super) pool: DevBuf,
    host: Option<PinnedBuf>,
    slot_bytes: usize,
    /// Per stage: its copies of the last flush have completed.
    pub(super) events: Vec<CudaEvent>,
    pending: Vec<Pending>,
    /// Host slots read by copies enqueued since the copy stream was last synchronised.
    reading: BTreeSet<u32>,
    /// Copies were enqueued and not yet waited for.
    pub(super) in_flight: bool,
}

impl GpuStore {
    /// A pool of `gpu_slots` and a pinned host tier of `host_slots` slots of `slot_bytes`, on
    /// `ctx`; copies on a new stream, after the work of `compute`; `stages` copy events.
    pub(super) fn new(
        ctx: &Arc<CudaContext>,
        ordinal: usize,
        compute: &Arc<CudaStream>,
        (gpu_slots, host_slots, slot_bytes): (usize, usize, usize),
        stages: usize,
    ) -> Result<Self> {
        let pool_bytes = gpu_slots
            .checked_mul(slot_bytes)
            .ok_or_else(|| Error::Input("the adapter pool's size overflows".into()))?;
        let (free, _) = cu(ctx.mem_get_info(), "cuMemGetInfo")?;
        if pool_bytes > free.saturating_sub(super::budget::HEADROOM_BYTES) {
            return Err(Error::Input(format!(
                "an adapter pool of {gpu_slots} slots × {slot_bytes} bytes = {pool_bytes} bytes does not fit: {free} bytes free on cuda:{ordinal} ({} kept free)",
                super::budget::HEADROOM_BYTES
            )));
        }
        let pool = DevBuf::new(ctx, pool_bytes)?;
        let host = if host_slots > 0 {
            let bytes = host_slots
                .checked_mul(slot_bytes)
                .ok_or_else(|| Error::Input("the host tier's size overflows".into()))?;
            Some(PinnedBuf::new(ordinal, bytes)?)
        } else {
            None
        };
        let flags = Some(drv_sys::CUevent_flags::CU_EVENT_DISABLE_TIMING);
        let events = (0..stages)
            .map(|_| cu(ctx.new_event(flags), "cuEventCreate"))
            .collect::<Result<Vec<_>>>()?;
        Ok(GpuStore {
            copy: cu(ctx.new_stream(), "cuStreamCreate (PET copies)")?,
            compute: compute.clone(),
            pool,
            host,
            slot_bytes,
            events,
            pending: Vec::new(),
            reading: BTreeSet::new(),
            in_flight: false,
        })
    }

    /// The device address of pool slot `slot`.
    pub(super) fn slot_addr(&self, slot: u32) -> u64 {
        self.pool.ptr + slot as u64 * self.slot_bytes as u64
    }

    fn host_range(&self, slot: u32, r: &Range<usize>) -> Result<&[u8]> {
        let h = self
            .host
            .as_ref()
            .ok_or_else(|| Error::Input("this PET slot has no host tier".into()))?;
        let at = slot as usize * self.slot_bytes;
        h.as_slice()
            .get(at + r.start..at + r.end)
            .ok_or_else(|| Error::Input(format!("host slot {slot} does not hold {r:?}")))
    }

    /// Enqueues every pending load's copies, stage by stage (see the module docs); whether
    /// there were any.
    pub(super) fn flush(&mut self) -> Result<bool> {
        if self.pending.is_empty() {
            return Ok(false);
        }
        // Write after read: a pool slot may be evicted from under the last pass.
        let busy = cu(self.compute.record_event(None), "cuEventRecord")?;
        cu(self.copy.wait(&busy), "cuStreamWaitEvent")?;
        for (s, ev) in self.events.iter().enumerate() {
            for p in &self.pending {
                let Some(r) = p.stages.get(s).filter(|r| !r.is_empty()) else {
                    continue;
                };
                let src: &[u8] = match &p.src {
                    Src::Host(h) => self.host_range(*h, r)?,
                    Src::Bytes(b) => b
                        .get(r.clone())
                        .ok_or_else(|| Error::Input(format!("a block lacks bytes {r:?}")))?,
                };
                let dst = self.slot_addr(p.slot) + r.start as u64;
                // SAFETY: dst..dst+len lies in pool slot `p.slot` (blocks are at most
                // slot_bytes, checked when registered); the source is pinned host memory that is
                // not rewritten until the copy stream is synchronised (`reading`), or pageable
                // bytes, which the driver stages before returning.
                cu(
                    unsafe { drv::memcpy_htod_async(dst, src, self.copy.cu_stream()) },
                    "cuMemcpyHtoDAsync (PET block)",
                )?;
            }
            cu(ev.record(&self.copy), "cuEventRecord")?;
        }
        self.pending.clear();
        self.in_flight = true;
        Ok(true)
    }

    /// Enqueues pending loads and waits until every copy has landed.
    pub(super) fn sync(&mut self) -> Result<()> {
        self.flush()?;
        cu(self.copy.synchronize(), "cuStreamSynchronize (PET copies)")?;
        self.reading.clear();
        self.in_flight = false;
        Ok(())
    }
}

impl Store for GpuStore {
    fn write_host(&mut self, slot: u32, bytes: &[u8]) -> Result<()> {
        let reads = self.reading.contains(&slot)
            || self
                .pending
                .iter()
                .any(|p| matches!(p.src, Src::Host(h) if h == slot));
        if reads {
            self.sync()?;
        }
        let at = slot as usize * self.slot_bytes;
        let n = bytes.len();
        if n > self.slot_bytes {
            return Err(Error::Input(format!(
                "a block of {n} bytes does not fit a host slot of {}",
                self.slot_bytes
            )));
        }
        let host = self
            .host
            .as_mut()
            .ok_or_else(|| Error::Input("this PET slot has no host tier".into()))?;
        let dst = host
            .writable()?
            .get_mut(at..at + n)
            .ok_or_else(|| Error::Input(format!("host slot {slot} does not exist")))?;
        dst.copy_from_slice(bytes);
        Ok(())
    }

    fn to_device(&mut self, layout: &BlockLayout, slot: u32, src: Src) -> Result<()> {
        if layout.bytes() > self.slot_bytes {
            return Err(Error::Input(format!(
                "tenant `{}`'s block of {} bytes does not fit a pool slot of {}",
                layout.name,
                layout.bytes(),
                self.slot_bytes
            )));
        }
        self.pending.retain(|p| p.slot != slot);
        if let Src::Host(h) = src {
            self.reading.insert(h);
        }
        self.pending.push(Pending {
            slot,
            src,
            stages: (0..layout.stages())
                .map(|i| layout.stage_bytes(i))
                .collect(),
        });
        Ok(())
    }
}

impl Drop for GpuStore {
    fn drop(&mut self) {
        // No copy may still read the host tier or write the pool when they are freed.
        let _ = self.copy.synchronize();
    }
}
