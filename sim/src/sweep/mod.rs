//! Sweeps: every cell of a scenario's grid, run in parallel, each cell deterministic whatever the
//! thread count.
//!
//! A cell is one combination of the grid's axes (see [`crate::scenario::Sweep`]) and one
//! (policy, seed). Axes that the sweep leaves empty keep the scenario's value. Cells are
//! numbered in a fixed order — workload, profile, instances, loading (then GPU pool, eviction,
//! batching), offered load, tenants, popularity, policy, seed — and results come back in that order, so the outputs do not depend
//! on how the work was spread over threads.
//!
//! Inputs are read once: each distinct profile and workload is loaded before the parallel part.

use crate::engine::{Batching, LoadingMode, PetServing, Setup};
use crate::error::Result;
use crate::ledger::{Capacity, Eviction};
use crate::metrics::Report;
use crate::offered;
use crate::profile::Profile;
use crate::scenario::Scenario;
use crate::workload::{self, FileSource, Popularity, Workload, WorkloadSpec};
pub mod folder;
mod summary;

pub use summary::{mean_ci95, seeds_csv, summary_csv};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Where a cell sits in the grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellKey {
    /// Position in the grid's fixed order.
    pub index: usize,
    /// The workload's label (the scenario's own is `base`).
    pub workload: String,
    /// The profile's path as the scenario writes it.
    pub profile: String,
    /// Instances.
    pub instances: usize,
    /// Loading mode.
    pub loading: LoadingMode,
    /// The GPU pool (absent: FastPTM's model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_pool: Option<Capacity>,
    /// Eviction policy (with a pool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eviction: Option<Eviction>,
    /// Cross-request batching.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batching: Option<Batching>,
    /// Parameter-efficient tenants (absent: full fine-tunes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pet: Option<PetServing>,
    /// Offered load, requests per second (generated workloads; swept or the generator's own).
    pub offered_rps: Option<f64>,
    /// Tenants (generated workloads).
    pub tenants: Option<u32>,
    /// Popularity (generated workloads).
    pub popularity: Option<Popularity>,
    /// Policy.
    pub policy: String,
    /// Seed.
    pub seed: u64,
}

impl CellKey {
    /// The configuration without policy and seed: cells that share it are compared per policy
    /// and averaged over seeds.
    pub fn config(&self) -> String {
        let mut s = format!(
            "{} {} m={} {}",
            self.workload,
            self.profile,
            self.instances,
            self.loading.name()
        );
        if let Some(pool) = self.gpu_pool {
            s += &format!(" pool={}", capacity_name(pool));
        }
        if let Some(e) = self.eviction {
            s += &format!(" {}", e.name());
        }
        if let Some(b) = self.batching {
            s += &format!(" batch-wait={}ms", b.max_wait_ms);
        }
        if let Some(p) = self.pet {
            s += &format!(" pet={}", p.kind.key());
        }
        if let Some(r) = self.offered_rps {
            s += &format!(" rate={r}");
        }
        if let Some(t) = self.tenants {
            s += &format!(" tenants={t}");
        }
        if let Some(p) = &self.popularity {
            s += &format!(" {}", popularity_name(p));
        }
        s
    }
}

/// `600`, `80GB` or `auto`.
pub fn capacity_name(c: Capacity) -> String {
    match c {
        Capacity::Tenants(n) => n.to_string(),
        Capacity::Bytes(b) => format!("{}GB", b as f64 / 1e9),
        Capacity::Auto => "auto".into(),
    }
}

/// `uniform` or `zipf-1.1`.
pub fn popularity_name(p: &Popularity) -> String {
    match p {
        Popularity::Uniform => "uniform".into(),
        Popularity::Zipf { s } => format!("zipf-{s}"),
    }
}

/// A cell's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellReport {
    /// Where it sits.
    pub cell: CellKey,
    /// What it achieved.
    pub report: Report,
}

/// A cell ready to run: its key and the inputs it uses.
#[derive(Debug, Clone)]
pub struct Cell {
    /// Its key.
    pub key: CellKey,
    workload: WorkloadSpec,
    profile: PathBuf,
}

impl Cell {
    fn workload_id(&self) -> WorkloadId {
        // Traces do not depend on the seed; generators do.
        let seed = if matches!(self.workload, WorkloadSpec::Trace(_)) {
            None
        } else {
            Some(self.key.seed)
        };
        (format!("{:?}", self.workload), seed)
    }
}

/// Every cell of `scenario`'s grid (just its (policy, seed) cells when it has no sweep).
pub fn cells(scenario: &Scenario) -> Vec<Cell> {
    let sweep = scenario.sweep.clone().unwrap_or_default();
    let or = |v: &[PathBuf]| {
        if v.is_empty() {
            vec![scenario.profile.clone()]
        } else {
            v.to_vec()
        }
    };
    let workloads = if sweep.workloads.is_empty() {
        vec![("base".to_string(), scenario.workload.clone())]
    } else {
        sweep.workloads.clone()
    };
    let profiles = or(&sweep.profiles);
    let instances = if sweep.instances.is_empty() {
        vec![scenario.instances]
    } else {
        sweep.instances.clone()
    };
    let loadings = if sweep.loading.is_empty() {
        vec![scenario.loading]
    } else {
        sweep.loading.clone()
    };
    let pools = if sweep.gpu_pool.is_empty() {
        vec![scenario.gpu_pool]
    } else {
        sweep.gpu_pool.clone()
    };
    let evictions = if sweep.eviction.is_empty() {
        vec![scenario.eviction]
    } else {
        sweep.eviction.clone()
    };
    let batchings = if sweep.batching.is_empty() {
        vec![scenario.batching]
    } else {
        sweep.batching.clone()
    };
    let pets = if sweep.pet.is_empty() {
        vec![scenario.pet]
    } else {
        sweep.pet.clone()
    };
    // The serving variants: with no pool, the eviction policy means nothing; parameter-
    // efficient tenants keep their deltas in their own pool, not in the whole-weights one.
    let mut servings: Vec<Serving4> = Vec::new();
    for &pet in &pets {
        for &pool in &pools {
            for &e in &evictions {
                for &b in &batchings {
                    let pool = if pet.is_some() { None } else { pool };
                    let v = (pool, pool.map(|_| e), b, pet);
                    if !servings.contains(&v) {
                        servings.push(v);
                    }
                }
            }
        }
    }
    let rates: Vec<Option<f64>> = if sweep.offered_rps.is_empty() {
        vec![None]
    } else {
        sweep.offered_rps.iter().map(|r| Some(*r)).collect()
    };
    let tenants: Vec<Option<u32>> = if sweep.tenants.is_empty() {
        vec![None]
    } else {
        sweep.tenants.iter().map(|t| Some(*t)).collect()
    };
    let pops: Vec<Option<Popularity>> = if sweep.popularity.is_empty() {
        vec![None]
    } else {
        sweep.popularity.iter().map(|p| Some(*p)).collect()
    };
    let policies = if sweep.policies.is_empty() {
        scenario.policies.clone()
    } else {
        sweep.policies.clone()
    };
    let seeds = if sweep.seeds.is_empty() {
        scenario.seeds.clone()
    } else {
        sweep.seeds.clone()
    };

    let mut out = Vec::new();
    for (label, spec) in &workloads {
        for profile in &profiles {
            for &m in &instances {
                for (&loading, &(gpu_pool, eviction, batching, pet)) in loadings
                    .iter()
                    .flat_map(|l| servings.iter().map(move |v| (l, v)))
                {
                    for &rate in &rates {
                        for &t in &tenants {
                            for &pop in &pops {
                                let mut spec = spec.clone();
                                if let Some(r) = rate.or(scenario.rate_rps) {
                                    spec = offered::spec_at_rate(&spec, r);
                                }
                                if let WorkloadSpec::Generate {
                                    tenants,
                                    popularity,
                                    ..
                                } = &mut spec
                                {
                                    *tenants = t.unwrap_or(*tenants);
                                    *popularity = pop.unwrap_or(*popularity);
                                }
                                let (offered, tn, pp) = match &spec {
                                    WorkloadSpec::Generate {
                                        arrivals,
                                        tenants,
                                        popularity,
                                        ..
                                    } => (
                                        Some(arrivals.rate_rps()),
                                        Some(*tenants),
                                        Some(*popularity),
                                    ),
                                    _ => (None, None, None),
                                };
                                for policy in &policies {
                                    for &seed in &seeds {
                                        out.push(Cell {
                                            key: CellKey {
                                                index: out.len(),
                                                workload: label.clone(),
                                                profile: profile.display().to_string(),
                                                instances: m,
                                                loading,
                                                gpu_pool,
                                                eviction,
                                                batching,
                                                pet,
                                                offered_rps: offered,
                                                tenants: tn,
                                                popularity: pp,
                                                policy: policy.clone(),
                                                seed,
                                            },
                                            workload: spec.clone(),
                                            profile: profile.clone(),
                                        });
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

/// One serving variant of the grid: GPU pool, its eviction, batching, PET tenants.
type Serving4 = (
    Option<Capacity>,
    Option<Eviction>,
    Option<Batching>,
    Option<PetServing>,
);

/// Identifies a built workload: its spec, and the seed for generated ones.
type WorkloadId = (String, Option<u64>);

/// The inputs of a set of cells, each read or generated once.
pub struct Inputs {
    profiles: BTreeMap<PathBuf, (Profile, String)>,
    workloads: BTreeMap<WorkloadId, Workload>,
}

impl Inputs {
    /// Reads every profile and builds every workload that `cells` use (workloads in parallel).
    pub fn load(scenario: &Scenario, cells: &[Cell], files: &dyn FileSource) -> Result<Inputs> {
        let mut profiles = BTreeMap::new();
        for c in cells {
            if !profiles.contains_key(&c.profile) {
                let (text, name) = files.read(&c.profile)?;
                profiles.insert(c.profile.clone(), (Profile::from_ron(&text, &name)?, name));
            }
        }
        let mut wanted: BTreeMap<WorkloadId, &Cell> = BTreeMap::new();
        for c in cells {
            wanted.entry(c.workload_id()).or_insert(c);
        }
        // Trace files are read here, sequentially; generators then run in parallel.
        let mut texts: BTreeMap<PathBuf, (String, String)> = BTreeMap::new();
        for c in wanted.values() {
            if let WorkloadSpec::Trace(p) = &c.workload {
                if !texts.contains_key(p) {
                    texts.insert(p.clone(), files.read(p)?);
                }
            }
        }
        let built: Vec<Result<(WorkloadId, Workload)>> = wanted
            .into_par_iter()
            .map(|(id, c)| {
                let w = match &c.workload {
                    WorkloadSpec::Trace(p) => {
                        let (text, name) = &texts[p];
                        let w =
                            workload::parse_trace(text, name, &scenario.request, &scenario.model)?;
                        match scenario.rate_rps {
                            Some(r) => offered::scale_to_rate(&w, r)?,
                            None => w,
                        }
                    }
                    spec => workload::build(
                        spec,
                        &scenario.request,
                        &scenario.model,
                        c.key.seed,
                        &workload::NoFiles,
                    )?,
                };
                Ok((id, w))
            })
            .collect();
        let workloads = built.into_iter().collect::<Result<_>>()?;
        Ok(Inputs {
            profiles,
            workloads,
        })
    }
}

/// Runs `cells` in parallel on the current rayon pool, calling `done` after each; results come
/// back in cell order.
pub fn run(
    scenario: &Scenario,
    cells: &[Cell],
    inputs: &Inputs,
    done: &(dyn Fn() + Sync),
) -> Result<Vec<CellReport>> {
    cells
        .par_iter()
        .map(|c| {
            let (profile, name) = &inputs.profiles[&c.profile];
            let w = &inputs.workloads[&c.workload_id()];
            let mut serving = scenario.serving();
            serving.instances = c.key.instances;
            serving.loading = c.key.loading;
            serving.gpu_pool = c.key.gpu_pool;
            serving.eviction = c.key.eviction.unwrap_or_default();
            serving.batching = c.key.batching;
            serving.pet = c.key.pet;
            let setup = Setup::new(profile, name, w, serving)?;
            let report = scenario.run_cell(&setup, &c.key.policy, c.key.seed)?;
            done();
            Ok(CellReport {
                cell: c.key.clone(),
                report,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_order_is_fixed_and_axes_default_to_the_scenario() {
        let s = Scenario::from_ron(
            r#"Scenario(name: "g", profile: "p.ron", model: "m", instances: 2,
               workload: Generate(requests: 10, arrivals: Poisson(rate_rps: 1.0), tenants: 3),
               policies: ["fcfs", "edf"], seeds: [1, 2],
               sweep: Some((instances: [1, 4], offered_rps: [5.0, 9.0])))"#,
            "g.ron",
        )
        .unwrap();
        let cells = cells(&s);
        assert_eq!(cells.len(), 2 * 2 * 2 * 2);
        let k = &cells[5].key;
        assert_eq!(
            (k.instances, k.offered_rps, k.policy.as_str(), k.seed),
            (1, Some(9.0), "fcfs", 2)
        );
        assert_eq!(k.tenants, Some(3));
        assert!(cells.iter().enumerate().all(|(i, c)| c.key.index == i));
    }

    #[test]
    fn a_pet_axis_sets_full_fine_tunes_against_deltas_without_the_weight_pool() {
        let s = Scenario::from_ron(
            r#"Scenario(name: "g", profile: "p.ron", model: "m", instances: 2,
               workload: Generate(requests: 10, arrivals: Poisson(rate_rps: 1.0), tenants: 3),
               policies: ["pets"], seeds: [1],
               sweep: Some((gpu_pool: [Some(Auto)], eviction: [Lru, Lfu],
                            pet: [None, Some((kind: Lora(rank: 8)))])))"#,
            "g.ron",
        )
        .unwrap();
        let keys: Vec<String> = cells(&s).iter().map(|c| c.key.config()).collect();
        // Full fine-tunes in the pool under each eviction policy; the deltas once, no pool.
        assert_eq!(
            keys,
            [
                "base p.ron m=2 split pool=auto lru rate=1 tenants=3 uniform",
                "base p.ron m=2 split pool=auto lfu rate=1 tenants=3 uniform",
                "base p.ron m=2 split pet=lora-r8 rate=1 tenants=3 uniform",
            ]
        );
    }
}
