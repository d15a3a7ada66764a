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

use crate::executor::{Executor, RowOutput};
use anyhow::Context as _;
use ptm_runtime::tokenize::random_rows;
use ptm_runtime::zoo::model_dir;
use ptm_runtime::{
    ArchLayout, Batch, Config, DType, Device, Eviction, HeadOutput, KernelOptions, Slot, SlotHost,
    Task, Zoo,
};
use ptm_sim::workload::{Request, TenantId};
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
    /// Largest pass the slots run: rows × tokens.
    max_rows: usize,
    max_seq: usize,
}

impl Tenants {
    /// Reads the zoo at `dir`, maps `tenants` workload tenants onto its models and reads every
    /// model used into a host cache for `device` (pinned on a GPU); slots will run passes of
    /// up to `max_rows` rows of `max_seq` tokens with the default [`KernelOptions`].
    pub fn read(
        dir: &Path,
        tenants: usize,
        dtype: DType,
        device: Device,
        max_rows: usize,
        max_seq: usize,
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
        let host = SlotHost::new(
            device,
            arch,
            used,
            Eviction::Refuse,
            KernelOptions::default(),
        )?;
        for m in &models {
            host.register(&m.name, &m.dir)
                .with_context(|| format!("reading tenant `{}` into the host cache", m.name))?;
        }
        Ok(Arc::new(Tenants {
            host,
            models,
            tenants,
            max_rows: max_rows.max(1),
            max_seq,
        }))
    }

    /// Checks that `instances` slots fit on the device (a clear refusal, before any is made).
    pub fn check_fit(&self, instances: usize) -> anyhow::Result<()> {
        Ok(self
            .host
            .check_fit(instances, self.max_rows, self.max_seq)?)
    }

    fn model(&self, tenant: TenantId) -> Result<&TenantModel, String> {
        let i = tenant as usize;
        if i >= self.tenants {
            return Err(format!("no model for tenant {tenant}"));
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

impl Executor for SlotExecutor {
    fn load(&mut self, tenant: TenantId, cold: bool) -> Result<(), String> {
        let shared = Arc::clone(&self.shared);
        let m = shared.model(tenant)?;
        self.held = None;
        // Returns when the weights have landed and the tenant can run.
        if cold {
            self.slot.load_file(&m.name, &m.dir)
        } else {
            self.slot.switch(&shared.host, &m.name)
        }
        .map_err(|e| e.to_string())?;
        self.held = Some(tenant);
        Ok(())
    }

    fn infer(
        &mut self,
        request: &Request,
        rows: Option<&[Vec<u32>]>,
    ) -> Result<Vec<RowOutput>, String> {
        if self.held != Some(request.tenant) {
            return Err(format!("instance does not hold tenant {}", request.tenant));
        }
        let shared = Arc::clone(&self.shared);
        let cfg = &shared.model(request.tenant)?.cfg;
        let given: Vec<Vec<u32>>;
        let rows: &[Vec<u32>] = match rows {
            Some(r) => r,
            None => {
                let seq_len = request.seq_len.clamp(1, shared.max_seq as u32);
                given = random_rows(cfg, request.samples, seq_len, &mut self.token_state);
                &given
            }
        };
        let batches = rows
            .chunks(self.forward_batch as usize)
            .map(|chunk| Batch::from_rows(chunk, cfg.pad_token_id, None))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let outs: Vec<HeadOutput> = self
            .slot
            .forward_many(&batches)
            .map_err(|e| e.to_string())?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use ptm_runtime::zoo::{make_zoo, Arch};
    use ptm_runtime::Model;

    fn request(tenant: TenantId, samples: u32) -> Request {
        Request {
            tenant,
            samples,
            seq_len: 12,
            arrival_ns: 0,
            deadline_ns: 0,
        }
    }

    /// The CPU twin of the live GPU instance: after cold loads and switches through the
    /// shared host cache, every output equals a fresh load of the tenant's model.
    #[test]
    fn an_instance_gives_fresh_load_outputs_after_cold_loads_and_switches() {
        let tmp = tempfile::tempdir().unwrap();
        let zoo = make_zoo(Arch::Tiny, 3, tmp.path(), DType::Fp32, 7).unwrap();
        // Four workload tenants on three models: tenant 3 is model 0.
        let shared = Tenants::read(tmp.path(), 4, DType::Fp32, Device::Cpu, 2, 32).unwrap();
        shared.check_fit(2).unwrap();
        let mut exec = SlotExecutor::new(shared, 2, 1, &[(2, 12)]).unwrap();
        let rows: Vec<Vec<u32>> = vec![vec![2, 40, 41, 42, 3], vec![2, 50, 3], vec![2, 9, 3]];
        let err = exec.infer(&request(0, 3), Some(&rows)).unwrap_err();
        assert!(err.contains("does not hold tenant 0"), "{err}");
        for (tenant, cold) in [(0, true), (1, false), (3, false), (2, true), (1, false)] {
            exec.load(tenant, cold).unwrap();
            let model = &zoo.models[tenant as usize % 3].name;
            let mut fresh =
                Model::load(&model_dir(tmp.path(), model), Device::Cpu, DType::Fp32).unwrap();
            let got = exec.infer(&request(tenant, 3), Some(&rows)).unwrap();
            assert_eq!(got.len(), rows.len());
            // Passes of two rows, as the instance runs them.
            let mut want = Vec::new();
            for chunk in rows.chunks(2) {
                let b = Batch::from_rows(chunk, 0, None).unwrap();
                let out = fresh.forward(&b).unwrap();
                want.extend((0..chunk.len()).map(|r| out.row(r).to_vec()));
            }
            for (out, want) in got.iter().zip(&want) {
                // Token classification: the row's own tokens, without its padding.
                assert_eq!(out.values, want[..out.values.len()], "tenant {tenant}");
            }
            // Random tokens of the request's shape: one output per sample.
            assert_eq!(exec.infer(&request(tenant, 5), None).unwrap().len(), 5);
        }
        let err = exec.load(9, false).unwrap_err();
        assert!(err.contains("no model for tenant 9"), "{err}");
    }
}
