//! [`SlotHost`]: what the slots of one device share — the tenants' [`HostCache`] (tier 2:
//! pinned on a GPU, behind a mutex held only while a switch's copies are enqueued), the GPU
//! weight pool when asked for (tier 1: [`GpuPool`] on a GPU, its twin [`CpuPool`] on the CPU),
//! and on a GPU the one copy stream (one PCIe link), the pinned staging of cold loads and the
//! kernel options every slot runs.

use super::Slot;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::gpu::budget::HEADROOM_BYTES;
use crate::gpu::pool::{pool_budget, GpuPool};
use crate::gpu::slots::{check_fit, copy_stream, CopyStream, GpuSlot};
use crate::gpu::{KernelOptions, PinnedBuf};
use crate::switch::read::default_threads;
use crate::switch::{ArchLayout, CpuPool, CpuSlot, Eviction, HostCache};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

/// How many tenants a weight pool holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolSize {
    /// Exactly this many (on a GPU: refused, with the numbers, when they do not fit beside the
    /// executors).
    Tenants(usize),
    /// As many as fit beside the executors (on the CPU: `at_most`), at most `at_most` (more
    /// slots than tenants would stay empty).
    Fit {
        /// The most slots worth having.
        at_most: usize,
    },
}

/// The executors a weight pool leaves room for on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Executors {
    /// How many.
    pub count: usize,
    /// Rows of their largest pass.
    pub max_batch: usize,
    /// Tokens of their largest pass.
    pub max_seq: usize,
}

/// The weight pool of one device.
pub(super) enum Pool {
    /// Host buffers standing in for device memory.
    Cpu(Mutex<CpuPool>),
    /// Device memory.
    Gpu(Mutex<GpuPool>),
}

/// What the slots of one device share.
pub struct SlotHost {
    pub(super) device: Device,
    pub(super) arch: ArchLayout,
    pub(super) cache: Mutex<HostCache>,
    pub(super) copy: Option<CopyStream>,
    pub(super) options: KernelOptions,
    /// The weight pool (tier 1), when asked for.
    pub(super) pool: Option<Pool>,
    /// On a GPU: pinned staging of cold loads, one tenant's bytes.
    pub(super) staging: Option<Mutex<PinnedBuf>>,
    /// Threads a cold load reads with.
    pub(super) threads: usize,
}

impl SlotHost {
    /// A host cache of `capacity` tenants of `arch` for `device` (plain memory on the CPU;
    /// pinned memory, a copy stream and pinned staging for cold loads on a GPU); GPU slots
    /// made from it run `options`.
    pub fn new(
        device: Device,
        arch: ArchLayout,
        capacity: usize,
        eviction: Eviction,
        options: KernelOptions,
    ) -> Result<Self> {
        let (cache, copy, staging) = match device {
            Device::Cpu => (
                HostCache::plain(arch.clone(), capacity, eviction)?,
                None,
                None,
            ),
            Device::Cuda(n) => (
                HostCache::pinned(arch.clone(), capacity, n, eviction)?,
                Some(copy_stream(n)?),
                Some(Mutex::new(PinnedBuf::new(n, arch.bytes())?)),
            ),
        };
        Ok(SlotHost {
            device,
            arch,
            cache: Mutex::new(cache),
            copy,
            options,
            pool: None,
            staging,
            threads: default_threads(),
        })
    }

    /// The same host with a weight pool of `size` tenants, leaving room for `executors` on
    /// the device (a GPU pool is allocated now; one that does not fit is refused with the
    /// numbers).
    pub fn with_pool(mut self, size: PoolSize, executors: Executors) -> Result<Self> {
        let slots = match self.device {
            Device::Cpu => match size {
                PoolSize::Tenants(n) => n,
                PoolSize::Fit { at_most } => at_most,
            },
            Device::Cuda(n) => {
                let b = pool_budget(
                    n,
                    &self.arch,
                    executors.count,
                    executors.max_batch,
                    executors.max_seq,
                )?;
                let refuse = |requested: usize| Error::PoolDoesNotFit {
                    device: self.device.to_string(),
                    requested,
                    fit: b.fit,
                    slot_bytes: b.slot_bytes,
                    free_bytes: b.executors.free_bytes,
                    executors: executors.count,
                    per_executor_bytes: b.executors.per_slot_bytes,
                    headroom_bytes: HEADROOM_BYTES,
                };
                match size {
                    PoolSize::Tenants(k) if k > b.fit => return Err(refuse(k)),
                    PoolSize::Tenants(k) => k,
                    PoolSize::Fit { at_most } if b.fit == 0 && at_most > 0 => {
                        return Err(refuse(1))
                    }
                    PoolSize::Fit { at_most } => b.fit.min(at_most),
                }
            }
        };
        if slots == 0 {
            return Err(Error::Input(
                "a weight pool needs at least one slot (serve without a pool instead)".into(),
            ));
        }
        self.pool = Some(match self.device {
            Device::Cpu => Pool::Cpu(Mutex::new(CpuPool::new(&self.arch, slots))),
            Device::Cuda(n) => Pool::Gpu(Mutex::new(GpuPool::new(n, &self.arch, slots)?)),
        });
        Ok(self)
    }

    /// Slots of the weight pool (`None`: no pool).
    pub fn pool_slots(&self) -> Option<usize> {
        Some(match self.pool.as_ref()? {
            Pool::Cpu(p) => p.lock().map_or(0, |p| p.len()),
            Pool::Gpu(p) => p.lock().map_or(0, |p| p.len()),
        })
    }

    /// Copies tenant `name` from the host cache into pool slot `slot` (a prefetch); returns
    /// when it has landed.
    pub fn prefetch(&self, slot: u32, name: &str) -> Result<()> {
        match self.pool()? {
            Pool::Cpu(p) => {
                let mut cache = self.lock()?;
                lock(p, "the weight pool")?.put_from_cache(slot, &mut cache, name)
            }
            Pool::Gpu(p) => {
                let landed = {
                    let mut cache = self.lock()?;
                    let (info, block) = cache.get(name)?;
                    let info = info.clone();
                    lock(p, "the weight pool")?.put_from_host(slot, &info, block, self.copy()?)?
                };
                landed.wait()
            }
        }
    }

    pub(super) fn pool(&self) -> Result<&Pool> {
        self.pool
            .as_ref()
            .ok_or_else(|| Error::Input("no GPU weight pool".into()))
    }

    pub(super) fn copy(&self) -> Result<&CopyStream> {
        self.copy
            .as_ref()
            .ok_or_else(|| Error::Input("a GPU slot loads through a GPU slot host".into()))
    }

    /// The device.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The layout every tenant packs into.
    pub fn arch(&self) -> &ArchLayout {
        &self.arch
    }

    /// The kernel options GPU slots run.
    pub fn options(&self) -> KernelOptions {
        self.options
    }

    /// Sets the threads a cold load reads with (at least 1).
    pub fn set_threads(&mut self, threads: usize) {
        self.threads = threads.max(1);
    }

    /// Reads tenant `name` from its checkpoint in `dir` into the host cache; returns the
    /// tenant it evicted, if any.
    pub fn register(&self, name: &str, dir: &Path) -> Result<Option<String>> {
        self.lock()?.register(name, dir)
    }

    /// Refuses `slots` slots running passes of up to `max_batch × max_seq` that do not fit on
    /// the device (always fits on the CPU), before any is made.
    pub fn check_fit(&self, slots: usize, max_batch: usize, max_seq: usize) -> Result<()> {
        if let Device::Cuda(n) = self.device {
            check_fit(n, &self.arch, slots, max_batch, max_seq)?;
        }
        Ok(())
    }

    /// An empty slot on the device for passes of up to `max_batch × max_seq`.
    pub fn slot(&self, max_batch: usize, max_seq: usize) -> Result<Slot> {
        Ok(match self.device {
            Device::Cpu => Slot::Cpu(Box::new(CpuSlot::new(&self.arch))),
            Device::Cuda(n) => Slot::Gpu(Box::new(GpuSlot::new(
                n,
                &self.arch,
                max_batch,
                max_seq,
                self.options,
            )?)),
        })
    }

    pub(super) fn lock(&self) -> Result<MutexGuard<'_, HostCache>> {
        lock(&self.cache, "the host cache")
    }

    pub(super) fn lock_staging(&self) -> Result<MutexGuard<'_, PinnedBuf>> {
        lock(
            self.staging
                .as_ref()
                .ok_or_else(|| Error::Input("a GPU cold load needs a GPU slot host".into()))?,
            "the cold-load staging",
        )
    }

    /// The floor of a load from the weight pool, for benchmarks (GPU only): `iters` plain
    /// device-to-device copies of pool slot `slot`, each timed on its own (wall ms from
    /// enqueue to landed, device ms between CUDA events).
    pub fn time_pool_floor(&self, slot: u32, iters: usize) -> Result<Vec<(f64, f64)>> {
        match self.pool()? {
            Pool::Gpu(p) => lock(p, "the weight pool")?.time_copy_floor(slot, iters),
            Pool::Cpu(_) => Err(Error::Input("the pool floor is a GPU figure".into())),
        }
    }
}

/// Locks `m`, naming `what` when a thread failed while holding it.
pub(super) fn lock<'a, T>(m: &'a Mutex<T>, what: &'static str) -> Result<MutexGuard<'a, T>> {
    m.lock().map_err(|_| Error::Poisoned { what })
}
