//! `ptm capacity`: per policy, the highest offered rate that still meets the SLO target.

use crate::embedded;
use clap::Args;
use ptm_sim::capacity::{self, Capacity};
use std::path::PathBuf;

/// Flags of `ptm capacity`.
#[derive(Debug, Args)]
pub struct CapacityArgs {
    /// Scenario file, or the name of an embedded one (default: fastptm/overall).
    pub scenario: Option<PathBuf>,
    /// SLO attainment target (share of requests meeting their deadline), lowest over seeds.
    #[arg(long, default_value_t = 0.99)]
    pub slo: f64,
    /// Stop when the bracket is narrower than this (relative).
    #[arg(long, default_value_t = 0.01)]
    pub tolerance: f64,
    /// Search only these policies (repeatable; default: the scenario's).
    #[arg(long = "policy", value_name = "NAME")]
    pub policies: Vec<String>,
    /// Replace the number of instances.
    #[arg(long)]
    pub instances: Option<usize>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs `ptm capacity`.
pub fn execute(args: CapacityArgs) -> anyhow::Result<()> {
    let mut loaded = embedded::load_scenario(args.scenario.as_deref())?;
    let s = &mut loaded.scenario;
    if !args.policies.is_empty() {
        s.policies = args.policies.clone();
    }
    if let Some(n) = args.instances {
        s.instances = n;
    }
    s.validate("command line")?;
    let files = loaded.files.as_ref();
    // Policies in parallel (each search is sequential); results in the scenario's order.
    let results: Vec<Capacity> = std::thread::scope(|scope| {
        let handles: Vec<_> = s
            .policies
            .iter()
            .map(|p| scope.spawn(|| capacity::search(s, files, p, args.slo, args.tolerance)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("capacity search panicked"))
            .collect::<Result<_, _>>()
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
        return Ok(());
    }
    println!(
        "{}: capacity at SLO attainment ≥ {} (lowest over {} seed(s)), {} instances",
        s.name,
        args.slo,
        s.seeds.len(),
        s.instances
    );
    println!(
        "{:<10} {:>14} {:>12} {:>14} {:>6}",
        "policy", "capacity req/s", "attainment", "missed at req/s", "runs"
    );
    for c in &results {
        let missed = c
            .missed_at_rps
            .map_or_else(|| "never (1)".to_string(), |m| format!("{m:.3}"));
        println!(
            "{:<10} {:>14.3} {:>12.4} {:>14} {:>6}",
            c.policy, c.capacity_rps, c.slo_attainment, missed, c.evaluations
        );
    }
    if results.iter().any(|c| c.missed_at_rps.is_none()) {
        println!(
            "(1) met the target even at {}× the workload's rate: the whole trace fits its deadlines \
             arriving at once, so it cannot show this policy's capacity; use a longer trace or a generator",
            1 << 20
        );
    }
    Ok(())
}
