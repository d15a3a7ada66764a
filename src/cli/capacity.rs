//! `ptm capacity`: per policy, the highest offered rate that meets the SLO target in steady
//! state (`ptm_sim::capacity`).

use super::scenario_flags::ScenarioFlags;
use clap::Args;
use ptm_sim::capacity::{self, Capacity, CapacityOptions};

/// How to search (shared with `ptm plan`).
#[derive(Debug, Clone, Args)]
pub struct SearchFlags {
    /// SLO attainment target (share of requests meeting their deadline after the warm-up),
    /// lowest over seeds.
    #[arg(long, default_value_t = 0.99)]
    pub slo: f64,
    /// Stop when the bracket is narrower than this (relative).
    #[arg(long, default_value_t = 0.01)]
    pub tolerance: f64,
    /// Requests per simulated run, at least: a trace is repeated, a generator draws more, so
    /// that the run reaches a steady state.
    #[arg(long, default_value_t = 10_000)]
    pub requests: usize,
    /// Share of each run's requests treated as warm-up (not judged).
    #[arg(long, default_value_t = 0.1)]
    pub warmup: f64,
}

impl SearchFlags {
    /// The options these flags set.
    pub fn options(&self) -> CapacityOptions {
        CapacityOptions {
            slo: self.slo,
            tolerance: self.tolerance,
            min_requests: self.requests,
            warmup_frac: self.warmup,
        }
    }
}

/// Flags of `ptm capacity`.
#[derive(Debug, Args)]
pub struct CapacityArgs {
    /// The scenario and what to change in it.
    #[command(flatten)]
    pub scenario: ScenarioFlags,
    /// How to search.
    #[command(flatten)]
    pub search: SearchFlags,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `12.345`, or `not reached`.
pub fn rate(r: Option<f64>) -> String {
    r.map_or_else(|| "not reached".to_string(), |r| format!("{r:.3}"))
}

/// Runs `ptm capacity`.
pub fn execute(args: CapacityArgs) -> anyhow::Result<()> {
    let loaded = args.scenario.load()?;
    let s = &loaded.scenario;
    let options = args.search.options();
    let results: Vec<Capacity> =
        capacity::search_all(s, loaded.files.as_ref(), &s.policies, &options)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
        return Ok(());
    }
    let per_run = results.first().map_or(0, |c| c.requests_per_run);
    println!(
        "{}: steady-state capacity at SLO attainment ≥ {} (lowest over {} seed(s); {} requests a run, first {} % not judged), {} instances",
        s.name,
        options.slo,
        s.seeds.len(),
        per_run,
        100.0 * options.warmup_frac,
        s.instances
    );
    println!(
        "{:<10} {:>14} {:>11} {:>15} {:>13} {:>5}  missed because",
        "policy", "capacity req/s", "attainment", "missed at req/s", "bound req/s", "runs"
    );
    for c in &results {
        let att = c
            .slo_attainment
            .map_or_else(|| "-".to_string(), |a| format!("{a:.4}"));
        let mark = if c.at_bound { " (1)" } else { "" };
        println!(
            "{:<10} {:>14} {:>11} {:>15} {:>13.3} {:>5}  {}",
            c.policy,
            format!("{}{mark}", rate(c.capacity_rps)),
            att,
            rate(c.missed_at_rps),
            c.bound_rps,
            c.evaluations,
            c.missed_because.as_deref().unwrap_or("")
        );
    }
    for c in &results {
        if let Some(why) = &c.not_reached {
            println!("{}: {why}", c.policy);
        }
    }
    if results.iter().any(|c| c.at_bound) {
        println!(
            "(1) within the tolerance of the executors' bound (the fastest rate the instances \
             serve): the instances, not the policy, limit it"
        );
    }
    Ok(())
}
