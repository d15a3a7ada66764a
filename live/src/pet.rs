//! Parameter-efficient tenants as live executors: every executor runs mixed batches over the
//! zoo's backbone, each request's rows through its tenant's delta — the runtime's [`PetSlot`]
//! (the CPU twin, or a GPU slot: the backbone's arena, a GPU delta pool, a pinned host tier,
//! misses copied stage by stage under the pass).
//!
//! Workload tenant `i` is the PET zoo's tenant `i mod zoo size`. Every zoo tenant used is
//! registered before the clock starts (its delta packed into the host tier). The ledger
//! decides every delta load and its pool slot; the slot's own delta pool has as many slots as
//! the ledger's, so a delta the ledger holds in the pool is there. The executors of one device
//! share its one PET slot (one backbone, one delta pool): their passes take turns on it.

use crate::error::{Error, Result};
use crate::executor::{Executor, Item, Prefetcher, RowOutput, Source};
use ptm_runtime::pet::{PetId, PetSlot, PetSlotConfig, PetZoo, Tier};
use ptm_runtime::tokenize::random_rows;
use ptm_runtime::{Batch, Config, DType, Device, KernelOptions, Task};
use ptm_sim::workload::TenantId;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

/// What the executors of a PET zoo share: the device's PET slot and the tenants' ids in it.
pub struct PetTenants {
    slot: Mutex<PetSlot>,
    ids: Vec<PetId>,
    cfg: Config,
    /// Workload tenants.
    tenants: usize,
    max_seq: usize,
}

impl PetTenants {
    /// Whether `dir` is a PET zoo (it has a `pet.ron`).
    pub fn is_pet_zoo(dir: &Path) -> bool {
        dir.join("pet.ron").is_file()
    }

    /// Slots of the delta pool that `delta_pool` asks for over `tenants` workload tenants of
    /// the zoo at `dir` (`None` or `Auto`: one per tenant used).
    pub fn pool_slots(
        dir: &Path,
        tenants: usize,
        dtype: DType,
        delta_pool: Option<ptm_sim::ledger::Capacity>,
    ) -> Result<usize> {
        use ptm_sim::ledger::Capacity;
        let zoo = PetZoo::read(dir)?;
        let used = tenants.min(zoo.tenants.len()).max(1);
        let cfg = Config::from_file(&dir.join(&zoo.backbone).join("config.json"))?;
        let bytes = PetSlotConfig::for_zoo(&zoo, &cfg, dtype, (1, 1), (1, 1))
            .slot_bytes
            .max(1);
        Ok(match delta_pool {
            None | Some(Capacity::Auto) => used,
            Some(Capacity::Tenants(n)) => n as usize,
            Some(Capacity::Bytes(b)) => (b / bytes as u64) as usize,
        }
        .max(1))
    }

    /// Reads the PET zoo at `dir` for `tenants` workload tenants on `device` in `dtype`: the
    /// backbone once, a delta pool of `delta_slots` slots, every zoo tenant used registered
    /// into the host tier; passes of up to `max_rows` rows of `max_seq` tokens.
    pub fn read(
        dir: &Path,
        tenants: usize,
        dtype: DType,
        device: Device,
        (max_rows, max_seq): (usize, usize),
        delta_slots: usize,
        options: KernelOptions,
    ) -> Result<Arc<PetTenants>> {
        let zoo = PetZoo::read(dir)?;
        if zoo.tenants.is_empty() || tenants == 0 {
            return Err(Error::Invalid(format!(
                "{}: no parameter-efficient tenants to serve",
                dir.display()
            )));
        }
        let backbone = dir.join(&zoo.backbone);
        let cfg = Config::from_file(&backbone.join("config.json"))?;
        let used = tenants.min(zoo.tenants.len());
        let max_seq = max_seq.clamp(1, cfg.max_tokens());
        let mut config = PetSlotConfig::for_zoo(
            &zoo,
            &cfg,
            dtype,
            (delta_slots.max(1), used),
            (max_rows.max(1), max_seq),
        );
        config.options = options;
        let mut slot = PetSlot::new(&backbone, dtype, device, config)?;
        let dirs: Vec<_> = zoo.tenants[..used]
            .iter()
            .map(|t| dir.join(&t.name))
            .collect();
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let ids = slot.register_all(&dirs, threads)?;
        Ok(Arc::new(PetTenants {
            slot: Mutex::new(slot),
            ids,
            cfg,
            tenants,
            max_seq,
        }))
    }

    /// Prepares every pass shape `(rows, seq)` of `shapes` before the clock starts: on a GPU,
    /// passes whose CUDA graphs the replay would otherwise capture on first use (a capture
    /// takes a hundred milliseconds or more, which a request would wait for). A graph belongs
    /// to a bucket and a signature — the sites and heads its tenants use, and whether the pass
    /// follows delta loads — so for one tenant of each kind of head (task, labels) among the
    /// first tenants, and for every combination of up to four such kinds, each shape runs once
    /// right after the deltas' loads and once with them resident. The deltas then leave the
    /// GPU pool again (the ledger starts with it empty). Nothing to do on the CPU twin.
    pub fn warm_up(&self, shapes: &[(usize, usize)], seed: u64) -> Result<()> {
        if self.lock()?.device() == Device::Cpu || shapes.is_empty() {
            return Ok(());
        }
        self.warm_passes(shapes, seed).map(|_| ())
    }

    /// [`PetTenants::warm_up`]'s passes on any device; returns how many ran.
    fn warm_passes(&self, shapes: &[(usize, usize)], seed: u64) -> Result<usize> {
        let mut slot = self.lock()?;
        let mut passes = 0;
        let mut kinds: Vec<((Task, usize), PetId)> = Vec::new();
        for &id in self.ids.iter().take(WARM_SCAN) {
            let l = slot.layout(id)?;
            let kind = (l.task(), l.labels());
            if !kinds.iter().any(|(k, _)| *k == kind) {
                kinds.push((kind, id));
            }
        }
        let reps: Vec<PetId> = kinds.iter().map(|(_, id)| *id).collect();
        let mut groups: Vec<Vec<PetId>> = Vec::new();
        if reps.len() <= WARM_COMBINED_KINDS {
            for mask in 1u32..(1 << reps.len()) {
                groups.push(
                    (0..reps.len())
                        .filter(|i| mask & (1 << i) != 0)
                        .map(|i| reps[i])
                        .collect(),
                );
            }
        } else {
            groups.extend(reps.iter().map(|&id| vec![id]));
            groups.push(reps.clone());
        }
        let mut state = seed | 1;
        for &(rows, seq) in shapes {
            let seq = seq.clamp(1, self.max_seq) as u32;
            let tokens = random_rows(&self.cfg, rows as u32, seq, &mut state);
            let batch = Batch::from_rows(&tokens, self.cfg.pad_token_id, None)?;
            for group in groups.iter().filter(|g| g.len() <= rows) {
                let tenants: Vec<PetId> = (0..rows).map(|r| group[r % group.len()]).collect();
                for &id in group {
                    slot.evict(id, Tier::Gpu)?;
                }
                slot.forward_mixed(&batch, &tenants)?;
                slot.forward_mixed(&batch, &tenants)?;
                passes += 2;
            }
        }
        for &id in &reps {
            slot.evict(id, Tier::Gpu)?;
        }
        slot.wait_loads()?;
        Ok(passes)
    }

    /// The slot's id of workload tenant `tenant`.
    fn id(&self, tenant: TenantId) -> Result<PetId> {
        if tenant as usize >= self.tenants {
            return Err(Error::Invalid(format!("no PET tenant for tenant {tenant}")));
        }
        Ok(self.ids[tenant as usize % self.ids.len()])
    }

    fn lock(&self) -> Result<MutexGuard<'_, PetSlot>> {
        self.slot
            .lock()
            .map_err(|_| Error::Invalid("the PET slot was poisoned by a failed instance".into()))
    }

    /// Loads `tenant`'s delta into the GPU delta pool's `slot` (its source: the highest tier
    /// that holds it).
    fn load(&self, tenant: TenantId, slot: Option<u32>) -> Result<()> {
        let id = self.id(tenant)?;
        self.lock()?.load(id, Tier::Gpu, slot)?;
        Ok(())
    }
}

/// Tenants scanned for kinds of heads by [`PetTenants::warm_up`].
const WARM_SCAN: usize = 256;

/// The most kinds of heads whose every combination [`PetTenants::warm_up`] runs (above it,
/// each kind alone and all together).
const WARM_COMBINED_KINDS: usize = 4;

/// One executor: passes over the shared PET slot.
pub struct PetExecutor {
    shared: Arc<PetTenants>,
    forward_batch: usize,
    token_state: u64,
}

impl PetExecutor {
    /// An executor over `shared` running passes of `forward_batch` rows.
    pub fn new(shared: Arc<PetTenants>, forward_batch: u32, seed: u64) -> Self {
        PetExecutor {
            shared,
            forward_batch: forward_batch.max(1) as usize,
            token_state: seed | 1,
        }
    }
}

impl Executor for PetExecutor {
    fn load(&mut self, tenant: TenantId, _source: Source, promote: Option<u32>) -> Result<()> {
        self.shared.load(tenant, promote)
    }

    fn infer(&mut self, batch: &[Item<'_>]) -> Result<Vec<Vec<RowOutput>>> {
        let shared = Arc::clone(&self.shared);
        let cfg = &shared.cfg;
        // Every request's rows, each row with its tenant.
        let mut rows: Vec<Vec<u32>> = Vec::new();
        let mut row_tenants: Vec<PetId> = Vec::new();
        let mut owner: Vec<usize> = Vec::new();
        for (k, item) in batch.iter().enumerate() {
            let id = shared.id(item.request.tenant)?;
            let before = rows.len();
            match item.rows {
                Some(r) => rows.extend_from_slice(r),
                None => {
                    let seq = item.request.seq_len.clamp(1, shared.max_seq as u32);
                    rows.extend(random_rows(
                        cfg,
                        item.request.samples,
                        seq,
                        &mut self.token_state,
                    ));
                }
            }
            let n = rows.len() - before;
            row_tenants.extend(std::iter::repeat_n(id, n));
            owner.extend(std::iter::repeat_n(k, n));
        }
        let mut out: Vec<Vec<RowOutput>> = vec![Vec::new(); batch.len()];
        let mut slot = shared.lock()?;
        for start in (0..rows.len()).step_by(self.forward_batch) {
            let end = (start + self.forward_batch).min(rows.len());
            let pass = Batch::from_rows(&rows[start..end], cfg.pad_token_id, None)?;
            let mixed = slot.forward_mixed(&pass, &row_tenants[start..end])?;
            for (r, head) in mixed.outputs.iter().enumerate() {
                let len = pass.lengths()[r];
                let values = head.row(0);
                let (shape, values) = match head.task {
                    Task::TokenClassification => {
                        let labels = head.shape[2];
                        (vec![len, labels], values[..len * labels].to_vec())
                    }
                    _ => (vec![values.len()], values.to_vec()),
                };
                out[owner[start + r]].push(RowOutput { shape, values });
            }
        }
        Ok(out)
    }
}

/// Prefetches of deltas into the GPU delta pool's slots.
pub struct PetPrefetcher {
    shared: Arc<PetTenants>,
}

impl PetPrefetcher {
    /// A prefetcher over `shared`.
    pub fn new(shared: &Arc<PetTenants>) -> Self {
        PetPrefetcher {
            shared: Arc::clone(shared),
        }
    }
}

impl Prefetcher for PetPrefetcher {
    fn prefetch(&mut self, tenant: TenantId, slot: u32) -> Result<()> {
        self.shared.load(tenant, Some(slot))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ptm_runtime::pet::{make_pet_zoo, PetSpec};
    use ptm_runtime::zoo::Arch;
    use ptm_sim::workload::Request;

    fn request(tenant: TenantId, samples: u32) -> Request {
        Request {
            tenant,
            samples,
            seq_len: 12,
            arrival_ns: 0,
            deadline_ns: 0,
        }
    }

    /// A tiny BitFit zoo of `n` tenants on the CPU (passes of up to 8 rows of 32 tokens, a
    /// delta pool of `n`), and the folder it lives in.
    fn bitfit_tenants(n: usize) -> (tempfile::TempDir, Arc<PetTenants>) {
        let tmp = tempfile::tempdir().unwrap();
        make_pet_zoo(
            Arch::Tiny,
            &PetSpec::Bitfit,
            n,
            tmp.path(),
            DType::Fp32,
            5,
            1,
        )
        .unwrap();
        let shared = PetTenants::read(
            tmp.path(),
            n,
            DType::Fp32,
            Device::Cpu,
            (8, 32),
            n,
            KernelOptions::default(),
        )
        .unwrap();
        (tmp, shared)
    }

    #[test]
    fn the_warm_up_runs_every_kind_and_leaves_the_gpu_pool_empty() {
        let (_zoo, shared) = bitfit_tenants(6);
        // The CPU twin has no graphs to capture.
        shared.warm_up(&[(4, 16)], 1).unwrap();
        let kinds = {
            let slot = shared.lock().unwrap();
            let mut k: Vec<(Task, usize)> = Vec::new();
            for &id in &shared.ids {
                let l = slot.layout(id).unwrap();
                if !k.contains(&(l.task(), l.labels())) {
                    k.push((l.task(), l.labels()));
                }
            }
            k.len()
        };
        assert!(kinds >= 2, "the zoo's tenants have several kinds of heads");
        // Every combination of up to four kinds (else each alone and all together) that fits
        // the rows, twice (after loads, resident), per shape; a shape of 1 row takes the kinds
        // one at a time.
        let groups_of_8 = match kinds {
            k if k <= WARM_COMBINED_KINDS => (1usize << k) - 1,
            k => k + usize::from(k <= 8),
        };
        let passes = shared.warm_passes(&[(8, 16), (1, 8)], 3).unwrap();
        assert_eq!(passes, 2 * (groups_of_8 + kinds));
        let slot = shared.lock().unwrap();
        for &id in &shared.ids {
            assert_ne!(slot.tier(id), Tier::Gpu, "{id:?} left in the GPU pool");
        }
    }

    /// A mixed batch's rows equal each tenant run alone over the same rows.
    #[test]
    fn mixed_batches_equal_each_tenant_alone() {
        let (_zoo, shared) = bitfit_tenants(3);
        let mut exec = PetExecutor::new(shared.clone(), 8, 1);
        let rows_a: Vec<Vec<u32>> = vec![vec![2, 40, 41, 3], vec![2, 50, 51, 52, 53, 3]];
        let rows_b: Vec<Vec<u32>> = vec![vec![2, 7, 3]];
        let (ra, rb) = (request(0, 2), request(2, 1));
        let got = exec
            .infer(&[
                Item {
                    request: &ra,
                    rows: Some(&rows_a),
                },
                Item {
                    request: &rb,
                    rows: Some(&rows_b),
                },
            ])
            .unwrap();
        assert_eq!((got[0].len(), got[1].len()), (2, 1));
        // Each tenant alone over the whole batch's rows (same padding), through the slot.
        let all: Vec<Vec<u32>> = rows_a.iter().chain(&rows_b).cloned().collect();
        let batch = Batch::from_rows(&all, 0, None).unwrap();
        let alone = |t: TenantId| {
            let id = shared.id(t).unwrap();
            let mut slot = shared.lock().unwrap();
            slot.forward_mixed(&batch, &vec![id; all.len()])
                .unwrap()
                .outputs
        };
        let (a, b) = (alone(0), alone(2));
        for (r, out) in got[0].iter().enumerate() {
            assert_eq!(
                out.values,
                a[r].row(0)[..out.values.len()],
                "tenant 0 row {r}"
            );
        }
        assert_eq!(
            got[1][0].values,
            b[2].row(0)[..got[1][0].values.len()],
            "tenant 2"
        );
        assert!(exec.load(9, Source::Host, None).is_err());
        exec.load(1, Source::File, Some(0)).unwrap();
    }
}
