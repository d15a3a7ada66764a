//! A slot and the GPU weight pool ([`GpuPool`]): a load copies a pool slot into the arena, a
//! promotion copies the arena into a pool slot, both device to device on the pool's stream.
//! Arena addresses do not move, so the slot's captured graphs stay valid; the ordering rules
//! are those of the module above (writes into the arena wait for its readers and its previous
//! write) and of the pool (a copy waits for the pool slot's last copy).

use super::GpuSlot;
use crate::error::{Error, Result};
use crate::gpu::cuda::cu;
use crate::gpu::pool::GpuPool;

impl GpuSlot {
    /// Loads tenant `name` from pool slot `slot` into the arena: a device-to-device copy on
    /// the pool stream, after the slot's queued work; the slot's next work waits for it (the
    /// call returns at once: [`GpuSlot::wait`] blocks until it has landed).
    pub fn load_pool(&mut self, pool: &mut GpuPool, slot: u32, name: &str) -> Result<()> {
        if pool.arch() != &self.arch {
            return Err(Error::Input(format!(
                "the pool's layout does not match the slot's (loading `{name}`)"
            )));
        }
        let held = pool.tenant(slot)?;
        if held.name != name {
            return Err(Error::Input(format!(
                "pool slot {slot} holds `{}`, not `{name}`",
                held.name
            )));
        }
        let cfg = held.cfg.clone();
        self.model.retarget(&cfg)?;
        cu(self.model.gpu.ctx.bind_to_thread(), "bind context")?;
        self.tenant = None;
        self.before_write(pool.stream())?;
        let (arena, bytes) = self.model.arena();
        let (info, done) = pool.copy_out(slot, name, arena, bytes)?;
        cu(self.model.stream().wait(&done), "cuStreamWaitEvent")?;
        self.ready = done;
        self.tenant = Some(info);
        Ok(())
    }

    /// Promotes the tenant the slot holds into pool slot `slot` (evicting whoever was there):
    /// a device-to-device copy on the pool stream after the arena's last write; returns at
    /// once. Later loads from that pool slot are ordered after it (the pool's fence), and the
    /// slot's next write into its arena waits for it.
    pub fn promote(&mut self, pool: &mut GpuPool, slot: u32) -> Result<()> {
        if pool.arch() != &self.arch {
            return Err(Error::Input(
                "the pool's layout does not match the slot's (promoting)".into(),
            ));
        }
        let info = self
            .tenant
            .clone()
            .ok_or_else(|| Error::Input("promoting an empty slot".into()))?;
        cu(self.model.gpu.ctx.bind_to_thread(), "bind context")?;
        cu(pool.stream().wait(&self.ready), "cuStreamWaitEvent")?;
        let (arena, bytes) = self.model.arena();
        let done = pool.copy_in(slot, &info, arena, bytes)?;
        self.read_fence = Some(done);
        Ok(())
    }
}
