//! `ptm sweep`: run every cell of a scenario's grid in parallel and write the results.
//!
//! Output folder: `cells/<index>.json` (one report per cell, with its place in the grid),
//! `summary.csv` (one row per cell), `seeds.csv` (mean and 95 % interval over seeds) and
//! `scenario.ron` (the scenario as run).

use crate::embedded;
use anyhow::Context as _;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use ptm_sim::sweep::{self, Inputs};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Flags of `ptm sweep`.
#[derive(Debug, Args)]
pub struct SweepArgs {
    /// Scenario file, or the name of an embedded one.
    pub scenario: PathBuf,
    /// Output folder (created; existing result files in it are replaced).
    #[arg(long)]
    pub out: PathBuf,
    /// Worker threads (default: all cores). Results do not depend on it.
    #[arg(long)]
    pub jobs: Option<usize>,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Runs `ptm sweep`.
pub fn execute(args: SweepArgs) -> anyhow::Result<()> {
    let loaded = embedded::load_scenario(Some(&args.scenario))?;
    let scenario = &loaded.scenario;
    let cells = sweep::cells(scenario);
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
        .num_threads(args.jobs.unwrap_or(0))
        .build()?;
    let results = pool.install(|| sweep::run(scenario, &cells, &inputs, &|| bar.inc(1)))?;
    bar.finish_and_clear();
    write_outputs(&args.out, scenario, &results)?;
    eprintln!(
        "{} cells of {} in {:.2} s on {} threads → {}",
        results.len(),
        scenario.name,
        started.elapsed().as_secs_f64(),
        pool.current_num_threads(),
        args.out.display()
    );
    Ok(())
}

fn write_outputs(
    out: &Path,
    scenario: &ptm_sim::scenario::Scenario,
    results: &[sweep::CellReport],
) -> anyhow::Result<()> {
    let cells_dir = out.join("cells");
    std::fs::create_dir_all(&cells_dir)
        .with_context(|| format!("cannot create {}", cells_dir.display()))?;
    let write = |path: PathBuf, text: String| {
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    };
    for r in results {
        write(
            cells_dir.join(format!("{:05}.json", r.cell.index)),
            serde_json::to_string_pretty(r)?,
        )?;
    }
    write(out.join("summary.csv"), sweep::summary_csv(results))?;
    write(out.join("seeds.csv"), sweep::seeds_csv(results))?;
    write(
        out.join("scenario.ron"),
        ron::ser::to_string_pretty(scenario, Default::default())?,
    )?;
    Ok(())
}
