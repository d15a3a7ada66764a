//! Scenarios: what to simulate, as a `ron` file.
//!
//! ```ron
//! Scenario(
//!     name: "fastptm-overall",
//!     description: "…",
//!     profile: "../profiles/rtx3090-fastptm.ron",  // relative to this file
//!     model: "bert-wwm-base-chinese",              // the profile model every tenant uses
//!     instances: 3,
//!     loading: Split,                              // or Full
//!     forward_batch: 1,                            // samples per forward pass
//!     preload: FastPtm,                            // Policy (default), Empty or FastPtm
//!     workload: Trace("../traces/fastptm/g2/…T480_L12_M0.10.json"),
//!     request: (samples: 16, seq_len: 128, deadline_ms: 3000.0),
//!     policies: ["fcfs-rr", "omls", "affinity"],   // default: every policy
//!     policy_options: (omls: (tick_ms: 10.0)),
//!     seeds: [1],
//!     sweep: Some(( instances: [1, 2, 3], loading: [Split, Full] )),
//! )
//! ```
//!
//! `ptm run` runs every (policy, seed) cell of the scenario itself; the `sweep` section adds a
//! grid for `ptm sweep` (see [`Sweep`]).
//!
//! Validation refuses instance counts and forward batches beyond [`crate::limits`] and grids of
//! more than [`MAX_CELLS`] cells, naming the file and field.

use crate::engine::{
    self, Batching, LoadingMode, PetServing, Preload, Run, RunOptions, Serving, Setup, Span,
};
use crate::error::{Error, Result};
use crate::ledger::{Capacity, Eviction};
use crate::limits::{MAX_CELLS, MAX_INSTANCES, MAX_SAMPLES, MAX_TENANTS};
use crate::metrics::Report;
use crate::profile::Profile;
use crate::scheduler::{self, PolicyOptions, Shape, POLICIES};
use crate::workload::{
    self, Arrivals, FileSource, Popularity, RequestDefaults, Workload, WorkloadSpec,
};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;

/// One (policy, seed) cell of [`Scenario::run_detailed`].
#[derive(Debug, Clone)]
pub struct CellRun {
    /// Its report.
    pub report: Report,
    /// What the run recorded.
    pub run: Run,
    /// The workload it replayed.
    pub workload: Arc<Workload>,
}

/// A scenario file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Its name in reports.
    pub name: String,
    /// What it reproduces or asks.
    #[serde(default)]
    pub description: String,
    /// The GPU profile, relative to the scenario file.
    pub profile: PathBuf,
    /// The profile model every tenant is a fine-tune of (unless a trace says otherwise).
    pub model: String,
    /// Parallel instances on the GPU.
    pub instances: usize,
    /// How switches load weights.
    #[serde(default)]
    pub loading: LoadingMode,
    /// Samples per forward pass.
    #[serde(default = "one")]
    pub forward_batch: u32,
    /// What the instances hold before time 0.
    #[serde(default)]
    pub preload: Preload,
    /// The GPU weight pool (tier 1): `Some(Tenants(n))`, `Some(Bytes(b))` or `Some(Auto)`
    /// (what the GPU holds after the executors); absent: FastPTM's model, no pool.
    #[serde(default)]
    pub gpu_pool: Option<Capacity>,
    /// The host cache (tier 2), with a pool; absent: every tenant, read before time 0.
    #[serde(default)]
    pub host_cache: Option<Capacity>,
    /// Who a full pool or host cache evicts: Lru (default), Lfu, Gdsf, TinyLfu or Belady (offline).
    #[serde(default)]
    pub eviction: Eviction,
    /// Cross-request batching: `Some((max_wait_ms: 2.0))` lets policies that batch join
    /// waiting requests of one tenant up to `forward_batch` rows; absent: one request a
    /// dispatch.
    #[serde(default)]
    pub batching: Option<Batching>,
    /// Parameter-efficient tenants: `Some((kind: Lora(rank: 8), delta_pool: Auto))` makes
    /// every tenant a delta of that kind over `model` as a backbone (deltas in a GPU pool,
    /// mixed-tenant batches); absent: every tenant a full fine-tune.
    #[serde(default)]
    pub pet: Option<PetServing>,
    /// The requests.
    pub workload: WorkloadSpec,
    /// Request shape where the workload does not give it.
    #[serde(default)]
    pub request: RequestDefaults,
    /// Replay the workload at this offered rate, requests per second: a generator's rate is
    /// replaced, a trace's arrival times are scaled ([`crate::offered`]). `None` keeps its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_rps: Option<f64>,
    /// Policies to compare, by name.
    #[serde(default = "all_policies")]
    pub policies: Vec<String>,
    /// Options of the policies.
    #[serde(default)]
    pub policy_options: PolicyOptions,
    /// Seeds: one cell per (policy, seed).
    #[serde(default = "one_seed")]
    pub seeds: Vec<u64>,
    /// A grid for `ptm sweep`.
    #[serde(default)]
    pub sweep: Option<Sweep>,
}

fn one() -> u32 {
    1
}

fn all_policies() -> Vec<String> {
    POLICIES.iter().map(|p| p.to_string()).collect()
}

fn one_seed() -> Vec<u64> {
    vec![1]
}

/// A grid over the scenario: every combination of the listed values is one cell (an empty list
/// keeps the scenario's own value). Policies and seeds default to the scenario's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Sweep {
    /// Alternative workloads, each with a label.
    pub workloads: Vec<(String, WorkloadSpec)>,
    /// Alternative profiles (paths relative to the scenario file).
    pub profiles: Vec<PathBuf>,
    /// Instance counts.
    pub instances: Vec<usize>,
    /// Loading modes.
    pub loading: Vec<LoadingMode>,
    /// GPU pools (`None`: FastPTM's model, no pool).
    pub gpu_pool: Vec<Option<Capacity>>,
    /// Eviction policies.
    pub eviction: Vec<Eviction>,
    /// Batching (`None`: one request a dispatch).
    pub batching: Vec<Option<Batching>>,
    /// Tenants as full fine-tunes (`None`) or parameter-efficient deltas over the model
    /// (`Some`); a parameter-efficient variant keeps its deltas in its `delta_pool`, so the
    /// whole-weights `gpu_pool` (and its eviction) does not apply to it.
    pub pet: Vec<Option<crate::engine::PetServing>>,
    /// Offered loads in requests per second (generated workloads only).
    pub offered_rps: Vec<f64>,
    /// Tenant counts (generated workloads only).
    pub tenants: Vec<u32>,
    /// Popularities (generated workloads only).
    pub popularity: Vec<Popularity>,
    /// Policies (default: the scenario's).
    pub policies: Vec<String>,
    /// Seeds (default: the scenario's).
    pub seeds: Vec<u64>,
}

impl Scenario {
    /// Parses and validates a scenario; `name` (its file) is used in messages. A leading UTF-8
    /// byte-order mark is skipped.
    pub fn from_ron(text: &str, name: &str) -> Result<Scenario> {
        let text = workload::strip_bom(text);
        let scenario: Scenario = ron::from_str(text).map_err(|e| Error::from_ron(name, e))?;
        scenario.validate(name)?;
        Ok(scenario)
    }

    /// Checks everything that can be checked without reading other files; every error names
    /// `name` (the file, or "command line").
    pub fn validate(&self, name: &str) -> Result<()> {
        self.check(name).map_err(|e| match e {
            Error::Invalid { context, message } if !context.starts_with(name) => Error::Invalid {
                context: format!("{name}: {context}"),
                message,
            },
            e @ Error::Invalid { .. } => e,
            other => Error::invalid(name, other.to_string()),
        })
    }

    fn check(&self, name: &str) -> Result<()> {
        let field = |f: &str| format!("{name}: {f}");
        if !(1..=MAX_INSTANCES).contains(&self.instances) {
            return Err(Error::invalid(
                field("instances"),
                format!("{}: expected 1 to {MAX_INSTANCES}", self.instances),
            ));
        }
        if !(1..=MAX_SAMPLES).contains(&self.forward_batch) {
            return Err(Error::invalid(
                field("forward_batch"),
                format!("{}: expected 1 to {MAX_SAMPLES}", self.forward_batch),
            ));
        }
        if self.policies.is_empty() {
            return Err(Error::invalid(
                field("policies"),
                format!("expected at least one of {}", POLICIES.join(", ")),
            ));
        }
        if self.seeds.is_empty() {
            return Err(Error::invalid(field("seeds"), "expected at least one seed"));
        }
        self.request.validate(&field("request"))?;
        let batchings = self.sweep.iter().flat_map(|s| s.batching.iter().flatten());
        for b in self.batching.iter().chain(batchings) {
            if !(b.max_wait_ms.is_finite() && (0.0..=60_000.0).contains(&b.max_wait_ms)) {
                return Err(Error::invalid(
                    field("batching.max_wait_ms"),
                    format!("expected 0 to 60000 ms, got {}", b.max_wait_ms),
                ));
            }
        }
        if self.host_cache.is_some() && self.gpu_pool.is_none() && self.pet.is_none() {
            return Err(Error::invalid(
                field("host_cache"),
                "a bounded host cache needs a gpu_pool (or parameter-efficient tenants)",
            ));
        }
        if let Some(r) = self.rate_rps.filter(|r| !(r.is_finite() && *r > 0.0)) {
            return Err(Error::invalid(
                field("rate_rps"),
                format!("expected a positive rate, got {r}"),
            ));
        }
        let shape = Shape {
            instances: self.instances,
            tenants: 1,
        };
        let sweep = self.sweep.clone().unwrap_or_default();
        for policy in self.policies.iter().chain(&sweep.policies) {
            scheduler::by_name(policy, &self.policy_options, shape)?;
        }
        if let Some(bad) = sweep
            .instances
            .iter()
            .find(|m| !(1..=MAX_INSTANCES).contains(m))
        {
            return Err(Error::invalid(
                field("sweep.instances"),
                format!("{bad}: expected counts of 1 to {MAX_INSTANCES}"),
            ));
        }
        let axes = [
            sweep.workloads.len(),
            sweep.profiles.len(),
            sweep.instances.len(),
            sweep.loading.len(),
            sweep.offered_rps.len(),
            sweep.tenants.len(),
            sweep.popularity.len(),
            if sweep.policies.is_empty() {
                self.policies.len()
            } else {
                sweep.policies.len()
            },
            if sweep.seeds.is_empty() {
                self.seeds.len()
            } else {
                sweep.seeds.len()
            },
        ];
        let cells = axes
            .iter()
            .try_fold(1usize, |n, &len| n.checked_mul(len.max(1)))
            .filter(|&n| n <= MAX_CELLS);
        if cells.is_none() {
            return Err(Error::invalid(
                field("sweep"),
                format!(
                    "the grid has {} cells (axes {axes:?}): at most {MAX_CELLS} are allowed",
                    axes.iter().map(|&a| a.max(1) as f64).product::<f64>()
                ),
            ));
        }
        if let Some(bad) = sweep
            .offered_rps
            .iter()
            .find(|r| !(r.is_finite() && **r > 0.0))
        {
            return Err(Error::invalid(
                field("sweep.offered_rps"),
                format!("expected positive rates, got {bad}"),
            ));
        }
        if let Some(bad) = sweep
            .tenants
            .iter()
            .find(|t| !(1..=MAX_TENANTS).contains(t))
        {
            return Err(Error::invalid(
                field("sweep.tenants"),
                format!("{bad}: expected counts of 1 to {MAX_TENANTS}"),
            ));
        }
        let rates: Vec<Option<f64>> = if sweep.offered_rps.is_empty() {
            vec![None]
        } else {
            sweep.offered_rps.iter().copied().map(Some).collect()
        };
        for spec in std::iter::once(&self.workload).chain(sweep.workloads.iter().map(|w| &w.1)) {
            for rate in &rates {
                let spec = rate.map_or_else(|| spec.clone(), |r| with_rate(spec, r));
                spec.validate()?;
            }
        }
        let generated = |w: &WorkloadSpec| matches!(w, WorkloadSpec::Generate { .. });
        let all_generated = if sweep.workloads.is_empty() {
            generated(&self.workload)
        } else {
            sweep.workloads.iter().all(|(_, w)| generated(w))
        };
        let needs_generator = !sweep.offered_rps.is_empty()
            || !sweep.tenants.is_empty()
            || !sweep.popularity.is_empty();
        if needs_generator && !all_generated {
            return Err(Error::invalid(
                field("sweep"),
                "offered_rps, tenants and popularity apply to generated workloads (Generate) only",
            ));
        }
        Ok(())
    }

    /// The serving configuration.
    pub fn serving(&self) -> Serving {
        Serving {
            instances: self.instances,
            loading: self.loading,
            forward_batch: self.forward_batch,
            gpu_pool: self.gpu_pool,
            host_cache: self.host_cache,
            eviction: self.eviction,
            batching: self.batching,
            pet: self.pet,
        }
    }

    /// Reads the profile the scenario names.
    pub fn load_profile(&self, files: &dyn FileSource) -> Result<(Profile, String)> {
        let (text, name) = files.read(&self.profile)?;
        Ok((Profile::from_ron(&text, &name)?, name))
    }

    /// Builds the workload for `seed`, at `rate_rps` when the scenario sets one.
    pub fn load_workload(&self, files: &dyn FileSource, seed: u64) -> Result<Workload> {
        crate::offered::build(
            &self.workload,
            &self.request,
            &self.model,
            seed,
            files,
            self.rate_rps,
            0,
        )
    }

    /// Builds the workload for `seed` as its source writes it (ignoring `rate_rps`).
    pub fn load_workload_as_written(&self, files: &dyn FileSource, seed: u64) -> Result<Workload> {
        workload::build(&self.workload, &self.request, &self.model, seed, files)
    }

    /// Runs every (policy, seed) cell, in the order policies then seeds, and returns a report
    /// per cell.
    pub fn run(&self, files: &dyn FileSource) -> Result<Vec<Report>> {
        self.run_map(files, false, |report, _, _| report)
    }

    /// Runs every (policy, seed) cell like [`Scenario::run`] and keeps what each run recorded
    /// (every phase too when `timeline` is set) with the workload it replayed.
    pub fn run_detailed(&self, files: &dyn FileSource, timeline: bool) -> Result<Vec<CellRun>> {
        self.run_map(files, timeline, |report, run, workload| CellRun {
            report,
            run,
            workload: Arc::clone(workload),
        })
    }

    /// Runs every cell and maps each (report, run, workload) through `f`; results in the order
    /// policies then seeds.
    fn run_map<T>(
        &self,
        files: &dyn FileSource,
        timeline: bool,
        f: impl Fn(Report, Run, &Arc<Workload>) -> T,
    ) -> Result<Vec<T>> {
        let (profile, profile_name) = self.load_profile(files)?;
        let mut out = Vec::new();
        let mut cached: Option<Arc<Workload>> = None;
        for (si, &seed) in self.seeds.iter().enumerate() {
            // A trace does not depend on the seed: read it once.
            let workload = match (&cached, &self.workload) {
                (Some(w), WorkloadSpec::Trace(_)) => Arc::clone(w),
                _ => Arc::new(self.load_workload(files, seed)?),
            };
            let setup = Setup::new(&profile, &profile_name, &workload, self.serving())?;
            for (pi, policy) in self.policies.iter().enumerate() {
                let (report, run) = self.run_cell_full(&setup, policy, seed, timeline)?;
                out.push(((pi, si), f(report, run, &workload)));
            }
            cached = Some(workload);
        }
        // Order: policies, then seeds.
        out.sort_by_key(|(key, _)| *key);
        Ok(out.into_iter().map(|(_, t)| t).collect())
    }

    /// Runs one policy on a prepared setup.
    pub fn run_cell(&self, setup: &Setup<'_>, policy: &str, seed: u64) -> Result<Report> {
        Ok(self.run_cell_with_timeline(setup, policy, seed, false)?.0)
    }

    /// Runs one policy on a prepared setup, recording every phase of every instance when
    /// `timeline` is set.
    pub fn run_cell_with_timeline(
        &self,
        setup: &Setup<'_>,
        policy: &str,
        seed: u64,
        timeline: bool,
    ) -> Result<(Report, Option<Vec<Span>>)> {
        let (report, run) = self.run_cell_full(setup, policy, seed, timeline)?;
        Ok((report, run.timeline))
    }

    /// Runs one policy on a prepared setup and returns the report and everything the run
    /// recorded (per-request times and instances; every phase when `timeline` is set).
    pub fn run_cell_full(
        &self,
        setup: &Setup<'_>,
        policy: &str,
        seed: u64,
        timeline: bool,
    ) -> Result<(Report, Run)> {
        let shape = Shape {
            instances: setup.serving.instances,
            tenants: setup.workload.tenants.len(),
        };
        let mut scheduler = scheduler::by_name(policy, &self.policy_options, shape)?;
        let options = RunOptions {
            preload: self.preload,
            timeline,
        };
        let run = engine::simulate(setup, scheduler.as_mut(), seed, options)?;
        let report = Report::new(&self.name, policy, seed, setup, &run);
        Ok((report, run))
    }
}

/// Replaces the arrival rate of a generated workload with `rate_rps`.
pub fn with_rate(spec: &WorkloadSpec, rate_rps: f64) -> WorkloadSpec {
    let mut spec = spec.clone();
    if let WorkloadSpec::Generate { arrivals, .. } = &mut spec {
        *arrivals = match *arrivals {
            Arrivals::FastPtm { .. } => Arrivals::FastPtm {
                mu_s: 1.0 / rate_rps,
            },
            Arrivals::Poisson { .. } => Arrivals::Poisson { rate_rps },
            Arrivals::Gamma { cv, .. } => Arrivals::Gamma { rate_rps, cv },
            Arrivals::Fixed { .. } => Arrivals::Fixed {
                gap_ms: 1000.0 / rate_rps,
            },
        };
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"Scenario(
        name: "t",
        profile: "p.ron",
        model: "bert-base",
        instances: 2,
        workload: Sequence(repeat: 2, types: 3, gap_ms: 10.0),
    )"#;

    #[test]
    fn defaults_fill_in() {
        let s = Scenario::from_ron(MINIMAL, "t.ron").unwrap();
        assert_eq!(s.policies.len(), POLICIES.len());
        assert_eq!(s.seeds, vec![1]);
        assert_eq!(s.request, RequestDefaults::default());
        assert_eq!(s.loading, LoadingMode::Split);
    }

    #[test]
    fn malformed_scenarios_name_line_and_column() {
        let text = MINIMAL.replace("instances: 2,", "instances: two,");
        let err = Scenario::from_ron(&text, "t.ron").unwrap_err().to_string();
        assert!(err.starts_with("t.ron:5:"), "{err}");
        let text = MINIMAL.replace("instances: 2,", "instances: 2, colour: 3,");
        let err = Scenario::from_ron(&text, "t.ron").unwrap_err().to_string();
        assert!(
            err.starts_with("t.ron:5:") && err.contains("colour"),
            "{err}"
        );
        let text = MINIMAL.replace("instances: 2,", "instances: 2, policies: [\"lifo\"],");
        let err = Scenario::from_ron(&text, "t.ron").unwrap_err().to_string();
        assert!(err.contains("lifo"), "{err}");
    }

    #[test]
    fn sweep_axes_for_generators_only() {
        let text = MINIMAL.replace(
            "instances: 2,",
            "instances: 2, sweep: Some((offered_rps: [1.0])),",
        );
        let err = Scenario::from_ron(&text, "t.ron").unwrap_err().to_string();
        assert!(err.contains("generated workloads"), "{err}");
    }

    #[test]
    fn rates_replace_each_process() {
        let spec = WorkloadSpec::Generate {
            requests: 1,
            arrivals: Arrivals::FastPtm { mu_s: 0.2 },
            tenants: 2,
            popularity: Popularity::Uniform,
        };
        match with_rate(&spec, 20.0) {
            WorkloadSpec::Generate {
                arrivals: Arrivals::FastPtm { mu_s },
                ..
            } => assert_eq!(mu_s, 0.05),
            other => panic!("{other:?}"),
        }
    }
}
