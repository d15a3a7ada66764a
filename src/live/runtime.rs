//! The runtime as a live [`Executor`]: each instance runs real forward passes of the tenants of
//! a zoo on the CPU (candle) or a GPU (cudarc).
//!
//! Workload tenant `i` is zoo model `i mod zoo size`. Every tenant's packed weights are read once
//! into host memory before the replay (the host cache). A cold load reads the checkpoint from
//! its file and builds the engine; a switch builds the engine from the host cache (on the GPU
//! this allocates and uploads a fresh weight arena until the runtime's switching slots exist).
//! A request of `samples` × `seq_len` runs as forward passes of at most `forward_batch` samples
//! of random token ids.

use super::{Executor, RowOutput};
use ptm_runtime::model::run;
use ptm_runtime::tokenize::random_rows;
use ptm_runtime::zoo::model_dir;
use ptm_runtime::{Batch, Config, DType, Device, Engine, Model, PackedWeights, Task, Zoo};
use ptm_sim::workload::{Request, TenantId};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One tenant's weights, read once.
pub struct TenantWeights {
    dir: PathBuf,
    cfg: Config,
    packed: PackedWeights,
}

/// Reads the zoo at `dir` and maps `tenants` workload tenants onto its models.
pub fn host_cache(
    dir: &Path,
    tenants: usize,
    dtype: DType,
) -> anyhow::Result<Arc<Vec<TenantWeights>>> {
    let zoo = Zoo::read(dir)?;
    anyhow::ensure!(
        !zoo.models.is_empty(),
        "{}: the zoo has no models",
        dir.display()
    );
    let mut out = Vec::with_capacity(tenants);
    for i in 0..tenants {
        let d = model_dir(dir, &zoo.models[i % zoo.models.len()].name);
        let cfg = Config::from_file(&d.join("config.json"))?;
        let packed = PackedWeights::from_file(&d.join("model.safetensors"), &cfg, dtype)?;
        out.push(TenantWeights {
            dir: d,
            cfg,
            packed,
        });
    }
    Ok(Arc::new(out))
}

/// One instance of the runtime.
pub struct RuntimeExecutor {
    device: Device,
    dtype: DType,
    tenants: Arc<Vec<TenantWeights>>,
    engine: Option<(TenantId, Engine)>,
    forward_batch: u32,
    token_state: u64,
}

impl RuntimeExecutor {
    /// An instance on `device` serving `tenants`, `forward_batch` samples per forward pass.
    pub fn new(
        device: Device,
        dtype: DType,
        tenants: Arc<Vec<TenantWeights>>,
        forward_batch: u32,
        seed: u64,
    ) -> Self {
        RuntimeExecutor {
            device,
            dtype,
            tenants,
            engine: None,
            forward_batch,
            token_state: seed | 1,
        }
    }
}

impl Executor for RuntimeExecutor {
    fn load(&mut self, tenant: TenantId, cold: bool) -> Result<(), String> {
        let t = self
            .tenants
            .get(tenant as usize)
            .ok_or_else(|| format!("no weights for tenant {tenant}"))?;
        let e = |e: ptm_runtime::Error| e.to_string();
        self.engine = None; // release the old weights first, as a slot would
        let engine = if cold {
            let packed =
                PackedWeights::from_file(&t.dir.join("model.safetensors"), &t.cfg, self.dtype)
                    .map_err(e)?;
            Model::engine(&packed, &t.cfg, self.device).map_err(e)?
        } else {
            Model::engine(&t.packed, &t.cfg, self.device).map_err(e)?
        };
        self.engine = Some((tenant, engine));
        Ok(())
    }

    fn infer(
        &mut self,
        request: &Request,
        rows: Option<&[Vec<u32>]>,
    ) -> Result<Vec<RowOutput>, String> {
        let tenants = Arc::clone(&self.tenants);
        let cfg = &tenants[request.tenant as usize].cfg;
        match &self.engine {
            Some((t, _)) if *t == request.tenant => {}
            _ => return Err(format!("instance does not hold tenant {}", request.tenant)),
        }
        let given: Vec<Vec<u32>>;
        let rows: &[Vec<u32>] = match rows {
            Some(r) => r,
            None => {
                let max_len = cfg.max_position_embeddings as u32;
                let seq_len = request.seq_len.min(max_len.saturating_sub(2).max(1));
                given = random_rows(cfg, request.samples, seq_len, &mut self.token_state);
                &given
            }
        };
        let mut outputs = Vec::with_capacity(if rows.len() == request.samples as usize {
            rows.len()
        } else {
            0
        });
        for chunk in rows.chunks(self.forward_batch.max(1) as usize) {
            let batch =
                Batch::from_rows(chunk, cfg.pad_token_id, None).map_err(|e| e.to_string())?;
            let (_, engine) = self.engine.as_mut().expect("checked above");
            let out = run(engine, &batch).map_err(|e| e.to_string())?;
            let lengths = batch.lengths();
            for (b, &len) in lengths.iter().enumerate() {
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
