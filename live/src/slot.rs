//! The runtime as a live [`Executor`]: each instance is one switching slot of the runtime
//! (issue 4's slots), on the CPU (candle, the twin CI runs) or a GPU (cudarc).
//!
//! Workload tenant `i` is zoo model `i mod zoo size`. Before the replay every zoo model used is
//! read once into the host cache (pinned on a GPU) shared by all instances, and each GPU slot
//! captures the CUDA graphs of every head of the zoo for the shapes it will run (untimed, as
//! FastPTM's server starts with its kernels loaded). Then, on the clock:
//! - a **cold load** (the instance held nothing) reads the tenant's checkpoint from its file
//!   into the slot — what `ptm calibrate` times as a cold load;
//! - a **switch** copies the tenant from the host cache into the slot's arena: on a GPU,
//!   asynchronous copies on the copy stream that all instances share (one PCIe link), waited
//!   for before the load is reported done — what `ptm calibrate` times as a split switch;
//! - an **inference** of `samples` × `seq_len` runs as passes of at most `forward_batch` rows
//!   (real token ids when served, else random ids); on a GPU the passes are enqueued back to
//!   back as CUDA-graph replays and synchronised once, as the calibration's forward replays are.

use crate::error::{Error, Result};
use crate::executor::{Executor, Item, Prefetcher, RowOutput, Source};
use anyhow::Context as _;
use ptm_runtime::slot::{Executors, PoolSize};
use ptm_runtime::tokenize::random_rows;
use ptm_runtime::zoo::model_dir;
use ptm_runtime::{
    ArchLayout, Batch, Config, DType, Device, Eviction, HeadOutput, KernelOptions, Slot, SlotHost,
    Task, Zoo,
};
use ptm_sim::ledger::Capacity;
use ptm_sim::workload::TenantId;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A zoo model serving workload tenants.
struct TenantModel {
    name: String,
    dir: PathBuf,
    cfg: Config,
}

/// What every instance shares: the tenants and the runtime's [`SlotHost`] (the host cache and,
/// on a GPU, the copy stream).
pub struct Tenants {
    host: SlotHost,
    /// The zoo models used, each read once: workload tenant `i` is `models[i % len]`.
    models: Vec<TenantModel>,
    /// Workload tenants.
    tenants: usize,
    /// Whether the host has a GPU weight pool.
    pooled: bool,
    /// Largest pass the slots run: rows × tokens.
    max_rows: usize,
    max_seq: usize,
}

impl Tenants {
    /// Reads the zoo at `dir`, maps `tenants` workload tenants onto its models and reads every
    /// model used into a host cache for `device` (pinned on a GPU); slots will run passes of
    /// up to `max_rows` rows of `max_seq` tokens with the default [`KernelOptions`]. With
    /// `pool`, the host gets a GPU weight pool of that capacity (`Auto`: as many tenants as
    /// fit beside `instances` executors, at most one per model used; a pool that does not fit
    /// is refused with the numbers): [`Tenants::pool_slots`] says how many it holds.
    #[allow(clippy::too_many_arguments)]
    pub fn read(
        dir: &Path,
        tenants: usize,
        dtype: DType,
        device: Device,
        max_rows: usize,
        max_seq: usize,
        pool: Option<Capacity>,
        instances: usize,
        options: KernelOptions,
    ) -> anyhow::Result<Arc<Tenants>> {
        let zoo = Zoo::read(dir)?;
        anyhow::ensure!(
            !zoo.models.is_empty(),
            "{}: the zoo has no models",
            dir.display()
        );
        anyhow::ensure!(tenants > 0, "no tenants to serve");
        let used = tenants.min(zoo.models.len());
        let mut models = Vec::with_capacity(used);
        for m in &zoo.models[..used] {
            let d = model_dir(dir, &m.name);
            let cfg = Config::from_file(&d.join("config.json"))?;
            models.push(TenantModel {
                name: m.name.clone(),
                dir: d,
                cfg,
            });
        }
        let max_labels = models
            .iter()
            .map(|m| m.cfg.labels())
            .max()
            .unwrap_or(1)
            .max(1);
        let arch = ArchLayout::new(&models[0].cfg, max_labels, dtype)?;
        let max_seq = max_seq.clamp(1, models[0].cfg.max_tokens());
        let mut host = SlotHost::new(device, arch, used, Eviction::Refuse, options)?;
        if let Some(capacity) = pool {
            let size = match capacity {
                Capacity::Tenants(n) => PoolSize::Tenants(n as usize),
                Capacity::Bytes(b) => PoolSize::Tenants((b / host.arch().bytes() as u64) as usize),
                Capacity::Auto => PoolSize::Fit { at_most: used },
            };
            let executors = Executors {
                count: instances,
                max_batch: max_rows.max(1),
                max_seq,
            };
            host = host
                .with_pool(size, executors)
                .context("making the GPU weight pool")?;
        }
        for m in &models {
            host.register(&m.name, &m.dir)
                .with_context(|| format!("reading tenant `{}` into the host cache", m.name))?;
        }
        Ok(Arc::new(Tenants {
            pooled: host.pool_slots().is_some(),
            host,
            models,
            tenants,
            max_rows: max_rows.max(1),
            max_seq,
        }))
    }

    /// Slots of the GPU weight pool (`None`: no pool).
    pub fn pool_slots(&self) -> Option<usize> {
        self.host.pool_slots()
    }

    /// Checks that `instances` slots fit on the device (a clear refusal, before any is made).
    pub fn check_fit(&self, instances: usize) -> anyhow::Result<()> {
        Ok(self
            .host
            .check_fit(instances, self.max_rows, self.max_seq)?)
    }

    fn model(&self, tenant: TenantId) -> Result<&TenantModel> {
        let i = tenant as usize;
        if i >= self.tenants {
            return Err(Error::Invalid(format!("no model for tenant {tenant}")));
        }
        Ok(&self.models[i % self.models.len()])
    }
}

/// One instance: a slot of the runtime.
pub struct SlotExecutor {
    shared: Arc<Tenants>,
    slot: Slot,
    held: Option<TenantId>,
    forward_batch: u32,
    token_state: u64,
}

impl SlotExecutor {
    /// An empty instance over `shared`, `forward_batch` rows per pass; on a GPU its graphs are
    /// captured now for every head of the zoo and each pass shape `(rows, seq)` of `warm`.
    pub fn new(
        shared: Arc<Tenants>,
        forward_batch: u32,
        seed: u64,
        warm: &[(usize, usize)],
    ) -> anyhow::Result<Self> {
        let mut slot = shared.host.slot(shared.max_rows, shared.max_seq)?;
        let tenants: Vec<(&str, &Config)> = shared
            .models
            .iter()
            .map(|m| (m.name.as_str(), &m.cfg))
            .collect();
        let warm: Vec<(usize, usize)> = warm
            .iter()
            .map(|&(rows, seq)| (rows, seq.clamp(1, shared.max_seq)))
            .collect();
        slot.warm_up(&shared.host, &tenants, &warm, seed)?;
        Ok(SlotExecutor {
            shared,
            slot,
            held: None,
            forward_batch: forward_batch.max(1),
            token_state: seed | 1,
        })
    }
}

impl SlotExecutor {
    /// Runs `rows` (token ids) of the tenant it holds in passes of `forward_batch` rows.
    fn run_rows(&mut self, cfg: &Config, rows: &[Vec<u32>]) -> Result<Vec<RowOutput>> {
        let batches = rows
            .chunks(self.forward_batch as usize)
            .map(|chunk| Batch::from_rows(chunk, cfg.pad_token_id, None))
            .collect::<Result<Vec<_>, _>>()?;
        let outs: Vec<HeadOutput> = self.slot.forward_many(&batches)?;
        let mut outputs = Vec::with_capacity(rows.len());
        for (batch, out) in batches.iter().zip(&outs) {
            for (b, &len) in batch.lengths().iter().enumerate() {
                let row = out.row(b);
                let (shape, values) = match out.task {
                    Task::TokenClassification => {
                        let labels = out.shape[2];
                        (vec![len, labels], row[..len * labels].to_vec())
                    }
                    _ => (vec![row.len()], row.to_vec()),
                };
                outputs.push(RowOutput { shape, values });
            }
        }
        Ok(outputs)
    }
}

impl Executor for SlotExecutor {
    fn load(&mut self, tenant: TenantId, source: Source, promote: Option<u32>) -> Result<()> {
        let shared = Arc::clone(&self.shared);
        let m = shared.model(tenant)?;
        self.held = None;
        // Each returns when the weights have landed and the tenant can run.
        match source {
            Source::File => self.slot.load_file(&shared.host, &m.name, &m.dir)?,
            Source::Host => self.slot.switch(&shared.host, &m.name)?,
            Source::Pool(slot) => self.slot.load_pool(&shared.host, slot, &m.name)?,
        }
        if let Some(slot) = promote {
            self.slot.promote(&shared.host, slot)?;
        }
        self.held = Some(tenant);
        Ok(())
    }

    fn infer(&mut self, batch: &[Item<'_>]) -> Result<Vec<Vec<RowOutput>>> {
        let Some(first) = batch.first() else {
            return Ok(Vec::new());
        };
        let tenant = first.request.tenant;
        if self.held != Some(tenant) || batch.iter().any(|i| i.request.tenant != tenant) {
            return Err(Error::Invalid(format!(
                "instance does not hold tenant {}",
                batch
                    .iter()
                    .map(|i| i.request.tenant)
                    .find(|&t| self.held != Some(t))
                    .unwrap_or(tenant)
            )));
        }
        let shared = Arc::clone(&self.shared);
        let cfg = &shared.model(tenant)?.cfg;
        // The batch's rows together, in passes: one request's rows after another's.
        let mut rows: Vec<Vec<u32>> = Vec::new();
        let mut counts = Vec::with_capacity(batch.len());
        for item in batch {
            match item.rows {
                Some(r) => rows.extend_from_slice(r),
                None => {
                    let seq_len = item.request.seq_len.clamp(1, shared.max_seq as u32);
                    rows.extend(random_rows(
                        cfg,
                        item.request.samples,
                        seq_len,
                        &mut self.token_state,
                    ));
                }
            }
            counts.push(rows.len());
        }
        let mut outputs = self.run_rows(cfg, &rows)?.into_iter();
        let mut start = 0;
        Ok(counts
            .into_iter()
            .map(|end| {
                let n = end - start;
                start = end;
                outputs.by_ref().take(n).collect()
            })
            .collect())
    }
}

/// Copies tenants from the host cache into the GPU pool's slots (the CPU twin's pool).
pub struct PoolPrefetcher {
    shared: Arc<Tenants>,
}

impl PoolPrefetcher {
    /// A prefetcher over the tenants' pool, if they have one.
    pub fn new(shared: &Arc<Tenants>) -> Option<Self> {
        shared.pooled.then(|| PoolPrefetcher {
            shared: Arc::clone(shared),
        })
    }
}

impl Prefetcher for PoolPrefetcher {
    fn prefetch(&mut self, tenant: TenantId, slot: u32) -> Result<()> {
        let m = self.shared.model(tenant)?;
        Ok(self.shared.host.prefetch(slot, &m.name)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ptm_runtime::zoo::{make_zoo, Arch};
    use ptm_runtime::Model;
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

    fn item<'a>(r: &'a Request, rows: Option<&'a [Vec<u32>]>) -> Item<'a> {
        Item { request: r, rows }
    }

    /// What a fresh load of `tenant`'s model gives for `rows` in passes of `pass` rows.
    fn fresh(
        dir: &Path,
        zoo: &Zoo,
        tenant: TenantId,
        rows: &[Vec<u32>],
        pass: usize,
    ) -> Vec<Vec<f32>> {
        let model = &zoo.models[tenant as usize % zoo.models.len()].name;
        let mut m = Model::load(&model_dir(dir, model), Device::Cpu, DType::Fp32).unwrap();
        let mut want = Vec::new();
        for chunk in rows.chunks(pass) {
            let b = Batch::from_rows(chunk, 0, None).unwrap();
            let out = m.forward(&b).unwrap();
            want.extend((0..chunk.len()).map(|r| out.row(r).to_vec()));
        }
        want
    }

    /// The CPU twin of the live GPU instance: after cold loads and switches through the
    /// shared host cache, every output equals a fresh load of the tenant's model.
    #[test]
    fn an_instance_gives_fresh_load_outputs_after_cold_loads_and_switches() {
        let tmp = tempfile::tempdir().unwrap();
        let zoo = make_zoo(Arch::Tiny, 3, tmp.path(), DType::Fp32, 7).unwrap();
        // Four workload tenants on three models: tenant 3 is model 0.
        let shared = Tenants::read(
            tmp.path(),
            4,
            DType::Fp32,
            Device::Cpu,
            2,
            32,
            None,
            1,
            KernelOptions::default(),
        )
        .unwrap();
        shared.check_fit(2).unwrap();
        let mut exec = SlotExecutor::new(shared, 2, 1, &[(2, 12)]).unwrap();
        let rows: Vec<Vec<u32>> = vec![vec![2, 40, 41, 42, 3], vec![2, 50, 3], vec![2, 9, 3]];
        let r0 = request(0, 3);
        let err = exec.infer(&[item(&r0, Some(&rows))]).unwrap_err();
        assert!(err.to_string().contains("does not hold tenant 0"), "{err}");
        for (tenant, source) in [
            (0, Source::File),
            (1, Source::Host),
            (3, Source::Host),
            (2, Source::File),
            (1, Source::Host),
        ] {
            exec.load(tenant, source, None).unwrap();
            let r = request(tenant, 3);
            let got = exec.infer(&[item(&r, Some(&rows))]).unwrap().remove(0);
            assert_eq!(got.len(), rows.len());
            // Passes of two rows, as the instance runs them.
            let want = fresh(tmp.path(), &zoo, tenant, &rows, 2);
            for (out, want) in got.iter().zip(&want) {
                // Token classification: the row's own tokens, without its padding.
                assert_eq!(out.values, want[..out.values.len()], "tenant {tenant}");
            }
            // Random tokens of the request's shape: one output per sample.
            let r5 = request(tenant, 5);
            assert_eq!(exec.infer(&[item(&r5, None)]).unwrap()[0].len(), 5);
        }
        let err = exec.load(9, Source::Host, None).unwrap_err();
        assert!(err.to_string().contains("no model for tenant 9"), "{err}");
    }

    /// Tier 1 on the CPU twin: loads from pool slots after promotions, prefetches and
    /// evictions (a slot overwritten by another tenant), and batches of several requests with
    /// rows of different lengths, all equal fresh loads run on the same passes.
    #[test]
    fn pool_loads_and_batches_give_fresh_load_outputs() {
        let tmp = tempfile::tempdir().unwrap();
        let zoo = make_zoo(Arch::Tiny, 4, tmp.path(), DType::Fp32, 9).unwrap();
        let shared = Tenants::read(
            tmp.path(),
            4,
            DType::Fp32,
            Device::Cpu,
            4,
            32,
            Some(Capacity::Tenants(2)),
            2,
            KernelOptions::default(),
        )
        .unwrap();
        let mut a = SlotExecutor::new(shared.clone(), 4, 1, &[]).unwrap();
        let mut b = SlotExecutor::new(shared.clone(), 4, 2, &[]).unwrap();
        let mut prefetch = PoolPrefetcher::new(&shared).unwrap();
        let rows_x: Vec<Vec<u32>> = vec![vec![2, 40, 41, 42, 43, 3], vec![2, 50, 3]];
        let rows_y: Vec<Vec<u32>> = vec![
            vec![2, 7, 8, 3],
            vec![2, 11, 12, 13, 14, 15, 16, 3],
            vec![2, 5, 3],
        ];
        let check = |exec: &mut SlotExecutor, tenant: TenantId| {
            let (rx, ry) = (request(tenant, 2), request(tenant, 3));
            let got = exec
                .infer(&[item(&rx, Some(&rows_x)), item(&ry, Some(&rows_y))])
                .unwrap();
            assert_eq!((got[0].len(), got[1].len()), (2, 3), "outputs per request");
            let all: Vec<Vec<u32>> = rows_x.iter().chain(&rows_y).cloned().collect();
            let want = fresh(tmp.path(), &zoo, tenant, &all, 4);
            for (out, want) in got.iter().flatten().zip(&want) {
                assert_eq!(out.values, want[..out.values.len()], "tenant {tenant}");
            }
        };
        // A: tenant 0 from the host, promoted into slot 0; B loads it from slot 0.
        a.load(0, Source::Host, Some(0)).unwrap();
        check(&mut a, 0);
        b.load(0, Source::Pool(0), None).unwrap();
        check(&mut b, 0);
        // Tenant 2 prefetched into slot 1; A loads it from there.
        prefetch.prefetch(2, 1).unwrap();
        a.load(2, Source::Pool(1), None).unwrap();
        check(&mut a, 2);
        // Tenant 0 evicted: tenant 3 cold from its file, promoted over slot 0.
        b.load(3, Source::File, Some(0)).unwrap();
        check(&mut b, 3);
        a.load(3, Source::Pool(0), None).unwrap();
        check(&mut a, 3);
        let err = b.load(0, Source::Pool(0), None).unwrap_err().to_string();
        assert!(err.contains("holds `tiny-t003`, not `tiny-t000`"), "{err}");
        let err = b.load(1, Source::Pool(7), None).unwrap_err().to_string();
        assert!(err.contains("out of range"), "{err}");
    }
}
