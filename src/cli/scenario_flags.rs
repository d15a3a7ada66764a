//! The flags that pick and change a scenario, shared by `run`, `capacity` and `plan`: each one
//! replaces one field of the scenario file.

use crate::embedded::{self, Loaded};
use anyhow::bail;
use clap::builder::{PossibleValuesParser, TypedValueParser as _};
use clap::{Args, ValueEnum};
use ptm_sim::engine::{Batching, LoadingMode};
use ptm_sim::ledger::{Capacity, Eviction};
use ptm_sim::scheduler::POLICIES;
use ptm_sim::workload::WorkloadSpec;
use std::path::PathBuf;

/// A policy name, any case, one of [`POLICIES`] (listed in `--help`).
pub fn policy_parser() -> impl clap::builder::TypedValueParser<Value = String> {
    PossibleValuesParser::new(POLICIES).map(|s| s.to_ascii_lowercase())
}

/// `--loading` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Loading {
    /// Swap weights into a resident model (FastPTM's fast loading).
    Split,
    /// Rebuild the model on every switch.
    Full,
}

/// The scenario and what to change in it.
#[derive(Debug, Default, Clone, Args)]
pub struct ScenarioFlags {
    /// Scenario file, or the name of an embedded one (`ptm list`; default: fastptm/overall).
    pub scenario: Option<PathBuf>,
    /// Replace the workload with this trace (FastPTM JSON, or our CSV / JSONL; a file, or an
    /// embedded name such as traces/fastptm/…).
    #[arg(long, conflicts_with = "workload")]
    pub trace: Option<PathBuf>,
    /// Replace the workload with a spec in the scenario syntax, e.g.
    /// 'Generate(requests: 5000, arrivals: Poisson(rate_rps: 40.0), tenants: 100, popularity: Zipf(s: 1.1))'.
    #[arg(long, value_name = "SPEC")]
    pub workload: Option<String>,
    /// Replace the GPU profile (a file, or an embedded name such as profiles/h200.ron).
    #[arg(long)]
    pub profile: Option<PathBuf>,
    /// Run only these policies (repeatable; any case).
    #[arg(long = "policy", value_name = "NAME", ignore_case = true, value_parser = policy_parser())]
    pub policies: Vec<String>,
    /// Replace the number of instances (1 to 1,024).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=ptm_sim::limits::MAX_INSTANCES as u64))]
    pub instances: Option<u64>,
    /// Replace the profile model every tenant is a fine-tune of (e.g. one a calibrated profile
    /// describes).
    #[arg(long)]
    pub model: Option<String>,
    /// Replace the loading mode.
    #[arg(long, value_enum)]
    pub loading: Option<Loading>,
    /// Replace the seeds (repeatable).
    #[arg(long = "seed", value_name = "S")]
    pub seeds: Vec<u64>,
    /// Offered load, requests per second: a generator's rate is replaced, a trace is replayed
    /// faster or slower (arrival times scaled).
    #[arg(long, value_name = "REQ_PER_S")]
    pub rate: Option<f64>,
    /// Replace the number of tenants of a generated workload.
    #[arg(long, value_name = "N")]
    pub tenants: Option<u32>,
    /// Replace the deadline of requests whose workload gives none, milliseconds.
    #[arg(long, value_name = "MS")]
    pub deadline_ms: Option<f64>,
    /// Replace the GPU weight pool: `none` (FastPTM's model), a tenant count, bytes (`80GB`) or
    /// `auto` (what fits after the instances).
    #[arg(long, value_parser = parse_pool, value_name = "POOL")]
    pub gpu_pool: Option<PoolArg>,
    /// Replace who a full pool evicts: lru, lfu, gdsf, tinylfu or belady (the offline optimum).
    #[arg(long, value_parser = parse_eviction)]
    pub eviction: Option<Eviction>,
    /// Turn cross-request batching on with this window, milliseconds (`--no-batching`: off).
    #[arg(long, value_name = "MS", conflicts_with = "no_batching")]
    pub max_wait_ms: Option<f64>,
    /// Turn cross-request batching off.
    #[arg(long)]
    pub no_batching: bool,
    /// Replace the rows of a forward pass (and of a batch).
    #[arg(long, value_name = "ROWS")]
    pub forward_batch: Option<u32>,
}

impl ScenarioFlags {
    /// Loads the scenario and applies every flag given, then validates it.
    pub fn load(&self) -> anyhow::Result<Loaded> {
        let mut loaded = embedded::load_scenario(self.scenario.as_deref())?;
        let s = &mut loaded.scenario;
        if let Some(trace) = &self.trace {
            s.workload = WorkloadSpec::Trace(embedded::flag_path(trace)?);
            // The grid belongs to the scenario's own workload.
            s.sweep = None;
        }
        if let Some(spec) = &self.workload {
            s.workload =
                ron::from_str(spec).map_err(|e| ptm_sim::Error::from_ron("--workload", e))?;
            s.sweep = None;
        }
        if let Some(profile) = &self.profile {
            s.profile = embedded::flag_path(profile)?;
        }
        if !self.policies.is_empty() {
            s.policies = self.policies.clone();
        }
        if let Some(n) = self.instances {
            s.instances = n as usize;
        }
        if let Some(m) = &self.model {
            s.model = m.clone();
        }
        if let Some(l) = self.loading {
            s.loading = match l {
                Loading::Split => LoadingMode::Split,
                Loading::Full => LoadingMode::Full,
            };
        }
        if !self.seeds.is_empty() {
            s.seeds = self.seeds.clone();
        }
        if let Some(r) = self.rate {
            s.rate_rps = Some(r);
        }
        if let Some(t) = self.tenants {
            match &mut s.workload {
                WorkloadSpec::Generate { tenants, .. } => *tenants = t,
                _ => bail!(
                    "--tenants applies to a generated workload (Generate), but this one is a trace \
                     or a sequence: pass --workload 'Generate(…)'"
                ),
            }
        }
        if let Some(d) = self.deadline_ms {
            s.request.deadline_ms = d;
        }
        if let Some(PoolArg(pool)) = self.gpu_pool {
            s.gpu_pool = pool;
        }
        if let Some(e) = self.eviction {
            s.eviction = e;
        }
        if let Some(w) = self.max_wait_ms {
            s.batching = Some(Batching { max_wait_ms: w });
        }
        if self.no_batching {
            s.batching = None;
        }
        if let Some(b) = self.forward_batch {
            s.forward_batch = b;
        }
        s.validate("command line")?;
        Ok(loaded)
    }
}

/// `--gpu-pool`: `auto`, a tenant count, or bytes with a unit (`80GB`, `512MiB`).
pub fn parse_capacity(s: &str) -> Result<Capacity, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("auto") {
        return Ok(Capacity::Auto);
    }
    if let Ok(n) = t.parse::<u32>() {
        return Ok(Capacity::Tenants(n));
    }
    let units: [(&str, f64); 6] = [
        ("GiB", (1u64 << 30) as f64),
        ("MiB", (1u64 << 20) as f64),
        ("GB", 1e9),
        ("MB", 1e6),
        ("TB", 1e12),
        ("B", 1.0),
    ];
    for (unit, scale) in units {
        if let Some(num) = t.strip_suffix(unit) {
            let v: f64 = num
                .trim()
                .parse()
                .map_err(|_| format!("{s:?}: expected auto, a tenant count or bytes like 80GB"))?;
            if !(v.is_finite() && v > 0.0 && v * scale < 1e15) {
                return Err(format!("{s:?}: expected a positive size below 1 PB"));
            }
            return Ok(Capacity::Bytes((v * scale) as u64));
        }
    }
    Err(format!(
        "{s:?}: expected auto, a tenant count or bytes like 80GB"
    ))
}

/// `--eviction`: lru, lfu, gdsf, tinylfu (belady is the simulator's).
pub fn parse_eviction(s: &str) -> Result<Eviction, String> {
    Eviction::by_name(s).map_err(|e| e.to_string())
}

/// `--gpu-pool` of a scenario: `none` (FastPTM's model), or a pool as [`parse_capacity`] reads.
pub fn parse_pool(s: &str) -> Result<PoolArg, String> {
    if s.trim().eq_ignore_ascii_case("none") {
        return Ok(PoolArg(None));
    }
    parse_capacity(s).map(|c| PoolArg(Some(c)))
}

/// A GPU pool given on the command line, or none.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoolArg(pub Option<Capacity>);
