//! One switching slot on any device, as one closed type: [`Slot`] is a [`CpuSlot`] (candle, the
//! twin CI tests) or a [`GpuSlot`] (a fixed device arena; a stand-in that cannot be made when
//! the crate is built without the `cuda` feature). Callers load, switch and run through it and
//! never match on the device.
//!
//! [`SlotHost`] is what the slots of one device share: the tenants' [`HostCache`] (pinned on a
//! GPU, behind a mutex held only while a switch's copies are enqueued) and, on a GPU, the one
//! copy stream (one PCIe link) and the kernel options every slot runs.

use crate::bert::HeadOutput;
use crate::config::Config;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::gpu::slots::{check_fit, copy_stream, CopyStream, GpuSlot, CHUNK_BYTES};
use crate::gpu::KernelOptions;
use crate::switch::{ArchLayout, CpuPool, CpuSlot, Eviction, HostCache, TenantInfo};
use crate::tokenize::{random_rows, Batch};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

/// What the slots of one device share.
pub struct SlotHost {
    device: Device,
    arch: ArchLayout,
    cache: Mutex<HostCache>,
    copy: Option<CopyStream>,
    options: KernelOptions,
    /// The GPU weight pool (tier 1), when asked for: numbered slots shared by the device's
    /// slots (on the CPU, host buffers standing in for device memory).
    pool: Option<Mutex<CpuPool>>,
}

impl SlotHost {
    /// A host cache of `capacity` tenants of `arch` for `device` (plain memory on the CPU;
    /// pinned memory and a copy stream on a GPU); GPU slots made from it run `options`.
    pub fn new(
        device: Device,
        arch: ArchLayout,
        capacity: usize,
        eviction: Eviction,
        options: KernelOptions,
    ) -> Result<Self> {
        let (cache, copy) = match device {
            Device::Cpu => (HostCache::plain(arch.clone(), capacity, eviction)?, None),
            Device::Cuda(n) => (
                HostCache::pinned(arch.clone(), capacity, n, eviction)?,
                Some(copy_stream(n)?),
            ),
        };
        Ok(SlotHost {
            device,
            arch,
            cache: Mutex::new(cache),
            copy,
            options,
            pool: None,
        })
    }

    /// The same host with a weight pool of `slots` tenants.
    pub fn with_pool(mut self, slots: usize) -> Result<Self> {
        match self.device {
            Device::Cpu => {
                self.pool = Some(Mutex::new(CpuPool::new(&self.arch, slots)));
                Ok(self)
            }
            Device::Cuda(_) => Err(Error::Input(
                "a GPU weight pool is not in this build of the runtime: serve without a pool"
                    .into(),
            )),
        }
    }

    /// Copies tenant `name` from the host cache into pool slot `slot` (a prefetch).
    pub fn prefetch(&self, slot: u32, name: &str) -> Result<()> {
        let mut cache = self.lock()?;
        self.lock_pool()?.put_from_cache(slot, &mut cache, name)
    }

    fn lock_pool(&self) -> Result<MutexGuard<'_, CpuPool>> {
        self.pool
            .as_ref()
            .ok_or_else(|| Error::Input("no GPU weight pool".into()))?
            .lock()
            .map_err(|_| Error::Poisoned {
                what: "the weight pool",
            })
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

    fn lock(&self) -> Result<MutexGuard<'_, HostCache>> {
        self.cache.lock().map_err(|_| Error::Poisoned {
            what: "the host cache",
        })
    }
}

/// One slot: holds one tenant's weights at a time.
pub enum Slot {
    /// On the CPU.
    Cpu(Box<CpuSlot>),
    /// On a GPU.
    Gpu(Box<GpuSlot>),
}

impl Slot {
    /// The tenant it holds (or is switching to).
    pub fn tenant(&self) -> Option<&TenantInfo> {
        match self {
            Slot::Cpu(s) => s.tenant(),
            Slot::Gpu(s) => s.tenant(),
        }
    }

    /// A cold load: reads tenant `name` from its checkpoint in `dir` into the slot; returns
    /// when it can run (the CPU's model is built).
    pub fn load_file(&mut self, name: &str, dir: &Path) -> Result<()> {
        match self {
            Slot::Cpu(s) => {
                s.load_file(name, dir)?;
                s.prepare()
            }
            Slot::Gpu(s) => s.load_file(name, dir),
        }
    }

    /// A switch: copies tenant `name` from `host`'s cache into the slot (on a GPU, chunked
    /// copies on the shared copy stream, the cache locked only while they are enqueued);
    /// returns when the weights have landed and the tenant can run.
    pub fn switch(&mut self, host: &SlotHost, name: &str) -> Result<()> {
        match self {
            Slot::Cpu(s) => {
                s.switch(&mut *host.lock()?, name)?;
                s.prepare()
            }
            Slot::Gpu(s) => {
                let copy = host.copy.as_ref().ok_or_else(|| {
                    Error::Input("a GPU slot switches through a GPU host cache".into())
                })?;
                s.switch(copy, &mut *host.lock()?, name, CHUNK_BYTES)?;
                s.wait()
            }
        }
    }

    /// A load from the weight pool: copies pool slot `slot`, which must hold tenant `name`, into
    /// the slot; returns when the tenant can run.
    pub fn load_pool(&mut self, host: &SlotHost, slot: u32, name: &str) -> Result<()> {
        match self {
            Slot::Cpu(s) => {
                let pool = host.lock_pool()?;
                let (info, bytes) = pool.get(slot)?;
                if info.name != name {
                    return Err(Error::Input(format!(
                        "pool slot {slot} holds `{}`, not `{name}`",
                        info.name
                    )));
                }
                s.load_bytes(info, bytes)?;
                s.prepare()
            }
            Slot::Gpu(_) => Err(Error::Input("no GPU weight pool in this build".into())),
        }
    }

    /// A promotion: copies the tenant the slot holds into pool slot `slot`.
    pub fn promote(&self, host: &SlotHost, slot: u32) -> Result<()> {
        match self {
            Slot::Cpu(s) => {
                let info = s
                    .tenant()
                    .ok_or_else(|| Error::Input("promoting an empty slot".into()))?;
                host.lock_pool()?.put(slot, info, s.packed())
            }
            Slot::Gpu(_) => Err(Error::Input("no GPU weight pool in this build".into())),
        }
    }

    /// Runs the tenant it holds on `batches`, one pass each (on a GPU enqueued back to back
    /// and synchronised once).
    pub fn forward_many(&mut self, batches: &[Batch]) -> Result<Vec<HeadOutput>> {
        match self {
            Slot::Cpu(s) => batches.iter().map(|b| s.forward(b)).collect(),
            Slot::Gpu(s) => s.forward_many(batches),
        }
    }

    /// Prepares every pass shape before the clock starts: on a GPU, switches to one tenant of
    /// each distinct head among `tenants` and runs each `(rows, tokens)` of `shapes` (random
    /// tokens from `seed`), so that their CUDA graphs are captured; on the CPU there is nothing
    /// to capture. Leaves the slot holding some tenant: load before running.
    pub fn warm_up(
        &mut self,
        host: &SlotHost,
        tenants: &[(&str, &Config)],
        shapes: &[(usize, usize)],
        seed: u64,
    ) -> Result<()> {
        if let Slot::Cpu(_) = self {
            return Ok(());
        }
        let mut heads = Vec::new();
        let mut state = seed | 1;
        for &(name, cfg) in tenants {
            let head = (cfg.task(), cfg.labels());
            if heads.contains(&head) {
                continue;
            }
            heads.push(head);
            self.switch(host, name)?;
            for &(rows, seq) in shapes {
                let seq = seq.clamp(1, cfg.max_tokens()) as u32;
                let ids = random_rows(cfg, rows as u32, seq, &mut state);
                let batch = Batch::from_rows(&ids, cfg.pad_token_id, None)?;
                self.forward_many(std::slice::from_ref(&batch))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zoo::{make_zoo, model_dir, Arch};
    use crate::{DType, Model};

    #[test]
    fn a_cpu_slot_switches_and_loads_like_fresh_models() {
        let tmp = tempfile::tempdir().unwrap();
        let zoo = make_zoo(Arch::Tiny, 2, tmp.path(), DType::Fp32, 3).unwrap();
        let dir = |i: usize| model_dir(tmp.path(), &zoo.models[i].name);
        let cfg0 = Config::from_file(&dir(0).join("config.json")).unwrap();
        let max = zoo.models.iter().map(|m| m.labels).max().unwrap();
        let arch = ArchLayout::new(&cfg0, max, DType::Fp32).unwrap();
        let host = SlotHost::new(
            Device::Cpu,
            arch,
            2,
            Eviction::Refuse,
            KernelOptions::default(),
        )
        .unwrap();
        for (i, m) in zoo.models.iter().enumerate() {
            assert_eq!(host.register(&m.name, &dir(i)).unwrap(), None);
        }
        host.check_fit(64, 8, 512).unwrap();
        let mut slot = host.slot(2, 16).unwrap();
        assert!(slot.tenant().is_none());
        let cfgs: Vec<Config> = (0..2)
            .map(|i| Config::from_file(&dir(i).join("config.json")).unwrap())
            .collect();
        let tenants: Vec<(&str, &Config)> = zoo
            .models
            .iter()
            .map(|m| m.name.as_str())
            .zip(&cfgs)
            .collect();
        slot.warm_up(&host, &tenants, &[(2, 8)], 1).unwrap();
        assert!(slot.tenant().is_none(), "a CPU slot has nothing to warm up");
        let batch = Batch::from_rows(&[vec![2, 7, 9, 3], vec![2, 5, 3]], 0, None).unwrap();
        for (i, cold) in [(0, true), (1, false), (0, false), (1, true)] {
            if cold {
                slot.load_file(&zoo.models[i].name, &dir(i)).unwrap();
            } else {
                slot.switch(&host, &zoo.models[i].name).unwrap();
            }
            assert_eq!(slot.tenant().unwrap().name, zoo.models[i].name);
            let got = slot.forward_many(std::slice::from_ref(&batch)).unwrap();
            let want = Model::load(&dir(i), Device::Cpu, DType::Fp32)
                .unwrap()
                .forward(&batch)
                .unwrap();
            assert_eq!(got, vec![want], "tenant {i} (cold {cold})");
        }
        let e = slot.switch(&host, "nobody").unwrap_err().to_string();
        assert!(e.contains("nobody"), "{e}");
    }

    #[test]
    fn a_gpu_slot_without_a_gpu_is_a_clear_error() {
        let cfg = Arch::Tiny.config(crate::Task::Embedding, 0);
        let arch = ArchLayout::new(&cfg, 1, DType::Fp16).unwrap();
        // No GPU here (CI) or no `cuda` feature: either way a named refusal, never a panic.
        if let Err(e) = SlotHost::new(
            Device::Cuda(99),
            arch,
            1,
            Eviction::Refuse,
            KernelOptions::default(),
        ) {
            let e = e.to_string();
            assert!(e.contains("cuda:99"), "{e}");
        }
    }
}
