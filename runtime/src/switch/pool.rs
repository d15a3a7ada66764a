//! Tier 1 on the CPU twin: the GPU weight pool's slots as host buffers of packed bytes.
//!
//! On a GPU the pool is device memory shared by the executors of one device: a load from it is
//! a device-to-device copy into an executor's arena, a promotion the copy back. The CPU twin
//! keeps the same slots and the same copies on host memory, so that the tier logic (which slot
//! holds which tenant, promotions, prefetches, evictions by overwriting) is tested in CI
//! against fresh loads. A slot's buffer is allocated the first time a tenant is put there.

use super::{ArchLayout, HostCache, TenantInfo};
use crate::error::{Error, Result};

/// Numbered slots, each holding one tenant's packed bytes in the architecture's layout.
pub struct CpuPool {
    arch: ArchLayout,
    slots: Vec<Option<(TenantInfo, Vec<u8>)>>,
}

impl CpuPool {
    /// `slots` empty slots for tenants of `arch`.
    pub fn new(arch: &ArchLayout, slots: usize) -> Self {
        CpuPool {
            arch: arch.clone(),
            slots: (0..slots).map(|_| None).collect(),
        }
    }

    /// Slots in the pool.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the pool has no slots.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    fn slot_mut(&mut self, slot: u32) -> Result<&mut Option<(TenantInfo, Vec<u8>)>> {
        let n = self.slots.len();
        self.slots.get_mut(slot as usize).ok_or_else(|| {
            Error::Input(format!("pool slot {slot} out of range (the pool has {n})"))
        })
    }

    /// Writes `info`'s packed `bytes` into `slot` (evicting whoever was there).
    pub fn put(&mut self, slot: u32, info: &TenantInfo, bytes: &[u8]) -> Result<()> {
        if bytes.len() != self.arch.bytes() {
            return Err(Error::Input(format!(
                "pool slot {slot}: {} bytes of `{}` where the layout has {}",
                bytes.len(),
                info.name,
                self.arch.bytes()
            )));
        }
        let entry = self.slot_mut(slot)?;
        match entry {
            Some((i, buf)) => {
                buf.copy_from_slice(bytes);
                *i = info.clone();
            }
            None => *entry = Some((info.clone(), bytes.to_vec())),
        }
        Ok(())
    }

    /// Copies tenant `name` from the host cache into `slot` (a prefetch).
    pub fn put_from_cache(&mut self, slot: u32, cache: &mut HostCache, name: &str) -> Result<()> {
        let (info, block) = cache.get(name)?;
        let info = info.clone();
        self.put(slot, &info, block.as_slice())
    }

    /// The tenant in `slot` and its packed bytes.
    pub fn get(&self, slot: u32) -> Result<(&TenantInfo, &[u8])> {
        match self.slots.get(slot as usize) {
            Some(Some((info, bytes))) => Ok((info, bytes)),
            Some(None) => Err(Error::Input(format!("pool slot {slot} is empty"))),
            None => Err(Error::Input(format!(
                "pool slot {slot} out of range (the pool has {})",
                self.slots.len()
            ))),
        }
    }
}
