//! Where tenants' weights are, beyond the executors' arenas: the GPU weight pool (tier 1) and
//! the pinned host cache (tier 2); a tenant in neither is read from its checkpoint file (tier 3).
//!
//! Tier 0 is an executor's arena, the weights its CUDA graphs read; the ledger's instance views
//! say which tenant each arena holds. Serving a tenant its executor does not hold is a **load**
//! into the arena from the highest tier that has it: a device-to-device copy from the pool, a
//! host-to-device copy from the host cache (a *switch*), or a read of the checkpoint (a *cold
//! load*). A tenant loaded from the host or its file is also promoted into the pool (and a tenant
//! read from its file into the host cache), evicting another when the tier is full. Which one is
//! the [`Eviction`] policy's choice; a tenant being copied out of the pool into an arena is
//! pinned until the copy ends.
//!
//! Without a pool (`gpu_pool` absent from a scenario) the model is FastPTM's: an instance's
//! first load is a cold load and every later one a switch from the host; nothing else exists.
//!
//! Each tier is a set of numbered slots (the runtime's pool is an array of equal slots), so that
//! the simulator and the live runtime place a tenant in the same slot.

use crate::error::{Error, Result};
use crate::time::Nanos;
use crate::workload::{Request, TenantId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// A tier's capacity, as a scenario or `ptm serve` gives it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Capacity {
    /// This many tenants' weights.
    Tenants(u32),
    /// As many tenants' weights as fit in this many bytes.
    Bytes(u64),
    /// The GPU pool: as many as fit in the GPU's memory after the executors.
    Auto,
}

/// Which tenant a full tier evicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
pub enum Eviction {
    /// The least recently used.
    #[default]
    Lru,
    /// The least frequently used (ties: the least recently used).
    Lfu,
    /// GreedyDual-Size-Frequency: the lowest `clock + uses × reload cost / size`, the clock
    /// rising to each evicted tenant's priority (Cherkasova 1998).
    Gdsf,
    /// Belady's MIN, the offline optimum: the tenant whose next request comes last. Needs the
    /// whole trace, so the simulator only.
    Belady,
    /// TinyLFU's frequency admission over LRU (Einziger, Friedman & Manes 2017): a full tier
    /// evicts its least recently used member only for a tenant used more often than it lately;
    /// otherwise the newcomer is served without entering the tier (a tail tenant's one request
    /// does not push out a warmer one). Uses are counted for every tenant, in the tier or not,
    /// and halved each time the tier has seen [`TINYLFU_WINDOW_PER_SLOT`] uses per slot (the
    /// aging that lets yesterday's popular tenants go). Ties refuse.
    TinyLfu,
}

/// TinyLFU's sample: counts halve after this many uses per slot of the tier (10, Caffeine's
/// choice for its W-TinyLFU: the sample is ten times the cache).
pub const TINYLFU_WINDOW_PER_SLOT: u64 = 10;

impl Eviction {
    /// Every policy, in the order reports list them.
    pub const ALL: [Eviction; 5] = [
        Eviction::Lru,
        Eviction::Lfu,
        Eviction::Gdsf,
        Eviction::Belady,
        Eviction::TinyLfu,
    ];

    /// Lower-case name: `lru`, `lfu`, `gdsf`, `belady`, `tinylfu`.
    pub fn name(self) -> &'static str {
        match self {
            Eviction::Lru => "lru",
            Eviction::Lfu => "lfu",
            Eviction::Gdsf => "gdsf",
            Eviction::Belady => "belady",
            Eviction::TinyLfu => "tinylfu",
        }
    }

    /// The policy called `name` (as [`name`](Self::name) writes it, any case).
    pub fn by_name(name: &str) -> Result<Eviction> {
        Eviction::ALL
            .into_iter()
            .find(|e| e.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                Error::invalid(
                    "eviction",
                    format!(
                        "unknown policy {name:?}; expected one of lru, lfu, gdsf, belady, tinylfu"
                    ),
                )
            })
    }
}

/// The tiers of one GPU, resolved to tenant slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tiers {
    /// Tenants the GPU pool holds; `None`: no pool (FastPTM's model).
    pub pool_tenants: Option<usize>,
    /// Tenants the host cache holds; `None`: every tenant (read before time 0).
    pub host_tenants: Option<usize>,
    /// Who a full tier evicts.
    pub eviction: Eviction,
    /// The pool holds parameter-efficient deltas (read in place by mixed batches), not whole
    /// weight sets.
    pub pet: bool,
}

/// One tier: numbered slots, the tenants in them and the eviction order.
#[derive(Debug, Clone)]
pub(crate) struct TierCache {
    eviction: Eviction,
    /// Tenant in each slot.
    slots: Vec<Option<TenantId>>,
    free: Vec<u32>,
    /// By tenant: its slot.
    slot_of: Vec<Option<u32>>,
    /// By tenant: its eviction key (smallest evicted first) and use count.
    key: Vec<(u64, u64)>,
    uses: Vec<u64>,
    /// By tenant: copies out of this tier in flight (pinned while > 0).
    pinned: Vec<u32>,
    /// Unpinned members by key.
    order: BTreeSet<(u64, u64, TenantId)>,
    /// GDSF's clock and each tenant's reload cost per byte.
    clock: f64,
    cost_per_byte: Vec<f64>,
    /// TinyLFU: every tenant's recent uses (halved every `window` uses) and the uses since.
    freq: Vec<u32>,
    window: u64,
    sampled: u64,
    pub(crate) evictions: u64,
    /// Newcomers TinyLFU kept out of a full tier.
    pub(crate) refusals: u64,
}

impl TierCache {
    pub(crate) fn new(capacity: usize, tenants: usize, eviction: Eviction) -> Self {
        TierCache {
            eviction,
            slots: vec![None; capacity],
            free: (0..capacity as u32).rev().collect(),
            slot_of: vec![None; tenants],
            key: vec![(0, 0); tenants],
            uses: vec![0; tenants],
            pinned: vec![0; tenants],
            order: BTreeSet::new(),
            clock: 0.0,
            cost_per_byte: vec![1.0; tenants],
            freq: match eviction {
                Eviction::TinyLfu => vec![0; tenants],
                _ => Vec::new(),
            },
            window: (capacity as u64 * TINYLFU_WINDOW_PER_SLOT).max(1),
            sampled: 0,
            evictions: 0,
            refusals: 0,
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.slots.len()
    }

    pub(crate) fn slot_of(&self, tenant: TenantId) -> Option<u32> {
        self.slot_of[tenant as usize]
    }

    /// Sets each tenant's reload cost per byte (GDSF's weight).
    pub(crate) fn set_costs(&mut self, cost_per_byte: Vec<f64>) {
        debug_assert_eq!(cost_per_byte.len(), self.cost_per_byte.len());
        self.cost_per_byte = cost_per_byte;
    }

    /// The tenants in slot order (for views and tests).
    pub(crate) fn members(&self) -> impl Iterator<Item = TenantId> + '_ {
        self.slots.iter().flatten().copied()
    }

    /// A request for `tenant` (in the tier or not): TinyLFU counts it; other policies count
    /// their members' uses in [`touch`](Self::touch) and [`insert`](Self::insert).
    pub(crate) fn record_use(&mut self, tenant: TenantId) {
        if self.eviction != Eviction::TinyLfu {
            return;
        }
        let f = &mut self.freq[tenant as usize];
        *f = f.saturating_add(1);
        self.sampled += 1;
        if self.sampled >= self.window {
            self.sampled = 0;
            for f in &mut self.freq {
                *f /= 2;
            }
        }
    }

    fn new_key(&mut self, tenant: TenantId, now_ns: Nanos, next_use_ns: Nanos) -> (u64, u64) {
        let t = tenant as usize;
        match self.eviction {
            Eviction::Lru | Eviction::TinyLfu => (now_ns, 0),
            Eviction::Lfu => (self.uses[t], now_ns),
            Eviction::Gdsf => {
                let h = self.clock + self.uses[t] as f64 * self.cost_per_byte[t];
                (h.to_bits(), now_ns)
            }
            Eviction::Belady => (u64::MAX - next_use_ns, 0),
        }
    }

    fn rekey(&mut self, tenant: TenantId, key: (u64, u64)) {
        let t = tenant as usize;
        let old = self.key[t];
        if self.slot_of[t].is_some() && self.pinned[t] == 0 {
            self.order.remove(&(old.0, old.1, tenant));
            self.order.insert((key.0, key.1, tenant));
        }
        self.key[t] = key;
    }

    /// A use of `tenant` at `now_ns` (its next request then at `next_use_ns`).
    pub(crate) fn touch(&mut self, tenant: TenantId, now_ns: Nanos, next_use_ns: Nanos) {
        self.uses[tenant as usize] += 1;
        let key = self.new_key(tenant, now_ns, next_use_ns);
        self.rekey(tenant, key);
    }

    /// Puts `tenant` into a slot, evicting the first unpinned member by key when full; returns
    /// the slot and the evicted tenant, or `None` when every member is pinned or (TinyLFU) the
    /// newcomer is used no more often than that member. A tenant already
    /// in (a prefetch still landing, when an executor loads it from the host meanwhile) is
    /// touched: its key must follow its uses (Belady's next use above all: a key left at the
    /// request just served would keep the tenant forever).
    pub(crate) fn insert(
        &mut self,
        tenant: TenantId,
        now_ns: Nanos,
        next_use_ns: Nanos,
    ) -> Option<(u32, Option<TenantId>)> {
        let t = tenant as usize;
        if let Some(slot) = self.slot_of[t] {
            self.touch(tenant, now_ns, next_use_ns);
            return Some((slot, None));
        }
        let mut evicted = None;
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                let &(k0, _, victim) = self.order.first()?;
                if self.eviction == Eviction::TinyLfu && self.freq[t] <= self.freq[victim as usize]
                {
                    self.refusals += 1;
                    return None;
                }
                self.order.pop_first();
                if self.eviction == Eviction::Gdsf {
                    self.clock = f64::from_bits(k0);
                }
                let s = self.slot_of[victim as usize]
                    .take()
                    .expect("an ordered member has a slot");
                self.uses[victim as usize] = 0;
                self.evictions += 1;
                evicted = Some(victim);
                s
            }
        };
        self.slots[slot as usize] = Some(tenant);
        self.slot_of[t] = Some(slot);
        if self.uses[t] == 0 {
            self.uses[t] = 1;
        }
        let key = self.new_key(tenant, now_ns, next_use_ns);
        self.key[t] = key;
        if self.pinned[t] == 0 {
            self.order.insert((key.0, key.1, tenant));
        }
        Some((slot, evicted))
    }

    /// A copy out of `tenant`'s slot starts (`true`) or ends (`false`).
    pub(crate) fn pin(&mut self, tenant: TenantId, on: bool) {
        let t = tenant as usize;
        let (k0, k1) = self.key[t];
        if on {
            if self.pinned[t] == 0 && self.slot_of[t].is_some() {
                self.order.remove(&(k0, k1, tenant));
            }
            self.pinned[t] += 1;
        } else {
            debug_assert!(self.pinned[t] > 0, "unpinning an unpinned tenant");
            self.pinned[t] -= 1;
            if self.pinned[t] == 0 && self.slot_of[t].is_some() {
                self.order.insert((k0, k1, tenant));
            }
        }
    }
}

/// Belady's oracle: each tenant's request arrivals in order and how many were dispatched.
#[derive(Debug, Clone)]
pub(crate) struct NextUse {
    arrivals: Vec<Vec<Nanos>>,
    dispatched: Vec<usize>,
}

impl NextUse {
    pub(crate) fn new(requests: &[Request], tenants: usize) -> Self {
        let mut arrivals = vec![Vec::new(); tenants];
        for r in requests {
            arrivals[r.tenant as usize].push(r.arrival_ns);
        }
        NextUse {
            arrivals,
            dispatched: vec![0; tenants],
        }
    }

    /// When `tenant` is next needed: the arrival of its first request not yet dispatched.
    pub(crate) fn next_ns(&self, tenant: TenantId) -> Nanos {
        let t = tenant as usize;
        self.arrivals[t]
            .get(self.dispatched[t])
            .copied()
            .unwrap_or(Nanos::MAX)
    }

    pub(crate) fn dispatched(&mut self, tenant: TenantId) {
        self.dispatched[tenant as usize] += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(capacity: usize, eviction: Eviction) -> TierCache {
        TierCache::new(capacity, 8, eviction)
    }

    #[test]
    fn lru_evicts_the_least_recently_used_and_reuses_its_slot() {
        let mut c = cache(2, Eviction::Lru);
        assert_eq!(c.insert(0, 1, 0), Some((0, None)));
        assert_eq!(c.insert(1, 2, 0), Some((1, None)));
        c.touch(0, 3, 0);
        assert_eq!(c.insert(2, 4, 0), Some((1, Some(1))));
        assert_eq!(c.slot_of(1), None);
        assert_eq!(c.slot_of(2), Some(1));
        assert_eq!(c.evictions, 1);
        assert_eq!(
            c.insert(2, 5, 0),
            Some((1, None)),
            "a member stays where it is"
        );
    }

    #[test]
    fn lfu_keeps_the_frequent() {
        let mut c = cache(2, Eviction::Lfu);
        c.insert(0, 1, 0);
        c.insert(1, 2, 0);
        c.touch(0, 3, 0);
        c.touch(0, 4, 0);
        c.touch(1, 5, 0);
        assert_eq!(c.insert(2, 6, 0).unwrap().1, Some(1));
    }

    #[test]
    fn gdsf_weighs_reload_cost_and_ages() {
        let mut c = cache(2, Eviction::Gdsf);
        c.set_costs(vec![1.0, 10.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]);
        c.insert(0, 1, 0);
        c.insert(1, 2, 0);
        c.touch(0, 3, 0);
        // Tenant 0: 2 uses × 1; tenant 1: 1 use × 10: the cheap one goes.
        assert_eq!(c.insert(2, 4, 0).unwrap().1, Some(0));
        assert_eq!(c.clock, 2.0, "the clock rises to the evicted priority");
    }

    #[test]
    fn belady_evicts_the_one_needed_last() {
        let mut c = cache(2, Eviction::Belady);
        c.insert(0, 1, 500);
        c.insert(1, 2, 90);
        assert_eq!(c.insert(2, 3, 100).unwrap().1, Some(0));
        let requests: Vec<Request> = [(0, 3), (10, 1), (20, 3)]
            .iter()
            .map(|&(a, t)| Request {
                arrival_ns: a,
                tenant: t,
                samples: 1,
                seq_len: 1,
                deadline_ns: 0,
            })
            .collect();
        let mut next = NextUse::new(&requests, 4);
        assert_eq!(next.next_ns(3), 0);
        next.dispatched(3);
        assert_eq!(next.next_ns(3), 20);
        assert_eq!(next.next_ns(2), Nanos::MAX);
    }

    #[test]
    fn inserting_a_member_again_updates_its_key() {
        // Tenant 0 came in for a request due at 5 (a prefetch), then was loaded from the host
        // for it meanwhile: its next use is now 900, so it goes before tenant 1 (needed at 50).
        let mut c = cache(2, Eviction::Belady);
        c.insert(0, 1, 5);
        c.insert(1, 2, 50);
        assert_eq!(c.insert(0, 3, 900), Some((0, None)));
        assert_eq!(c.insert(2, 4, 60).unwrap().1, Some(0));
    }

    #[test]
    fn pinned_tenants_are_not_evicted() {
        let mut c = cache(1, Eviction::Lru);
        c.insert(0, 1, 0);
        c.pin(0, true);
        assert_eq!(c.insert(1, 2, 0), None, "the only member is being copied");
        c.pin(0, false);
        assert_eq!(c.insert(1, 3, 0), Some((0, Some(0))));
        assert_eq!(c.members().collect::<Vec<_>>(), vec![1]);
    }

    #[test]
    fn tinylfu_keeps_a_warm_member_against_one_off_newcomers() {
        let mut c = cache(2, Eviction::TinyLfu);
        for (t, now) in [(0, 1), (1, 2)] {
            c.record_use(t);
            c.insert(t, now, 0);
        }
        // Tenant 0 is used twice more; tenant 1 is the least recently used.
        c.record_use(0);
        c.touch(0, 3, 0);
        c.record_use(0);
        c.touch(0, 4, 0);
        // A one-off tenant (1 use) against the LRU member (1 use): refused, nothing evicted.
        c.record_use(2);
        assert_eq!(c.insert(2, 5, 0), None);
        assert_eq!((c.evictions, c.refusals), (0, 1));
        assert_eq!(c.members().collect::<Vec<_>>(), vec![0, 1]);
        // Its second use outweighs tenant 1's one: admitted in tenant 1's slot.
        c.record_use(2);
        assert_eq!(c.insert(2, 6, 0), Some((1, Some(1))));
        // Tenant 0 is now the least recently used: a newcomer with fewer uses stays out.
        c.record_use(3);
        c.record_use(3);
        assert_eq!(c.insert(3, 7, 0), None, "2 uses against tenant 0's 3");
    }

    #[test]
    fn tinylfu_halves_its_counts_every_ten_uses_per_slot() {
        let mut c = cache(1, Eviction::TinyLfu);
        for _ in 0..9 {
            c.record_use(0);
        }
        assert_eq!(c.freq[0], 9);
        c.record_use(1);
        assert_eq!(
            (c.freq[0], c.freq[1], c.sampled),
            (4, 0, 0),
            "the 10th use halves"
        );
        // Other policies count nothing here.
        let mut lru = cache(1, Eviction::Lru);
        lru.record_use(0);
        assert!(lru.freq.is_empty());
    }

    #[test]
    fn eviction_names_round_trip() {
        for e in Eviction::ALL {
            assert_eq!(Eviction::by_name(&e.name().to_uppercase()).unwrap(), e);
        }
        assert!(Eviction::by_name("fifo")
            .unwrap_err()
            .to_string()
            .contains("lru"));
    }
}
