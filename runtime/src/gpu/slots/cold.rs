//! The cold path (tier 3 → arena): a tenant's checkpoint read straight into the arena's layout
//! in pinned staging by several threads ([`read_into_with`]: positioned reads, dtype
//! conversion, the same checks as every reader — bounds, unused tensors, non-finite weights),
//! and copied to the arena on the copy stream in chunks of [`COLD_CHUNK_BYTES`], each chunk as
//! soon as every byte of it has landed ([`Landing`]), so the host→device copies overlap the
//! reads still running. The staging buffer is pinned once (by the caller) and reused; its fence
//! is the last chunk's copy.

use super::{CopyStream, GpuSlot};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::gpu::cuda::{cu, PinnedBuf};
use crate::switch::landing::Landing;
use crate::switch::read::{read_into_with, PIECE_BYTES};
use crate::switch::TenantInfo;
use cudarc::driver::{result as drv, sys as drv_sys};
use std::path::Path;
use std::sync::Arc;

/// Bytes per host→device copy of the cold path (≥ 16 MB keeps PCIe at full speed; small
/// enough that the first copies start early in the read).
pub const COLD_CHUNK_BYTES: usize = 16 << 20;

impl GpuSlot {
    /// A cold load: reads tenant `name` from its checkpoint in `dir` with `threads` threads
    /// into `staging` (pinned, one tenant's bytes in the slot's layout) and copies it into the
    /// arena on `copy`, chunk by chunk as the reads complete them, after the slot's queued
    /// work; the slot's next work waits for the copies (the call returns once every chunk is
    /// enqueued: [`GpuSlot::wait`] blocks until they have landed). A checkpoint that fails a
    /// check leaves the slot holding no tenant.
    pub fn load_file(
        &mut self,
        copy: &CopyStream,
        staging: &mut PinnedBuf,
        name: &str,
        dir: &Path,
        threads: usize,
    ) -> Result<()> {
        let cfg = Config::from_file(&dir.join("config.json"))?;
        self.arch.check_tenant(name, &cfg)?;
        let ctx = self.model.gpu.ctx.clone();
        cu(ctx.bind_to_thread(), "bind context")?;
        let (arena, arena_bytes) = self.model.arena();
        let dst = staging.writable()?;
        if dst.len() != arena_bytes {
            return Err(Error::Input(format!(
                "staging of {} bytes for an arena of {arena_bytes}",
                dst.len()
            )));
        }
        self.model.retarget(&cfg)?;
        self.tenant = None;
        self.before_write(copy)?;
        // The staging's address, for the copies enqueued as chunks complete (the readers hold
        // the only references into it; a complete chunk is no longer written).
        let base = dst.as_ptr() as usize;
        let landing = Landing::new(arena_bytes, COLD_CHUNK_BYTES);
        let enqueue = |c: usize| -> Result<()> {
            let r = landing.chunk(c);
            cu(ctx.bind_to_thread(), "bind context")?;
            // SAFETY: `r` lies in the staging buffer, and every byte of it has landed (the
            // readers are done with it); the buffer stays alive and unwritten until the copies
            // complete (its fence, set below). The arena holds `arena_bytes` bytes.
            cu(
                unsafe {
                    let src = std::slice::from_raw_parts((base + r.start) as *const u8, r.len());
                    drv::memcpy_htod_async(arena + r.start as u64, src, copy.cu_stream())
                },
                "cuMemcpyHtoDAsync (cold chunk)",
            )
        };
        let read = read_into_with(
            &dir.join("model.safetensors"),
            &cfg,
            &self.arch,
            dst,
            threads,
            PIECE_BYTES,
            &|range| landing.landed(range, &enqueue),
        );
        cu(ctx.bind_to_thread(), "bind context")?;
        let done = Arc::new(cu(
            ctx.new_event(Some(drv_sys::CUevent_flags::CU_EVENT_DISABLE_TIMING)),
            "cuEventCreate",
        )?);
        cu(done.record(copy), "cuEventRecord")?;
        staging.set_fence(done.clone());
        cu(self.model.stream().wait(&done), "cuStreamWaitEvent")?;
        self.ready = done;
        read?;
        if !landing.all_landed() {
            return Err(Error::Input(format!(
                "cold load of `{name}`: the reader left part of the layout unwritten"
            )));
        }
        self.tenant = Some(TenantInfo {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            cfg,
        });
        Ok(())
    }
}
