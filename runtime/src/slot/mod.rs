//! One switching slot on any device, as one closed type: [`Slot`] is a [`CpuSlot`] (candle, the
//! twin CI tests) or a [`GpuSlot`] (a fixed device arena; a stand-in that cannot be made when
//! the crate is built without the `cuda` feature). Callers load, switch and run through it and
//! never match on the device.
//!
//! [`SlotHost`] (`host.rs`) is what the slots of one device share: the tenants' host cache, the
//! weight pool, and on a GPU the copy stream, the cold path's pinned staging and the kernel
//! options. A slot loads a tenant from any tier — its checkpoint file ([`Slot::load_file`], the
//! cold path), the host cache ([`Slot::switch`]) or the weight pool ([`Slot::load_pool`]) —
//! and each call returns when the weights have landed; [`Slot::promote`] writes the tenant it
//! holds into a pool slot (on a GPU asynchronously: later loads from that pool slot, and the
//! slot's next load, are ordered after it).

mod host;

pub use host::{Executors, PoolSize, SlotHost};

use crate::bert::HeadOutput;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::gpu::slots::{event_ms, GpuSlot, CHUNK_BYTES};
use crate::switch::{CpuSlot, TenantInfo};
use crate::tokenize::{random_rows, Batch};
use host::{lock, Pool};
use std::path::Path;
use std::time::Instant;

fn mixed_devices() -> Error {
    Error::Input("a slot and a weight pool of different devices".into())
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

    /// A cold load: reads tenant `name` from its checkpoint in `dir` into the slot (on a GPU,
    /// the cold path: several reader threads into `host`'s pinned staging, chunks copied on
    /// the copy stream as they complete); returns when it can run (the CPU's model is built).
    pub fn load_file(&mut self, host: &SlotHost, name: &str, dir: &Path) -> Result<()> {
        match self {
            Slot::Cpu(s) => {
                s.load_file(name, dir)?;
                s.prepare()
            }
            Slot::Gpu(s) => {
                {
                    let mut staging = host.lock_staging()?;
                    s.load_file(host.copy()?, &mut staging, name, dir, host.threads)?;
                }
                s.wait()
            }
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
                s.switch(host.copy()?, &mut *host.lock()?, name, CHUNK_BYTES)?;
                s.wait()
            }
        }
    }

    /// A load from the weight pool: copies pool slot `slot`, which must hold tenant `name`, into
    /// the slot (on a GPU, device to device on the pool's stream); returns when the tenant can
    /// run.
    pub fn load_pool(&mut self, host: &SlotHost, slot: u32, name: &str) -> Result<()> {
        match (self, host.pool()?) {
            (Slot::Cpu(s), Pool::Cpu(p)) => {
                let pool = lock(p, "the weight pool")?;
                let (info, bytes) = pool.get(slot)?;
                if info.name != name {
                    return Err(Error::Input(format!(
                        "pool slot {slot} holds `{}`, not `{name}`",
                        info.name
                    )));
                }
                s.load_bytes(info, bytes)?;
                drop(pool);
                s.prepare()
            }
            (Slot::Gpu(s), Pool::Gpu(p)) => {
                s.load_pool(&mut *lock(p, "the weight pool")?, slot, name)?;
                s.wait()
            }
            _ => Err(mixed_devices()),
        }
    }

    /// [`Slot::load_pool`] timed, for benchmarks (GPU only): wall milliseconds of the whole
    /// call and device milliseconds between CUDA events on the pool stream around its copy.
    pub fn time_load_pool(&mut self, host: &SlotHost, slot: u32, name: &str) -> Result<(f64, f64)> {
        match (self, host.pool()?) {
            (Slot::Gpu(s), Pool::Gpu(p)) => {
                let t = Instant::now();
                let (e0, e1) = {
                    let mut pool = lock(p, "the weight pool")?;
                    let e0 = pool.event()?;
                    s.load_pool(&mut pool, slot, name)?;
                    (e0, pool.event()?)
                };
                s.wait()?;
                let wall = t.elapsed().as_secs_f64() * 1e3;
                Ok((wall, event_ms(&e0, &e1)?))
            }
            _ => Err(Error::Input("timing pool loads is a GPU benchmark".into())),
        }
    }

    /// A promotion: copies the tenant the slot holds into pool slot `slot` (evicting whoever
    /// was there). On a GPU it returns once the copy is enqueued: later loads from the pool
    /// slot and the slot's next load are ordered after it.
    pub fn promote(&mut self, host: &SlotHost, slot: u32) -> Result<()> {
        match (self, host.pool()?) {
            (Slot::Cpu(s), Pool::Cpu(p)) => {
                let info = s
                    .tenant()
                    .ok_or_else(|| Error::Input("promoting an empty slot".into()))?;
                lock(p, "the weight pool")?.put(slot, info, s.packed())
            }
            (Slot::Gpu(s), Pool::Gpu(p)) => s.promote(&mut *lock(p, "the weight pool")?, slot),
            _ => Err(mixed_devices()),
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
    use crate::{ArchLayout, DType, Device, Eviction, KernelOptions, Model};

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
                slot.load_file(&host, &zoo.models[i].name, &dir(i)).unwrap();
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
