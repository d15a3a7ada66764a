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

use crate::engine::{self, LoadingMode, Preload, RunOptions, Serving, Setup, Span};
use crate::error::{Error, Result};
use crate::limits::{MAX_CELLS, MAX_INSTANCES, MAX_SAMPLES, MAX_TENANTS};
use crate::metrics::Report;
use crate::profile::Profile;
use crate::scheduler::{self, PolicyOptions, Shape, POLICIES};
use crate::workload::{
    self, Arrivals, FileSource, Popularity, RequestDefaults, Workload, WorkloadSpec,
};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

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
    /// The requests.
    pub workload: WorkloadSpec,
    /// Request shape where the workload does not give it.
    #[serde(default)]
    pub request: RequestDefaults,
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
        }
    }

    /// Reads the profile the scenario names.
    pub fn load_profile(&self, files: &dyn FileSource) -> Result<(Profile, String)> {
        let (text, name) = files.read(&self.profile)?;
        Ok((Profile::from_ron(&text, &name)?, name))
    }

    /// Builds the workload for `seed`.
    pub fn load_workload(&self, files: &dyn FileSource, seed: u64) -> Result<Workload> {
        workload::build(&self.workload, &self.request, &self.model, seed, files)
    }

    /// Runs every (policy, seed) cell, in the order policies then seeds, and returns a report
    /// per cell.
    pub fn run(&self, files: &dyn FileSource) -> Result<Vec<Report>> {
        let (profile, profile_name) = self.load_profile(files)?;
        let mut reports = Vec::new();
        let mut cached: Option<Workload> = None;
        for &seed in &self.seeds {
            // A trace does not depend on the seed: read it once.
            let workload = match (&cached, &self.workload) {
                (Some(w), WorkloadSpec::Trace(_)) => w.clone(),
                _ => self.load_workload(files, seed)?,
            };
            let setup = Setup::new(&profile, &profile_name, &workload, self.serving())?;
            for policy in &self.policies {
                reports.push((seed, self.run_cell(&setup, policy, seed)?));
            }
            cached = Some(workload);
        }
        // Order: policies, then seeds.
        let order = |p: &str| {
            self.policies
                .iter()
                .position(|q| q == p)
                .unwrap_or(usize::MAX)
        };
        reports
            .sort_by_key(|(seed, r)| (order(&r.policy), self.seeds.iter().position(|s| s == seed)));
        Ok(reports.into_iter().map(|(_, r)| r).collect())
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
        Ok((report, run.timeline))
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
