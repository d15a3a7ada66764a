//! `ptm sweep`: run every cell of a scenario's grid in parallel and write the results.
//!
//! Output folder (`ptm_sim::sweep::folder`): `cells/<index>.json` (one report per cell, with its
//! place in the grid), `summary.csv` (one row per cell), `seeds.csv` (mean and 95 % interval
//! over seeds), `grid.json` and `scenario.ron` (the scenario as run, its paths resolved so that
//! `ptm run DIR/scenario.ron` runs it again from anywhere).

use crate::embedded;
use anyhow::Context as _;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use ptm_sim::sweep::folder::{self, Grid};
use ptm_sim::sweep::{self, Inputs};
use std::path::PathBuf;
use std::time::Instant;

/// Flags of `ptm sweep`.
#[derive(Debug, Args)]
pub struct SweepArgs {
    /// Scenario file, or the name of an embedded one.
    #[arg(required_unless_present = "merge")]
    pub scenario: Option<PathBuf>,
    /// Output folder (created; existing result files in it are replaced; default:
    /// results/<scenario name>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Run only slice K of N (1-based; cells with index ≡ K−1 mod N), e.g. for a Slurm array
    /// job: `--shard $((SLURM_ARRAY_TASK_ID+1))/$SLURM_ARRAY_TASK_COUNT`.
    #[arg(long, value_name = "K/N", value_parser = parse_shard, conflicts_with = "merge")]
    pub shard: Option<(usize, usize)>,
    /// Join the outputs of shard runs (their folders) into `--out`, as a single run writes them.
    #[arg(long, value_name = "DIR", num_args = 1.., conflicts_with = "scenario")]
    pub merge: Vec<PathBuf>,
    /// Worker threads (default: all cores). Results do not depend on it.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: Option<u16>,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

fn parse_shard(s: &str) -> Result<(usize, usize), String> {
    folder::parse_shard(s).map_err(|e| e.to_string())
}

/// Runs `ptm sweep`.
pub fn execute(args: SweepArgs) -> anyhow::Result<()> {
    if !args.merge.is_empty() {
        let out = args
            .out
            .clone()
            .context("--merge needs --out: where to write the joined results")?;
        let n = folder::merge(&args.merge, &out)?;
        eprintln!(
            "merged {n} cells from {} folders → {}",
            args.merge.len(),
            out.display()
        );
        return Ok(());
    }
    let path = args
        .scenario
        .as_deref()
        .context("name a scenario to sweep (or --merge shard folders)")?;
    let loaded = embedded::load_scenario(Some(path))?;
    let scenario = loaded.resolved_scenario();
    let scenario = &scenario;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| default_out(&scenario.name));
    let all = sweep::cells(scenario);
    let total = all.len();
    let cells: Vec<_> = match args.shard {
        Some(k_n) => folder::shard(all, k_n),
        None => all,
    };
    let started = Instant::now();
    let inputs = Inputs::load(scenario, &cells, loaded.files.as_ref())?;
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(cells.len() as u64)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {pos}/{len} cells, {per_sec}, eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.jobs.map_or(0, usize::from))
        .build()?;
    let results = pool.install(|| sweep::run(scenario, &cells, &inputs, &|| bar.inc(1)))?;
    bar.finish_and_clear();
    let grid = Grid {
        scenario: scenario.name.clone(),
        cells: total,
        shard: args.shard,
    };
    folder::write(&out, scenario, &grid, &results)?;
    eprintln!(
        "{} cells of {} in {:.2} s on {} threads → {}",
        results.len(),
        scenario.name,
        started.elapsed().as_secs_f64(),
        pool.current_num_threads(),
        out.display()
    );
    Ok(())
}

/// `results/<scenario name>`.
pub fn default_out(name: &str) -> PathBuf {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    PathBuf::from("results").join(safe)
}
