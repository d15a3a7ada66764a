//! Parameter-efficient tenants as live executors: every executor keeps the zoo's backbone and
//! runs mixed batches, each request's rows through its tenant's delta (the runtime's
//! [`PetSet`]).
//!
//! Workload tenant `i` is the PET zoo's tenant `i mod zoo size`. Every zoo tenant used is read
//! once into host memory before the clock starts. The ledger decides where each delta comes
//! from (its GPU delta pool slot, the host, or its file); on the CPU the pass reads deltas in
//! host memory in place, so a load from the host or a pool slot has nothing to copy, and a load
//! from the file reads the tenant's files again (what a cold delta costs). GPU PET executors
//! are the runtime's next step: until then `--device cuda` is refused for a PET zoo.

use crate::error::{Error, Result};
use crate::executor::{Executor, Item, Prefetcher, RowOutput, Source};
use ptm_runtime::pet::forward::Segment;
use ptm_runtime::pet::{Backbone, PetSet, PetZoo};
use ptm_runtime::tokenize::random_rows;
use ptm_runtime::{Batch, DType, Device, Task};
use ptm_sim::workload::TenantId;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What the executors of a PET zoo share: the backbone and the registered tenants.
pub struct PetTenants {
    set: PetSet,
    dirs: Vec<PathBuf>,
    /// Workload tenants.
    tenants: usize,
    max_seq: usize,
}

impl PetTenants {
    /// Whether `dir` is a PET zoo (it has a `pet.ron`).
    pub fn is_pet_zoo(dir: &Path) -> bool {
        dir.join("pet.ron").is_file()
    }

    /// Reads the PET zoo at `dir` for `tenants` workload tenants on `device` in `dtype`: the
    /// backbone once, and each zoo tenant used into host memory.
    pub fn read(
        dir: &Path,
        tenants: usize,
        dtype: DType,
        device: Device,
        max_seq: usize,
    ) -> Result<Arc<PetTenants>> {
        if device != Device::Cpu {
            return Err(Error::Invalid(format!(
                "{}: parameter-efficient tenants run live on the CPU so far (the GPU's mixed \
                 passes are not wired into live mode yet): use --device cpu",
                dir.display()
            )));
        }
        let zoo = PetZoo::read(dir)?;
        if zoo.tenants.is_empty() || tenants == 0 {
            return Err(Error::Invalid(format!(
                "{}: no parameter-efficient tenants to serve",
                dir.display()
            )));
        }
        let backbone = Backbone::load(&dir.join(&zoo.backbone), dtype)?;
        let used = tenants.min(zoo.tenants.len());
        let mut set = PetSet::new(backbone, used);
        let mut dirs = Vec::with_capacity(used);
        for t in &zoo.tenants[..used] {
            let d = dir.join(&t.name);
            set.register(&d)?;
            dirs.push(d);
        }
        let max_seq = max_seq.clamp(1, set.backbone.config().max_tokens());
        Ok(Arc::new(PetTenants {
            set,
            dirs,
            tenants,
            max_seq,
        }))
    }

    /// The registered index of workload tenant `tenant`.
    fn index(&self, tenant: TenantId) -> Result<usize> {
        if tenant as usize >= self.tenants {
            return Err(Error::Invalid(format!("no PET tenant for tenant {tenant}")));
        }
        Ok(tenant as usize % self.dirs.len())
    }
}

/// One executor: the backbone and the tenants' deltas (on the CPU, read in place).
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
    fn load(&mut self, tenant: TenantId, source: Source, _promote: Option<u32>) -> Result<()> {
        let i = self.shared.index(tenant)?;
        if source == Source::File {
            // A cold delta: its files read again (and checked against the backbone).
            ptm_runtime::pet::PetTenant::load(&self.shared.dirs[i], &self.shared.set.backbone)?;
        }
        Ok(())
    }

    fn infer(&mut self, batch: &[Item<'_>]) -> Result<Vec<Vec<RowOutput>>> {
        let shared = Arc::clone(&self.shared);
        let cfg = shared.set.backbone.config();
        // Rows of every request, each request one segment of its tenant.
        let mut rows: Vec<Vec<u32>> = Vec::new();
        let mut segments: Vec<(usize, usize)> = Vec::with_capacity(batch.len());
        for item in batch {
            let t = shared.index(item.request.tenant)?;
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
            segments.push((t, rows.len() - before));
        }
        let mut out: Vec<Vec<RowOutput>> = vec![Vec::new(); batch.len()];
        // Passes of `forward_batch` rows; a request's rows may span two passes.
        let mut owner: Vec<usize> = Vec::with_capacity(rows.len());
        for (k, &(_, n)) in segments.iter().enumerate() {
            owner.extend(std::iter::repeat_n(k, n));
        }
        let mut start = 0;
        while start < rows.len() {
            let end = (start + self.forward_batch).min(rows.len());
            let pass = Batch::from_rows(&rows[start..end], cfg.pad_token_id, None)?;
            let mut segs: Vec<Segment> = Vec::new();
            for r in start..end {
                let t = segments[owner[r]].0;
                match segs.last_mut() {
                    Some(s) if s.tenant == t && owner[r] == owner[r - 1] => s.rows += 1,
                    _ => segs.push(Segment { tenant: t, rows: 1 }),
                }
            }
            let heads = shared.set.forward(&pass, &segs)?;
            let mut row = 0;
            for (seg, head) in segs.iter().zip(&heads) {
                for b in 0..seg.rows {
                    let len = pass.lengths()[row];
                    let values = head.row(b);
                    let (shape, values) = match head.task {
                        Task::TokenClassification => {
                            let labels = head.shape[2];
                            (vec![len, labels], values[..len * labels].to_vec())
                        }
                        _ => (vec![values.len()], values.to_vec()),
                    };
                    out[owner[start + row]].push(RowOutput { shape, values });
                    row += 1;
                }
            }
            start = end;
        }
        Ok(out)
    }
}

/// Prefetches of deltas: on the CPU the pass reads them in host memory, so there is nothing
/// to copy; the tenant is checked.
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
    fn prefetch(&mut self, tenant: TenantId, _slot: u32) -> Result<()> {
        self.shared.index(tenant).map(|_| ())
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

    /// A mixed batch's rows equal each tenant run alone over the same rows.
    #[test]
    fn mixed_batches_equal_each_tenant_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let spec = PetSpec::Bitfit;
        make_pet_zoo(Arch::Tiny, &spec, 3, tmp.path(), DType::Fp32, 5, 1).unwrap();
        let shared = PetTenants::read(tmp.path(), 3, DType::Fp32, Device::Cpu, 32).unwrap();
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
        // Each tenant alone over the whole batch's rows (same padding), through the set.
        let all: Vec<Vec<u32>> = rows_a.iter().chain(&rows_b).cloned().collect();
        let batch = Batch::from_rows(&all, 0, None).unwrap();
        let alone = |t: usize| shared.set.forward_one(t, &batch).unwrap();
        let (a, b) = (alone(0), alone(2));
        for (r, out) in got[0].iter().enumerate() {
            assert_eq!(out.values, a.row(r)[..out.values.len()], "tenant 0 row {r}");
        }
        assert_eq!(
            got[1][0].values,
            b.row(2)[..got[1][0].values.len()],
            "tenant 2"
        );
        assert!(exec.load(9, Source::Host, None).is_err());
        exec.load(1, Source::File, Some(0)).unwrap();
    }
}
