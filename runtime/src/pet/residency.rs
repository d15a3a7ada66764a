//! Where each registered tenant's delta block is, among a PET slot's tiers: the GPU adapter
//! pool and the pinned host tier are arrays of equal numbered slots (as the simulator's
//! `sim::ledger::tiers` models them, so a caller may place a tenant in a slot it chose); a
//! tenant in neither is on disk (its folder). Pure bookkeeping, shared by the CPU twin and the
//! GPU slot: deterministic (ordered sets, a use counter, the lowest free slot first), so both
//! place the same tenant in the same slot.
//!
//! A full tier evicts its least recently used tenant that the caller does not protect (the
//! tenants of the batch being formed).

use crate::error::{Error, Result};
use std::collections::BTreeSet;

/// A tier of a PET slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tier {
    /// The GPU adapter pool (on the CPU twin: unpacked tenants standing in for it).
    Gpu,
    /// Pinned host memory (on the CPU twin: plain memory).
    Host,
    /// The tenant's folder.
    Disk,
}

impl Tier {
    /// Lower-case name: `gpu`, `host`, `disk`.
    pub fn name(self) -> &'static str {
        match self {
            Tier::Gpu => "gpu",
            Tier::Host => "host",
            Tier::Disk => "disk",
        }
    }
}

/// One tier's numbered slots and their LRU order.
#[derive(Debug, Clone)]
pub struct TierSlots {
    what: &'static str,
    slots: Vec<Option<u32>>,
    free: BTreeSet<u32>,
    slot_of: Vec<Option<u32>>,
    last_use: Vec<u64>,
    order: BTreeSet<(u64, u32)>,
    evictions: u64,
}

impl TierSlots {
    /// `capacity` empty slots of a tier named `what` (for errors).
    pub fn new(what: &'static str, capacity: usize) -> Self {
        TierSlots {
            what,
            slots: vec![None; capacity],
            free: (0..capacity as u32).collect(),
            slot_of: Vec::new(),
            last_use: Vec::new(),
            order: BTreeSet::new(),
            evictions: 0,
        }
    }

    /// Slots.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Tenants held.
    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Whether it holds no tenant.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Tenants evicted so far.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Makes room for tenant ids below `tenants`.
    fn grow(&mut self, tenants: usize) {
        if self.slot_of.len() < tenants {
            self.slot_of.resize(tenants, None);
            self.last_use.resize(tenants, 0);
        }
    }

    /// The slot holding tenant `t`.
    pub fn slot(&self, t: u32) -> Option<u32> {
        self.slot_of.get(t as usize).copied().flatten()
    }

    /// The tenant in slot `s`.
    pub fn tenant_in(&self, s: u32) -> Option<u32> {
        self.slots.get(s as usize).copied().flatten()
    }

    fn touch(&mut self, t: u32, tick: u64) {
        if self.slot(t).is_some() {
            self.order.remove(&(self.last_use[t as usize], t));
            self.order.insert((tick, t));
        }
        self.last_use[t as usize] = tick;
    }

    /// Removes tenant `t`; returns the slot it had.
    fn remove(&mut self, t: u32) -> Option<u32> {
        let s = self.slot(t)?;
        self.order.remove(&(self.last_use[t as usize], t));
        self.slot_of[t as usize] = None;
        self.slots[s as usize] = None;
        self.free.insert(s);
        Some(s)
    }

    /// Places tenant `t` (not yet here) in `slot`, or in the lowest free slot, or in the slot
    /// of the least recently used tenant that `protect` allows to evict; returns the slot and
    /// the tenant evicted.
    fn place(
        &mut self,
        t: u32,
        slot: Option<u32>,
        protect: &dyn Fn(u32) -> bool,
        tick: u64,
    ) -> Result<(u32, Option<u32>)> {
        let cap = self.slots.len();
        if let Some(s) = self.slot(t) {
            return Err(Error::Input(format!(
                "tenant {t} is already in {} slot {s}",
                self.what
            )));
        }
        let s = match slot {
            Some(s) if s as usize >= cap => {
                return Err(Error::Input(format!(
                    "{} slot {s} does not exist (the tier has {cap})",
                    self.what
                )))
            }
            Some(s) => s,
            None => match self.free.first() {
                Some(&s) => s,
                None => {
                    let victim = self
                        .order
                        .iter()
                        .find(|(_, v)| !protect(*v))
                        .map(|&(_, v)| v)
                        .ok_or_else(|| {
                            Error::Input(format!(
                                "the {} has {cap} slots, all held by tenants this batch needs",
                                self.what
                            ))
                        })?;
                    self.slot(victim).unwrap_or(0)
                }
            },
        };
        let evicted = self.tenant_in(s);
        if let Some(v) = evicted {
            if protect(v) {
                return Err(Error::Input(format!(
                    "{} slot {s} holds tenant {v}, which this batch needs",
                    self.what
                )));
            }
            self.remove(v);
            self.evictions += 1;
        }
        self.free.remove(&s);
        self.slots[s as usize] = Some(t);
        self.slot_of[t as usize] = Some(s);
        self.last_use[t as usize] = tick;
        self.order.insert((tick, t));
        Ok((s, evicted))
    }
}

/// The GPU pool and host tier of one PET slot.
#[derive(Debug, Clone)]
pub struct Residency {
    /// The GPU adapter pool.
    pub gpu: TierSlots,
    /// The pinned host tier.
    pub host: TierSlots,
    tick: u64,
}

impl Residency {
    /// Empty tiers of `gpu` and `host` slots.
    pub fn new(gpu: usize, host: usize) -> Self {
        Residency {
            gpu: TierSlots::new("GPU adapter pool", gpu),
            host: TierSlots::new("host tier", host),
            tick: 0,
        }
    }

    /// Makes room for tenant ids below `tenants`.
    pub fn grow(&mut self, tenants: usize) {
        self.gpu.grow(tenants);
        self.host.grow(tenants);
    }

    fn tier_mut(&mut self, tier: Tier) -> Result<&mut TierSlots> {
        match tier {
            Tier::Gpu => Ok(&mut self.gpu),
            Tier::Host => Ok(&mut self.host),
            Tier::Disk => Err(Error::Input(
                "the disk tier has no slots: every tenant is on disk".into(),
            )),
        }
    }

    /// The highest tier holding tenant `t`.
    pub fn tier(&self, t: u32) -> Tier {
        if self.gpu.slot(t).is_some() {
            Tier::Gpu
        } else if self.host.slot(t).is_some() {
            Tier::Host
        } else {
            Tier::Disk
        }
    }

    /// Records a use of tenant `t` (its place in every tier's LRU order).
    pub fn touch(&mut self, t: u32) {
        self.tick += 1;
        let tick = self.tick;
        self.gpu.touch(t, tick);
        self.host.touch(t, tick);
    }

    /// Places tenant `t` in `tier` (see [`TierSlots`]'s placement); returns the slot and the
    /// tenant evicted from it.
    pub fn place(
        &mut self,
        t: u32,
        tier: Tier,
        slot: Option<u32>,
        protect: &dyn Fn(u32) -> bool,
    ) -> Result<(u32, Option<u32>)> {
        self.tick += 1;
        let tick = self.tick;
        self.tier_mut(tier)?.place(t, slot, protect, tick)
    }

    /// Removes tenant `t` from `tier`; returns the slot it had.
    pub fn remove(&mut self, t: u32, tier: Tier) -> Result<Option<u32>> {
        Ok(self.tier_mut(tier)?.remove(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_free_slot_then_least_recently_used() {
        let mut r = Residency::new(2, 3);
        r.grow(5);
        let none = |_| false;
        assert_eq!(r.place(3, Tier::Gpu, None, &none).unwrap(), (0, None));
        assert_eq!(r.place(1, Tier::Gpu, None, &none).unwrap(), (1, None));
        assert_eq!((r.tier(3), r.tier(0)), (Tier::Gpu, Tier::Disk));
        r.touch(3);
        // Tenant 1 is the least recently used.
        assert_eq!(r.place(4, Tier::Gpu, None, &none).unwrap(), (1, Some(1)));
        // Protected tenants are skipped; when all are protected, the error says so.
        let keep4 = |t| t == 4;
        assert_eq!(r.place(2, Tier::Gpu, None, &keep4).unwrap(), (0, Some(3)));
        let all = |_| true;
        let e = r.place(0, Tier::Gpu, None, &all).unwrap_err().to_string();
        assert!(e.contains("GPU adapter pool has 2 slots"), "{e}");
        // A chosen slot evicts its tenant unless protected.
        let e = r
            .place(0, Tier::Gpu, Some(1), &keep4)
            .unwrap_err()
            .to_string();
        assert!(e.contains("slot 1 holds tenant 4"), "{e}");
        assert_eq!(r.place(0, Tier::Gpu, Some(1), &none).unwrap(), (1, Some(4)));
        assert!(r.place(1, Tier::Gpu, Some(7), &none).is_err());
        assert_eq!(r.gpu.evictions(), 3);
        assert_eq!(r.remove(0, Tier::Gpu).unwrap(), Some(1));
        assert_eq!(r.place(1, Tier::Gpu, None, &none).unwrap(), (1, None));
        assert_eq!(r.place(1, Tier::Host, None, &none).unwrap(), (0, None));
        assert_eq!(r.tier(1), Tier::Gpu, "the highest tier");
        assert!(r.place(1, Tier::Disk, None, &none).is_err());
    }
}
