//! A recorded live-versus-simulated run (`ptm run --live --compare --json`) with its simulated
//! half made again by this build: the live half is kept as recorded (a replay on a GPU cannot be
//! repeated without one), the simulated half — report, phase means, per-request latencies — is
//! what the current simulator predicts for the same scenario, policy and seed. `ptm run
//! SCENARIO … --resimulate FILE` prints it; `ptm fidelity-table` judges it like any recording.
//!
//! The scenario must build the workload the recording replayed: every recorded cell needs a
//! policy and seed of the scenario, and the same scenario name, instances, request count and
//! offered rate (the flags the recording used, e.g. `--rate`, `--instances`, must be passed
//! again); anything else is refused, naming the cell and what differs.

use crate::engine::{Run, Setup};
use crate::error::{Error, Result};
use crate::fidelity::{Cell, Phases};
use crate::metrics::Report;
use crate::scenario::Scenario;
use crate::workload::{FileSource, Request, Workload};
use std::collections::BTreeMap;

/// Each request's response time in `run` of `requests`, nanoseconds (request order).
pub fn latencies_ns(requests: &[Request], run: &Run) -> Vec<u64> {
    requests
        .iter()
        .zip(&run.end_ns)
        .map(|(r, &end)| end.saturating_sub(r.arrival_ns))
        .collect()
}

/// Refuses a recorded cell whose run was not of this scenario's workload and serving.
fn check_same(label: &str, live: &Report, sim: &Report) -> Result<()> {
    let same_rate = (live.offered_rps - sim.offered_rps).abs() <= 1e-9 * live.offered_rps.abs();
    let mut diffs = Vec::new();
    if live.scenario != sim.scenario {
        diffs.push(format!(
            "scenario `{}` recorded, `{}` given",
            live.scenario, sim.scenario
        ));
    }
    if live.instances != sim.instances {
        diffs.push(format!(
            "{} instances recorded, {} given",
            live.instances, sim.instances
        ));
    }
    if live.requests != sim.requests || !same_rate {
        diffs.push(format!(
            "{} requests at {} req/s recorded, {} at {} req/s given",
            live.requests, live.offered_rps, sim.requests, sim.offered_rps
        ));
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(Error::invalid(
            label,
            format!(
                "the scenario does not build the recorded run ({}): pass the flags the \
                 recording used (--rate, --instances, --trace, …)",
                diffs.join("; ")
            ),
        ))
    }
}

/// `recorded` (from `source`, named in errors) with every cell's simulated half replaced by a
/// fresh simulation of `scenario` (policy and seed from the cell's live report).
pub fn resimulate(
    scenario: &Scenario,
    files: &dyn FileSource,
    source: &str,
    recorded: Vec<Cell>,
) -> Result<Vec<Cell>> {
    let (profile, profile_name) = scenario.load_profile(files)?;
    let mut workloads: BTreeMap<u64, Workload> = BTreeMap::new();
    let mut out = Vec::with_capacity(recorded.len());
    for (k, cell) in recorded.into_iter().enumerate() {
        let label = format!(
            "{source}: cell {k} ({} / seed {})",
            cell.live.policy, cell.live.seed
        );
        let seed = cell.live.seed;
        let policy = scenario
            .policies
            .iter()
            .find(|p| p.eq_ignore_ascii_case(&cell.live.policy))
            .ok_or_else(|| {
                Error::invalid(
                    &label,
                    format!(
                        "policy `{}` is not among the scenario's ({})",
                        cell.live.policy,
                        scenario.policies.join(", ")
                    ),
                )
            })?
            .clone();
        let workload = match workloads.entry(seed) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(scenario.load_workload(files, seed)?)
            }
        };
        let workload = &*workload;
        let setup = Setup::new(&profile, &profile_name, workload, scenario.serving())?;
        let (report, run) = scenario.run_cell_full(&setup, &policy, seed, true)?;
        check_same(&label, &cell.live, &report)?;
        if cell.live_latencies_ns.len() != workload.requests.len()
            && !cell.live_latencies_ns.is_empty()
        {
            return Err(Error::invalid(
                &label,
                format!(
                    "{} live latencies recorded for {} requests",
                    cell.live_latencies_ns.len(),
                    workload.requests.len()
                ),
            ));
        }
        let phases = Phases::of(run.timeline.as_deref().unwrap_or_default());
        let latencies = latencies_ns(&workload.requests, &run);
        out.push(Cell {
            simulated: Some(report),
            simulated_phases: Some(phases),
            simulated_latencies_ns: latencies,
            ..cell
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Profile;
    use crate::workload::NoFiles;
    use std::path::Path;

    struct Files(Profile);

    impl FileSource for Files {
        fn read(&self, path: &Path) -> Result<(String, String)> {
            if path == Path::new("p.ron") {
                Ok((ron::ser::to_string(&self.0).unwrap(), "p.ron".into()))
            } else {
                NoFiles.read(path)
            }
        }
    }

    fn scenario(instances: usize) -> Scenario {
        Scenario::from_ron(
            &format!(
                r#"Scenario(name: "re", profile: "p.ron", model: "bert-base", instances: {instances},
                   workload: Generate(requests: 300, arrivals: Poisson(rate_rps: 40.0), tenants: 6,
                                      popularity: Zipf(s: 1.0)),
                   policies: ["fcfs-rr", "affinity"], seeds: [1, 2])"#
            ),
            "re.ron",
        )
        .unwrap()
    }

    /// A "recording" whose live half is a simulation on `profile` (what a replay would record).
    fn recorded(s: &Scenario, files: &Files) -> Vec<Cell> {
        let (profile, name) = s.load_profile(files).unwrap();
        let mut cells = Vec::new();
        for &seed in &s.seeds {
            let workload = s.load_workload(files, seed).unwrap();
            let setup = Setup::new(&profile, &name, &workload, s.serving()).unwrap();
            for policy in &s.policies {
                let (live, run) = s.run_cell_full(&setup, policy, seed, true).unwrap();
                cells.push(Cell {
                    live,
                    live_phases: Phases::of(run.timeline.as_deref().unwrap_or_default()),
                    simulated: None,
                    simulated_phases: None,
                    live_latencies_ns: latencies_ns(&workload.requests, &run),
                    simulated_latencies_ns: Vec::new(),
                });
            }
        }
        cells
    }

    #[test]
    fn the_live_half_is_kept_and_the_simulated_half_is_this_builds() {
        let files = Files(Profile::example());
        let s = scenario(2);
        let rec = recorded(&s, &files);
        let out = resimulate(&s, &files, "rec.json", rec.clone()).unwrap();
        assert_eq!(out.len(), 4);
        for (r, o) in rec.iter().zip(&out) {
            // Simulated on the profile the live half was made from: the two halves agree
            // exactly, and the live half is untouched.
            assert_eq!(o.live.latency_ms.mean, r.live.latency_ms.mean);
            let sim = o.simulated.as_ref().unwrap();
            assert_eq!(sim.latency_ms.mean, o.live.latency_ms.mean);
            assert_eq!(sim.switches, o.live.switches);
            assert_eq!(o.simulated_latencies_ns, o.live_latencies_ns);
            assert_eq!(o.simulated_phases, Some(o.live_phases));
        }
        // On a slower profile the simulated half moves, the live half does not.
        let mut slow = Profile::example();
        for m in slow.models.values_mut() {
            m.switch.split.ms = crate::profile::Dist::Constant(1000.0);
        }
        let out = resimulate(&s, &Files(slow), "rec.json", rec.clone()).unwrap();
        for c in &out {
            let sim = c.simulated.as_ref().unwrap();
            assert!(
                sim.latency_ms.mean > c.live.latency_ms.mean,
                "{} {} {} {}",
                sim.latency_ms.mean,
                c.live.latency_ms.mean,
                sim.switches,
                sim.loading
            );
        }
    }

    #[test]
    fn a_recording_of_another_run_is_refused_naming_the_cell() {
        let files = Files(Profile::example());
        let rec = recorded(&scenario(2), &files);
        let err = resimulate(&scenario(3), &files, "rec.json", rec.clone())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("rec.json: cell 0 (fcfs-rr / seed 1)")
                && err.contains("2 instances recorded, 3 given"),
            "{err}"
        );
        let mut other = rec;
        other[1].live.policy = "omls".into();
        let err = resimulate(&scenario(2), &files, "rec.json", other)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cell 1") && err.contains("policy `omls` is not among"),
            "{err}"
        );
    }
}
