//! The path a live instance takes, as a calibration target: runtime [`Slot`]s over one
//! [`SlotHost`], each driven from its own worker thread, jobs handed over channels — what
//! `ptm run --live` and `ptm serve` do (`live/src/coordinator.rs`, `live/src/slot.rs`), on the
//! CPU or a GPU alike (the slot is one closed type).
//!
//! What [`LivePath`] measures:
//! - [`LivePath::together`]: an operation on `k` slots at once, each from its own thread
//!   released by one barrier — a forward request (passes of one shape, enqueued back to back
//!   and synchronised once: `Slot::forward_many`), a switch from the host cache
//!   (`Slot::switch`, returns when the weights have landed) or a cold load (`Slot::load_file`);
//! - [`LivePath::during`]: an operation timed on slot 0 while slot 1 runs another back to back;
//! - loads from the GPU weight pool ([`PathOp::PoolLoad`]) on a path made with a pool
//!   ([`SlotPath::pooled`]: the zoo's first [`POOL_TENANTS`] tenants prefetched into it, as
//!   `LivePaths` makes every path where the pool fits beside the executors, the path without one
//!   otherwise), for [`crate::pool_contention`];
//! - [`LivePath::handoffs`]: a job handed to a worker thread blocked on its channel and the
//!   report back, with no work (the coordinator's hand-off and the worker's report);
//! - [`LivePath::handoffs_busy`]: the same back to back, as live dispatches to an instance the
//!   instant it reports (`live/src/coordinator.rs`: the worker sends its report and waits on its
//!   channel again, the coordinating thread receives the report and sends the next job at
//!   once) — neither thread parked for long;
//! - [`LivePath::requests_busy`]: requests through a worker thread as `SlotExecutor::infer`
//!   runs them — random token rows, a batch per pass, `forward_many`, one output vector per
//!   row, the report back — back to back like [`LivePath::handoffs_busy`] (each sent the instant
//!   the previous report arrives, as live runs an instance's next work on a busy worker), timed
//!   from the hand-off to the report's arrival.
//!
//! Slot `i` starts on tenant `i` of a rotation over the zoo's first [`ROTATION`] tenants and each
//! switch or cold load moves it to the next, so loads read all over the host cache as a
//! multi-tenant server's do.

use crate::{Error, Result};
use ptm_runtime::slot::{Executors, PoolSize};
use ptm_runtime::tokenize::random_rows;
use ptm_runtime::zoo::model_dir;
use ptm_runtime::{
    ArchLayout, Batch, Config, DType, Device, Eviction, KernelOptions, Slot, SlotHost, Task, Zoo,
};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Barrier};
use std::time::{Duration, Instant};

/// Tenants the loads rotate over, at most.
pub const ROTATION: usize = 12;

/// Pause between two timed hand-offs, so the worker is parked on its channel again as a live
/// instance waiting for work is.
pub const PARK: Duration = Duration::from_millis(1);

/// What a live instance does that calibration times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathOp {
    /// A request: `passes` passes of `batch` × `seq_len`, enqueued back to back.
    Forward {
        /// Rows per pass.
        batch: u32,
        /// Tokens per row.
        seq_len: u32,
        /// Passes.
        passes: u32,
    },
    /// A switch from the host cache.
    Switch,
    /// A cold load from the tenant's checkpoint.
    ColdLoad,
    /// A load from the GPU weight pool (`Slot::load_pool`: on a GPU a device-to-device copy on
    /// the pool stream, returning when it has landed); only on a path made with a pool
    /// ([`SlotPath::pooled`]).
    PoolLoad,
}

/// Figures measured through the live path (see the module doc).
pub trait LivePath {
    /// Slots (instances) it drives.
    fn instances(&self) -> usize;
    /// Whether it has a GPU weight pool to time [`PathOp::PoolLoad`] on.
    fn has_pool(&self) -> bool {
        false
    }
    /// `op` on slots `0..k` at once: each one's latency.
    fn together(&mut self, op: PathOp, k: usize) -> Result<Vec<Duration>>;
    /// `op` timed `n` times back to back on slot 0 while slot 1 runs `background` back to back.
    fn during(&mut self, op: PathOp, background: PathOp, n: usize) -> Result<Vec<Duration>>;
    /// `n` hand-offs to a parked worker thread and reports back, no work.
    fn handoffs(&mut self, n: usize) -> Result<Vec<Duration>>;
    /// `n` hand-offs back to back, each sent the instant the previous report arrives (the
    /// first after an untimed one), and their reports, no work.
    fn handoffs_busy(&mut self, n: usize) -> Result<Vec<Duration>>;
    /// `n` requests of `passes` passes of `batch` × `seq_len` through a worker thread, back to
    /// back as [`LivePath::handoffs_busy`] sends its jobs (each the instant the previous report
    /// arrives, the first after an untimed one), from the hand-off to the report's arrival.
    fn requests_busy(
        &mut self,
        batch: u32,
        seq_len: u32,
        passes: u32,
        n: usize,
    ) -> Result<Vec<Duration>>;
}

struct Tenant {
    name: String,
    dir: PathBuf,
    cfg: Config,
}

/// The runtime's slots driven as a live instance drives them.
pub struct SlotPath {
    host: SlotHost,
    slots: Vec<Slot>,
    tenants: Vec<Tenant>,
    /// Which tenant of the rotation each slot holds.
    holds: Vec<usize>,
    token_state: u64,
    /// Tenants in the weight pool (pool slot `i` holds tenant `i`); 0 without a pool.
    pooled: usize,
}

/// Tenants a pooled path keeps in its weight pool, at most: pool loads rotate over them.
pub const POOL_TENANTS: usize = 4;

impl SlotPath {
    /// `instances` slots for the zoo at `dir` on `device`, each holding a tenant, for passes
    /// of the `shapes` (rows, tokens) it will time (prepared before any timing).
    pub fn new(
        dir: &std::path::Path,
        device: Device,
        dtype: DType,
        instances: usize,
        shapes: &[(usize, usize)],
    ) -> Result<Self> {
        Self::make(dir, device, dtype, instances, shapes, false)
    }

    /// [`SlotPath::new`] with a GPU weight pool (the CPU twin's pool on the CPU) holding the
    /// zoo's first [`POOL_TENANTS`] tenants, so that [`PathOp::PoolLoad`] can be timed.
    pub fn pooled(
        dir: &std::path::Path,
        device: Device,
        dtype: DType,
        instances: usize,
        shapes: &[(usize, usize)],
    ) -> Result<Self> {
        Self::make(dir, device, dtype, instances, shapes, true)
    }

    fn make(
        dir: &std::path::Path,
        device: Device,
        dtype: DType,
        instances: usize,
        shapes: &[(usize, usize)],
        pool: bool,
    ) -> Result<Self> {
        let max_batch = shapes.iter().map(|s| s.0).max().unwrap_or(1).max(1);
        let max_seq = shapes.iter().map(|s| s.1).max().unwrap_or(1).max(1);
        let zoo = Zoo::read(dir)?;
        if zoo.models.len() < 2 || instances == 0 {
            return Err(Error::Invalid(format!(
                "{}: the live path needs a zoo of at least 2 tenants and 1 instance",
                dir.display()
            )));
        }
        let n = zoo.models.len().min(ROTATION);
        let mut tenants = Vec::with_capacity(n);
        for m in &zoo.models[..n] {
            let d = model_dir(dir, &m.name);
            let cfg = Config::from_file(&d.join("config.json"))?;
            tenants.push(Tenant {
                name: m.name.clone(),
                dir: d,
                cfg,
            });
        }
        let labels = tenants.iter().map(|t| t.cfg.labels()).max().unwrap_or(1);
        let arch = ArchLayout::new(&tenants[0].cfg, labels.max(1), dtype)?;
        let max_seq = max_seq.clamp(1, tenants[0].cfg.max_tokens());
        let warm: Vec<(usize, usize)> = shapes
            .iter()
            .map(|&(b, s)| (b.max(1), s.clamp(1, max_seq)))
            .collect();
        let mut host = SlotHost::new(device, arch, n, Eviction::Refuse, KernelOptions::default())?;
        let pooled = if pool { n.min(POOL_TENANTS) } else { 0 };
        if pool {
            let room = Executors {
                count: instances,
                max_batch,
                max_seq,
            };
            host = host.with_pool(PoolSize::Tenants(pooled), room)?;
        }
        for t in &tenants {
            host.register(&t.name, &t.dir)?;
        }
        for (i, t) in tenants[..pooled].iter().enumerate() {
            host.prefetch(i as u32, &t.name)?;
        }
        host.check_fit(instances, max_batch, max_seq)?;
        let heads: Vec<(&str, &Config)> =
            tenants.iter().map(|t| (t.name.as_str(), &t.cfg)).collect();
        let mut slots = Vec::with_capacity(instances);
        let mut holds = Vec::with_capacity(instances);
        for i in 0..instances {
            let mut slot = host.slot(max_batch, max_seq)?;
            slot.warm_up(&host, &heads, &warm, i as u64 + 1)?;
            slot.switch(&host, &tenants[i % n].name)?;
            slots.push(slot);
            holds.push(i % n);
        }
        Ok(SlotPath {
            host,
            slots,
            tenants,
            holds,
            token_state: 0x5EED,
            pooled,
        })
    }

    fn batches(
        cfg: &Config,
        batch: u32,
        seq_len: u32,
        passes: u32,
        state: &mut u64,
    ) -> Result<Vec<Batch>> {
        let seq = seq_len.clamp(1, cfg.max_tokens() as u32);
        let rows = random_rows(cfg, batch * passes, seq, state);
        Ok(rows
            .chunks(batch.max(1) as usize)
            .map(|c| Batch::from_rows(c, cfg.pad_token_id, None))
            .collect::<std::result::Result<Vec<_>, _>>()?)
    }
}

/// One slot's part of an operation: what it needs, prepared before the clock starts.
enum Prepared<'a> {
    Forward(Vec<Batch>),
    Load(&'a Tenant),
    /// A load of the tenant from pool slot `.1`.
    Pool(&'a Tenant, u32),
}

fn run_op(slot: &mut Slot, host: &SlotHost, work: &Prepared<'_>, cold: bool) -> Result<()> {
    match work {
        Prepared::Forward(batches) => {
            slot.forward_many(batches)?;
        }
        Prepared::Load(t) if cold => slot.load_file(host, &t.name, &t.dir)?,
        Prepared::Load(t) => slot.switch(host, &t.name)?,
        Prepared::Pool(t, i) => slot.load_pool(host, *i, &t.name)?,
    }
    Ok(())
}

fn joined<T>(h: std::thread::ScopedJoinHandle<'_, Result<T>>, what: &str) -> Result<T> {
    h.join().map_err(|_| Error::Panicked {
        what: what.to_string(),
    })?
}

/// What slot `i` does next: its batches, or the index of the tenant it loads (from the host
/// cache or its checkpoint, or from the pool slot of that index).
enum Next {
    Forward(Vec<Batch>),
    Load(usize),
    Pool(usize),
}

impl Next {
    fn prepared(self, tenants: &[Tenant]) -> Prepared<'_> {
        match self {
            Next::Forward(b) => Prepared::Forward(b),
            Next::Load(t) => Prepared::Load(&tenants[t]),
            Next::Pool(t) => Prepared::Pool(&tenants[t], t as u32),
        }
    }
}

impl SlotPath {
    fn next_work(&mut self, op: PathOp, i: usize) -> Result<Next> {
        Ok(match op {
            PathOp::Forward {
                batch,
                seq_len,
                passes,
            } => {
                let cfg = &self.tenants[self.holds[i]].cfg;
                Next::Forward(Self::batches(
                    cfg,
                    batch,
                    seq_len,
                    passes,
                    &mut self.token_state,
                )?)
            }
            PathOp::Switch | PathOp::ColdLoad => {
                let next = (self.holds[i] + 1) % self.tenants.len();
                self.holds[i] = next;
                Next::Load(next)
            }
            PathOp::PoolLoad if self.pooled < 2 => {
                return Err(Error::Invalid(
                    "pool loads need a path made with a weight pool of at least 2 tenants \
                     (SlotPath::pooled, a zoo of 2 or more)"
                        .into(),
                ))
            }
            PathOp::PoolLoad => {
                let next = (self.holds[i] + 1) % self.pooled;
                self.holds[i] = next;
                Next::Pool(next)
            }
        })
    }
}

impl LivePath for SlotPath {
    fn instances(&self) -> usize {
        self.slots.len()
    }

    fn has_pool(&self) -> bool {
        self.pooled >= 2
    }

    fn together(&mut self, op: PathOp, k: usize) -> Result<Vec<Duration>> {
        if k == 0 || k > self.slots.len() {
            return Err(Error::Invalid(format!(
                "{k} instances asked, {} slots made",
                self.slots.len()
            )));
        }
        let plans = (0..k)
            .map(|i| self.next_work(op, i))
            .collect::<Result<Vec<_>>>()?;
        let barrier = Barrier::new(k);
        let (host, tenants) = (&self.host, &self.tenants);
        let cold = op == PathOp::ColdLoad;
        std::thread::scope(|scope| {
            let handles: Vec<_> = self.slots[..k]
                .iter_mut()
                .zip(plans)
                .map(|(slot, plan)| {
                    let barrier = &barrier;
                    scope.spawn(move || -> Result<Duration> {
                        let work = plan.prepared(tenants);
                        barrier.wait();
                        let t = Instant::now();
                        run_op(slot, host, &work, cold)?;
                        Ok(t.elapsed())
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| joined(h, &format!("{op:?} on {k} slots")))
                .collect()
        })
    }

    fn during(&mut self, op: PathOp, background: PathOp, n: usize) -> Result<Vec<Duration>> {
        if self.slots.len() < 2 {
            return Err(Error::Invalid(
                "timing one operation during another needs 2 slots".into(),
            ));
        }
        let plans = (0..n)
            .map(|_| self.next_work(op, 0))
            .collect::<Result<Vec<_>>>()?;
        // The background slot cycles through a few prepared operations.
        let bg = (0..4)
            .map(|_| self.next_work(background, 1))
            .collect::<Result<Vec<_>>>()?;
        let stop = AtomicBool::new(false);
        let started = Barrier::new(2);
        let (host, tenants) = (&self.host, &self.tenants);
        let (first, rest) = self.slots.split_at_mut(1);
        let (timed, other) = (&mut first[0], &mut rest[0]);
        let to_work = |p: Next| p.prepared(tenants);
        let work: Vec<Prepared<'_>> = plans.into_iter().map(to_work).collect();
        let bg_work: Vec<Prepared<'_>> = bg.into_iter().map(to_work).collect();
        std::thread::scope(|scope| {
            let (stop, started) = (&stop, &started);
            let background_thread = scope.spawn(move || -> Result<()> {
                started.wait();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    run_op(
                        other,
                        host,
                        &bg_work[i % bg_work.len()],
                        background == PathOp::ColdLoad,
                    )?;
                    i += 1;
                }
                Ok(())
            });
            let timed_thread = scope.spawn(move || -> Result<Vec<Duration>> {
                started.wait();
                // Let the background operation get going first.
                std::thread::sleep(Duration::from_micros(200));
                let mut out = Vec::with_capacity(work.len());
                for w in &work {
                    let t = Instant::now();
                    let r = run_op(timed, host, w, op == PathOp::ColdLoad);
                    out.push(t.elapsed());
                    if let Err(e) = r {
                        stop.store(true, Ordering::Relaxed);
                        return Err(e);
                    }
                }
                stop.store(true, Ordering::Relaxed);
                Ok(out)
            });
            let out = joined(timed_thread, &format!("{op:?} during {background:?}"));
            stop.store(true, Ordering::Relaxed);
            joined(
                background_thread,
                &format!("{background:?} in the background"),
            )?;
            out
        })
    }

    fn handoffs(&mut self, n: usize) -> Result<Vec<Duration>> {
        round_trips(n, Some(PARK))
    }

    fn handoffs_busy(&mut self, n: usize) -> Result<Vec<Duration>> {
        round_trips(n, None)
    }

    fn requests_busy(
        &mut self,
        batch: u32,
        seq_len: u32,
        passes: u32,
        n: usize,
    ) -> Result<Vec<Duration>> {
        let cfg = self.tenants[self.holds[0]].cfg.clone();
        let slot = &mut self.slots[0];
        let mut state = self.token_state;
        type Outputs = Vec<Vec<f32>>;
        let (job_tx, job_rx) = mpsc::channel::<u32>();
        let (done_tx, done_rx) = mpsc::channel::<Result<Outputs>>();
        let out = std::thread::scope(|scope| {
            let cfg = &cfg;
            scope.spawn(move || {
                while let Ok(samples) = job_rx.recv() {
                    // What `SlotExecutor::infer` does with a request of random tokens.
                    let result = (|| -> Result<Outputs> {
                        let seq = seq_len.clamp(1, cfg.max_tokens() as u32);
                        let rows = random_rows(cfg, samples, seq, &mut state);
                        let batches = rows
                            .chunks(batch.max(1) as usize)
                            .map(|c| Batch::from_rows(c, cfg.pad_token_id, None))
                            .collect::<std::result::Result<Vec<_>, _>>()?;
                        let outs = slot.forward_many(&batches)?;
                        let mut outputs = Vec::with_capacity(rows.len());
                        for (b, out) in batches.iter().zip(&outs) {
                            for (r, &len) in b.lengths().iter().enumerate() {
                                let row = out.row(r);
                                outputs.push(match out.task {
                                    Task::TokenClassification => row[..len * out.shape[2]].to_vec(),
                                    _ => row.to_vec(),
                                });
                            }
                        }
                        Ok(outputs)
                    })();
                    if done_tx.send(result).is_err() {
                        break;
                    }
                }
            });
            let mut out = Vec::with_capacity(n);
            // Back to back: job `i` goes out the instant report `i − 1` arrives; job 0, sent
            // to a worker just started, is not timed.
            for i in 0..=n {
                let t = Instant::now();
                job_tx
                    .send(batch * passes)
                    .map_err(|_| Error::Invalid("the worker thread stopped".into()))?;
                let outputs = done_rx
                    .recv()
                    .map_err(|_| Error::Invalid("the worker thread stopped".into()))??;
                if i > 0 {
                    out.push(t.elapsed());
                }
                if outputs.len() != (batch * passes) as usize {
                    return Err(Error::Invalid(format!(
                        "{} outputs for {} rows",
                        outputs.len(),
                        batch * passes
                    )));
                }
            }
            drop(job_tx);
            Ok(out)
        });
        self.token_state = self.token_state.wrapping_add(1);
        out
    }
}

/// `n` jobs handed to a worker thread over a channel and reported back over another, as the
/// live coordinator and an instance's worker do, timed from the send to the report's arrival;
/// with `pause`, the coordinating thread sleeps that long before each (the worker parks on its
/// channel meanwhile), without, each job goes out the instant the previous report arrives (a
/// first, untimed job starts the sequence).
fn round_trips(n: usize, pause: Option<Duration>) -> Result<Vec<Duration>> {
    let (job_tx, job_rx) = mpsc::channel::<usize>();
    let (done_tx, done_rx) = mpsc::channel::<usize>();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            while let Ok(job) = job_rx.recv() {
                if done_tx.send(job).is_err() {
                    break;
                }
            }
        });
        let mut out = Vec::with_capacity(n);
        // Back to back, job 0 (to a worker just started) only starts the sequence.
        let first = usize::from(pause.is_none());
        for i in 0..n + first {
            if let Some(p) = pause {
                std::thread::sleep(p);
            }
            let t = Instant::now();
            job_tx
                .send(i)
                .map_err(|_| Error::Invalid("the worker thread stopped".into()))?;
            done_rx
                .recv()
                .map_err(|_| Error::Invalid("the worker thread stopped".into()))?;
            if i >= first {
                out.push(t.elapsed());
            }
        }
        drop(job_tx);
        Ok(out)
    })
}

/// Live paths made on demand, one per profile model, from the zoos a target measures.
pub struct LivePaths {
    device: Device,
    dtype: DType,
    instances: usize,
    shapes: Vec<(usize, usize)>,
    zoos: BTreeMap<String, PathBuf>,
    made: BTreeMap<String, SlotPath>,
}

impl LivePaths {
    /// Paths for `zoos` (profile model name → zoo folder) on `device`: `instances` slots each,
    /// passes of the `shapes` (rows, tokens).
    pub fn new(
        device: Device,
        dtype: DType,
        instances: usize,
        shapes: Vec<(usize, usize)>,
        zoos: BTreeMap<String, PathBuf>,
    ) -> Self {
        LivePaths {
            device,
            dtype,
            instances,
            shapes,
            zoos,
            made: BTreeMap::new(),
        }
    }

    /// The path of `model`, made at first use.
    pub fn get(&mut self, model: &str) -> Result<Option<&mut dyn LivePath>> {
        let Some(dir) = self.zoos.get(model) else {
            return Ok(None);
        };
        if !self.made.contains_key(model) {
            // With a weight pool where one fits beside the executors (the pool-load figures);
            // where it does not, the path without one: those figures are then not measured
            // (`pool_contention::measure` returns none), the rest of the calibration runs.
            let (device, dtype, n, shapes) =
                (self.device, self.dtype, self.instances, &self.shapes);
            let p = match SlotPath::pooled(dir, device, dtype, n, shapes) {
                Err(Error::Runtime(ptm_runtime::Error::PoolDoesNotFit { .. })) => {
                    SlotPath::new(dir, device, dtype, n, shapes)?
                }
                made => made?,
            };
            self.made.insert(model.to_string(), p);
        }
        Ok(self.made.get_mut(model).map(|p| p as &mut dyn LivePath))
    }
}
