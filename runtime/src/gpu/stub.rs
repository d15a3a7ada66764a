//! The GPU backend's stand-in when the crate is built without the `cuda` feature (candle's
//! pattern): the types and functions callers use exist with the same signatures, but none of
//! the types can be made — they are uninhabited, and every constructor returns
//! [`Error::NoGpu`] naming the missing feature. Callers compile unchanged, with no `#[cfg]`;
//! a `--device cuda` run fails with that error instead of at build time.

use super::timing::Timing;
use super::KernelOptions;
use crate::bert::HeadOutput;
use crate::checkpoint::PackedWeights;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::tokenize::Batch;

/// The error of every constructor: this build has no GPU backend.
fn no_cuda(ordinal: usize) -> Error {
    Error::NoGpu {
        requested: format!("cuda:{ordinal}"),
        reason: "this build has no GPU backend (built without the `cuda` feature)".into(),
    }
}

/// The name of GPU `ordinal`: never known in this build.
pub fn device_name(ordinal: usize) -> Result<String> {
    Err(no_cuda(ordinal))
}

/// How threads wait for GPU `ordinal`: `auto` is accepted (nothing to set), any other mode
/// needs the GPU backend.
pub fn set_host_sync(ordinal: usize, mode: super::HostSync) -> Result<()> {
    if mode == super::HostSync::Auto {
        Ok(())
    } else {
        Err(no_cuda(ordinal))
    }
}

/// Pinned host memory: cannot be allocated in this build.
pub enum PinnedBuf {}

impl PinnedBuf {
    /// Fails: this build has no GPU backend.
    pub fn new(ordinal: usize, _bytes: usize) -> Result<Self> {
        Err(no_cuda(ordinal))
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        match *self {}
    }

    /// The bytes for writing.
    pub fn writable(&mut self) -> Result<&mut [u8]> {
        match *self {}
    }

    /// Records the event of the last copy reading this memory.
    pub fn set_fence(&mut self, _event: std::sync::Arc<slots::Event>) {
        match *self {}
    }
}

/// A model on a GPU: cannot be made in this build.
pub enum GpuModel {}

impl GpuModel {
    /// Fails: this build has no GPU backend.
    pub fn new(
        _w: &PackedWeights,
        _cfg: &Config,
        ordinal: usize,
        _options: KernelOptions,
    ) -> Result<Self> {
        Err(no_cuda(ordinal))
    }

    /// The kernel options it runs with.
    pub fn options(&self) -> KernelOptions {
        match *self {}
    }

    /// Runs the encoder and head on a batch.
    pub fn forward(&mut self, _batch: &Batch) -> Result<HeadOutput> {
        match *self {}
    }

    /// Turns CUDA-graph capture and replay on or off.
    pub fn set_use_graphs(&mut self, _on: bool) {
        match *self {}
    }

    /// Times forward passes.
    pub fn time_forward(&mut self, _b: &Batch, _warmup: usize, _iters: usize) -> Result<Timing> {
        match *self {}
    }

    /// Device time per step of one eager pass.
    pub fn profile(&mut self, _batch: &Batch) -> Result<Vec<(&'static str, f64)>> {
        match *self {}
    }

    /// The GPU's name.
    pub fn device_name(&self) -> String {
        match *self {}
    }

    /// Waits for the stream.
    pub fn synchronize(&self) -> Result<()> {
        match *self {}
    }
}

// As the real model, which releases its device memory on drop.
impl Drop for GpuModel {
    fn drop(&mut self) {
        match *self {}
    }
}

/// The GPU weight pool: cannot be made in this build.
pub mod pool {
    use super::no_cuda;
    use crate::error::Result;
    use crate::gpu::budget::PoolBudget;
    use crate::gpu::slots::{CopyStream, Event};
    use crate::switch::cache::Block;
    use crate::switch::{ArchLayout, TenantInfo};

    /// Fails: this build has no GPU backend.
    pub fn pool_budget(
        ordinal: usize,
        _arch: &ArchLayout,
        _executors: usize,
        _max_batch: usize,
        _max_seq: usize,
    ) -> Result<PoolBudget> {
        Err(no_cuda(ordinal))
    }

    /// A prefetch's copies.
    pub enum Landed {}

    impl Landed {
        /// Blocks until the copies have landed.
        pub fn wait(&self) -> Result<()> {
            match *self {}
        }
    }

    /// The weight pool of one GPU.
    pub enum GpuPool {}

    impl GpuPool {
        /// Fails: this build has no GPU backend.
        pub fn new(ordinal: usize, _arch: &ArchLayout, _slots: usize) -> Result<Self> {
            Err(no_cuda(ordinal))
        }

        /// Slots in the pool.
        pub fn len(&self) -> usize {
            match *self {}
        }

        /// Whether the pool has no slots.
        pub fn is_empty(&self) -> bool {
            match *self {}
        }

        /// Copies a tenant's pinned block into a slot.
        pub fn put_from_host(
            &mut self,
            _slot: u32,
            _info: &TenantInfo,
            _block: &mut Block,
            _copy: &CopyStream,
        ) -> Result<Landed> {
            match *self {}
        }

        /// The floor of a load from the pool.
        pub fn time_copy_floor(&mut self, _slot: u32, _iters: usize) -> Result<Vec<(f64, f64)>> {
            match *self {}
        }

        /// A timing event on the pool stream.
        pub fn event(&self) -> Result<Event> {
            match *self {}
        }
    }
}

/// A PET slot on a GPU: cannot be made in this build.
pub enum GpuPetSlot {}

impl GpuPetSlot {
    /// Fails: this build has no GPU backend.
    pub fn new(
        _backbone: crate::pet::Backbone,
        _config: crate::pet::PetSlotConfig,
        ordinal: usize,
    ) -> Result<Self> {
        Err(no_cuda(ordinal))
    }

    /// The GPU's ordinal.
    pub fn ordinal(&self) -> usize {
        match *self {}
    }

    /// Device milliseconds of the last pass.
    pub fn last_pass_ms(&self) -> Result<f64> {
        match *self {}
    }

    /// Turns CUDA-graph capture and replay on or off.
    pub fn set_use_graphs(&mut self, _on: bool) {
        match *self {}
    }

    /// Turns the step profile on or off.
    pub fn set_profile_steps(&mut self, _on: bool) {
        match *self {}
    }

    /// The last profiled pass's device milliseconds per step.
    pub fn last_steps(&self) -> &[(&'static str, f64)] {
        match *self {}
    }

    /// CUDA graphs captured so far.
    pub fn graph_count(&self) -> usize {
        match *self {}
    }
}

impl crate::pet::slot::Backend for GpuPetSlot {
    fn core(&self) -> &crate::pet::slot::Core {
        match *self {}
    }

    fn parts(
        &mut self,
    ) -> (
        &mut crate::pet::slot::Core,
        &mut dyn crate::pet::slot::Store,
    ) {
        match *self {}
    }

    fn run(&mut self, _batch: &Batch, _segments: &[(u32, usize)]) -> Result<Vec<HeadOutput>> {
        match *self {}
    }

    fn wait_loads(&mut self) -> Result<()> {
        match *self {}
    }

    fn device_bytes(&self) -> (usize, usize) {
        match *self {}
    }
}

/// Slots, their copy stream and timing events: none can be made in this build.
pub mod slots {
    use super::{no_cuda, GpuModel};
    use crate::bert::HeadOutput;
    use crate::dtype::DType;
    use crate::error::Result;
    use crate::gpu::KernelOptions;
    use crate::switch::{ArchLayout, HostCache, TenantInfo};
    use crate::tokenize::Batch;
    use std::path::Path;

    pub use crate::gpu::budget::{SlotBudget, CHUNK_BYTES, HEADROOM_BYTES};

    /// Bytes per host→device copy of the cold path.
    pub const COLD_CHUNK_BYTES: usize = 16 << 20;

    /// A timing event.
    pub enum Event {}

    /// A copy stream.
    pub enum CopyStream {}

    /// Milliseconds between two events.
    pub fn event_ms(a: &Event, _b: &Event) -> Result<f64> {
        match *a {}
    }

    /// Fails: this build has no GPU backend.
    pub fn copy_stream(ordinal: usize) -> Result<CopyStream> {
        Err(no_cuda(ordinal))
    }

    /// Fails: this build has no GPU backend.
    pub fn slot_budget(
        ordinal: usize,
        _arch: &ArchLayout,
        _max_batch: usize,
        _max_seq: usize,
    ) -> Result<SlotBudget> {
        Err(no_cuda(ordinal))
    }

    /// Fails: this build has no GPU backend.
    pub fn check_fit(
        ordinal: usize,
        _arch: &ArchLayout,
        _count: usize,
        _max_batch: usize,
        _max_seq: usize,
    ) -> Result<SlotBudget> {
        Err(no_cuda(ordinal))
    }

    /// Fails: this build has no GPU backend.
    pub fn load_full(
        _dir: &Path,
        _dtype: DType,
        ordinal: usize,
        _options: KernelOptions,
    ) -> Result<GpuModel> {
        Err(no_cuda(ordinal))
    }

    /// One GPU slot: cannot be made in this build.
    pub enum GpuSlot {}

    impl GpuSlot {
        /// Fails: this build has no GPU backend.
        pub fn new(
            ordinal: usize,
            _arch: &ArchLayout,
            _max_batch: usize,
            _max_seq: usize,
            _options: KernelOptions,
        ) -> Result<Self> {
            Err(no_cuda(ordinal))
        }

        /// The tenant it holds.
        pub fn tenant(&self) -> Option<&TenantInfo> {
            match *self {}
        }

        /// Switches to a tenant of the cache.
        pub fn switch(
            &mut self,
            _copy: &CopyStream,
            _cache: &mut HostCache,
            _name: &str,
            _chunk_bytes: usize,
        ) -> Result<()> {
            match *self {}
        }

        /// Blocks until the last switch has landed.
        pub fn wait(&self) -> Result<()> {
            match *self {}
        }

        /// A cold load through pinned staging.
        pub fn load_file(
            &mut self,
            _copy: &CopyStream,
            _staging: &mut super::PinnedBuf,
            _name: &str,
            _dir: &Path,
            _threads: usize,
        ) -> Result<()> {
            match *self {}
        }

        /// FastPTM's split-mode load of a checkpoint.
        pub fn load_file_fastptm(&mut self, _name: &str, _dir: &Path) -> Result<()> {
            match *self {}
        }

        /// Loads a tenant from a pool slot.
        pub fn load_pool(
            &mut self,
            _pool: &mut super::pool::GpuPool,
            _slot: u32,
            _name: &str,
        ) -> Result<()> {
            match *self {}
        }

        /// Promotes the tenant it holds into a pool slot.
        pub fn promote(&mut self, _pool: &mut super::pool::GpuPool, _slot: u32) -> Result<()> {
            match *self {}
        }

        /// Runs several batches back to back.
        pub fn forward_many(&mut self, _batches: &[Batch]) -> Result<Vec<HeadOutput>> {
            match *self {}
        }
    }

    /// Several GPU slots: cannot be made in this build.
    pub enum SlotSet {}

    impl SlotSet {
        /// Fails: this build has no GPU backend.
        pub fn new(
            ordinal: usize,
            _arch: &ArchLayout,
            _count: usize,
            _max_batch: usize,
            _max_seq: usize,
            _options: KernelOptions,
        ) -> Result<Self> {
            Err(no_cuda(ordinal))
        }

        /// The model of a slot.
        pub fn model_mut(&mut self, _slot: usize) -> Result<&mut GpuModel> {
            match *self {}
        }

        /// Records a timing event on the copy stream.
        pub fn copy_event(&self) -> Result<Event> {
            match *self {}
        }

        /// Switches a slot to a tenant of the cache.
        pub fn switch(&mut self, _slot: usize, _cache: &mut HostCache, _name: &str) -> Result<()> {
            match *self {}
        }

        /// Blocks until a slot's last switch has landed.
        pub fn wait(&self, _slot: usize) -> Result<()> {
            match *self {}
        }

        /// Runs a slot's tenant on a batch.
        pub fn forward(&mut self, _slot: usize, _batch: &Batch) -> Result<HeadOutput> {
            match *self {}
        }

        /// Times one switch.
        pub fn time_switch(
            &mut self,
            _slot: usize,
            _cache: &mut HostCache,
            _name: &str,
            _chunk_bytes: usize,
        ) -> Result<(f64, f64)> {
            match *self {}
        }

        /// FastPTM's split mode.
        pub fn switch_fastptm(&mut self, _slot: usize, _name: &str, _dir: &Path) -> Result<()> {
            match *self {}
        }

        /// Graph replays between two events.
        pub fn replay(
            &mut self,
            _slot: usize,
            _bucket: (usize, usize),
            _iters: usize,
        ) -> Result<(Event, Event)> {
            match *self {}
        }

        /// Staged passes on slots `0..k` at once.
        pub fn time_passes(&mut self, _k: usize, _batches: &[Batch]) -> Result<Vec<f64>> {
            match *self {}
        }
    }
}
