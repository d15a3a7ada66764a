//! What the CPU twin and the GPU PET slot share: the backbone, the registered tenants' block
//! directories, their residency in the tiers, reading a block from disk, and the load logic
//! (which tier a load comes from, which slot it goes to, what it evicts). A backend only moves
//! bytes: it implements [`Store`].

use super::{Load, PetId, PetSlotConfig};
use crate::error::{Error, Result};
use crate::pet::backbone::Backbone;
use crate::pet::block::{self, BlockLayout};
use crate::pet::residency::{Residency, Tier};
use crate::pet::tenant::PetTenant;
use crate::tokenize::Batch;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Where a device load copies a block from.
pub(crate) enum Src {
    /// Host tier slot N.
    Host(u32),
    /// Bytes just read from disk (no host tier).
    Bytes(Vec<u8>),
}

/// How a backend holds blocks: the host tier's slots and the device pool's.
pub(crate) trait Store {
    /// Writes a block into host slot `slot`.
    fn write_host(&mut self, slot: u32, bytes: &[u8]) -> Result<()>;
    /// Puts tenant `layout`'s block from `src` into device slot `slot` (the GPU: copies that
    /// complete before the next pass needs them).
    fn to_device(&mut self, layout: &BlockLayout, slot: u32, src: Src) -> Result<()>;
}

/// The registry and tiers of a PET slot.
pub(crate) struct Core {
    pub(crate) backbone: Backbone,
    pub(crate) config: PetSlotConfig,
    pub(crate) layouts: Vec<BlockLayout>,
    by_name: BTreeMap<String, u32>,
    pub(crate) residency: Residency,
}

impl Core {
    /// Loads the backbone in `dir` in `dtype`; no tenant yet.
    pub(crate) fn new(backbone: Backbone, config: PetSlotConfig) -> Result<Self> {
        config.check()?;
        let residency = Residency::new(config.gpu_slots, config.host_slots);
        Ok(Core {
            backbone,
            config,
            layouts: Vec::new(),
            by_name: BTreeMap::new(),
            residency,
        })
    }

    fn layers(&self) -> usize {
        self.backbone.config().num_hidden_layers
    }

    /// Reads the tenant in `dir`, checks it against the backbone and the slot's limits, and
    /// packs it.
    pub(crate) fn read(&self, dir: &Path) -> Result<(BlockLayout, Vec<u8>)> {
        let t = PetTenant::load(dir, &self.backbone)?;
        let (layout, bytes) = block::pack(&t, self.layers(), self.backbone.dtype)?;
        self.config.admits(&layout, dir)?;
        Ok((layout, bytes))
    }

    /// Reads registered tenant `t`'s block from its folder again (refusing a folder whose
    /// tenant changed since it was registered).
    pub(crate) fn read_block(&self, t: u32) -> Result<Vec<u8>> {
        let want = self.layout(t)?;
        let (layout, bytes) = self.read(&want.dir)?;
        if &layout != want {
            return Err(Error::pet(
                &want.dir,
                "tenant",
                "its files changed since it was registered (another block directory)",
            ));
        }
        Ok(bytes)
    }

    /// Registers a read tenant under its name; returns its id.
    pub(crate) fn insert(&mut self, layout: BlockLayout) -> Result<u32> {
        if self.by_name.contains_key(&layout.name) {
            return Err(Error::pet(
                &layout.dir,
                "name",
                format!("tenant `{}` is already registered", layout.name),
            ));
        }
        let id = u32::try_from(self.layouts.len())
            .ok()
            .filter(|&i| (i as usize) < super::MAX_TENANTS)
            .ok_or_else(|| {
                Error::pet(
                    &layout.dir,
                    "tenant",
                    format!("a PET slot holds at most {} tenants", super::MAX_TENANTS),
                )
            })?;
        self.by_name.insert(layout.name.clone(), id);
        self.layouts.push(layout);
        self.residency.grow(self.layouts.len());
        Ok(id)
    }

    /// The block directory of tenant `t`.
    pub(crate) fn layout(&self, t: u32) -> Result<&BlockLayout> {
        self.layouts.get(t as usize).ok_or_else(|| {
            Error::Input(format!(
                "tenant id {t} is not registered ({} tenants)",
                self.layouts.len()
            ))
        })
    }

    /// The id of the tenant named `name`.
    pub(crate) fn id(&self, name: &str) -> Option<PetId> {
        self.by_name.get(name).map(|&i| PetId(i))
    }

    /// Host bytes of every registered tenant's directory.
    pub(crate) fn directory_bytes(&self) -> usize {
        self.layouts
            .iter()
            .map(|l| l.host_bytes() + l.name.len() + 48)
            .sum()
    }

    /// Checks a batch and its per-row tenants; returns the segments in row order of a batch
    /// regrouped so that each tenant's rows are consecutive (first appearance order), and the
    /// permutation (`order[k]` = original row of regrouped row `k`).
    pub(crate) fn group(&self, batch: &Batch, tenants: &[PetId]) -> Result<Grouped> {
        if tenants.len() != batch.batch {
            return Err(Error::Input(format!(
                "{} tenants for a batch of {} rows: give one per row",
                tenants.len(),
                batch.batch
            )));
        }
        if batch.batch > self.config.max_batch || batch.seq > self.config.max_seq {
            return Err(Error::Input(format!(
                "a batch of {} rows × {} tokens: this PET slot takes at most {} × {}",
                batch.batch, batch.seq, self.config.max_batch, self.config.max_seq
            )));
        }
        let mut segs: Vec<(u32, Vec<usize>)> = Vec::new();
        let mut at: BTreeMap<u32, usize> = BTreeMap::new();
        for (row, t) in tenants.iter().enumerate() {
            self.layout(t.0)?;
            let i = *at.entry(t.0).or_insert_with(|| {
                segs.push((t.0, Vec::new()));
                segs.len() - 1
            });
            segs[i].1.push(row);
        }
        if segs.len() > self.config.gpu_slots {
            return Err(Error::Input(format!(
                "the GPU adapter pool has {} slots: a batch of {} distinct tenants does not fit",
                self.config.gpu_slots,
                segs.len()
            )));
        }
        let order: Vec<usize> = segs.iter().flat_map(|s| s.1.iter().copied()).collect();
        Ok(Grouped {
            segments: segs.iter().map(|s| (s.0, s.1.len())).collect(),
            order,
        })
    }

    /// The batch with its rows in `order`.
    pub(crate) fn regroup(batch: &Batch, order: &[usize]) -> Batch {
        let s = batch.seq;
        let pick = |v: &[u32]| -> Vec<u32> {
            order
                .iter()
                .flat_map(|&r| v[r * s..(r + 1) * s].iter().copied())
                .collect()
        };
        Batch {
            ids: pick(&batch.ids),
            type_ids: pick(&batch.type_ids),
            mask: pick(&batch.mask),
            batch: order.len(),
            seq: s,
        }
    }
}

/// A batch's rows grouped by tenant.
pub(crate) struct Grouped {
    /// (tenant, rows) in regrouped row order.
    pub(crate) segments: Vec<(u32, usize)>,
    /// Original row of each regrouped row.
    pub(crate) order: Vec<usize>,
}

impl Grouped {
    /// The tenants of the batch.
    pub(crate) fn tenants(&self) -> BTreeSet<u32> {
        self.segments.iter().map(|s| s.0).collect()
    }
}

/// Loads tenant `t` into `to` (slot `slot`, or the tier's choice), evicting no tenant that
/// `protect` names; appends what moved to `out` (a disk read into the GPU pool with a host
/// tier is a disk → host load, then a host → GPU one).
pub(crate) fn load(
    core: &mut Core,
    store: &mut dyn Store,
    t: u32,
    to: Tier,
    slot: Option<u32>,
    protect: &dyn Fn(u32) -> bool,
    out: &mut Vec<Load>,
) -> Result<()> {
    let bytes = core.layout(t)?.bytes();
    let here = match to {
        Tier::Gpu => core.residency.gpu.slot(t),
        Tier::Host => core.residency.host.slot(t),
        Tier::Disk => {
            return Err(Error::Input(
                "every tenant is on disk: evict it from the other tiers instead".into(),
            ))
        }
    };
    if let Some(s) = here {
        if slot.is_none_or(|want| want == s) {
            core.residency.touch(t);
            return Ok(());
        }
        core.residency.remove(t, to)?;
    }
    let record = |from, slot, evicted: Option<u32>| Load {
        tenant: PetId(t),
        from,
        to,
        slot,
        bytes,
        evicted: evicted.map(PetId),
    };
    match to {
        Tier::Host => {
            let block = core.read_block(t)?;
            let (s, ev) = core.residency.place(t, Tier::Host, slot, protect)?;
            store.write_host(s, &block)?;
            out.push(record(Tier::Disk, s, ev));
        }
        _ => {
            if core.residency.host.slot(t).is_none() && core.residency.host.capacity() > 0 {
                load(core, store, t, Tier::Host, None, protect, out)?;
            }
            let (src, from) = match core.residency.host.slot(t) {
                Some(h) => (Src::Host(h), Tier::Host),
                None => (Src::Bytes(core.read_block(t)?), Tier::Disk),
            };
            let (s, ev) = core.residency.place(t, Tier::Gpu, slot, protect)?;
            store.to_device(core.layout(t)?, s, src)?;
            out.push(record(from, s, ev));
        }
    }
    Ok(())
}

/// A tenant folder read, checked and packed.
pub(crate) type Read = Result<(BlockLayout, Vec<u8>)>;

/// Reads tenant folders on `threads` threads (each read checked and packed as
/// [`Core::read`]), in order.
pub(crate) fn read_all(core: &Core, dirs: &[PathBuf], threads: usize) -> Vec<Read> {
    let threads = threads.clamp(1, 64);
    let mut out: Vec<Option<Read>> = (0..dirs.len()).map(|_| None).collect();
    std::thread::scope(|sc| {
        let chunk = dirs.len().div_ceil(threads).max(1);
        let handles: Vec<_> = dirs
            .chunks(chunk)
            .map(|c| sc.spawn(move || c.iter().map(|d| core.read(d)).collect::<Vec<_>>()))
            .collect();
        let mut i = 0;
        for h in handles {
            let rs = h.join().unwrap_or_else(|_| {
                vec![Err(Error::Input("a tenant-reading thread panicked".into()))]
            });
            for r in rs {
                if i < out.len() {
                    out[i] = Some(r);
                }
                i += 1;
            }
        }
    });
    out.into_iter()
        .map(|r| r.unwrap_or_else(|| Err(Error::Input("a tenant was not read".into()))))
        .collect()
}
