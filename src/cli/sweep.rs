//! `ptm sweep`: run every cell of a scenario's grid in parallel and write the results.
//!
//! Output folder: `cells/<index>.json` (one report per cell, with its place in the grid),
//! `summary.csv` (one row per cell), `seeds.csv` (mean and 95 % interval over seeds) and
//! `scenario.ron` (the scenario as run).

use crate::embedded;
use anyhow::Context as _;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use ptm_sim::scenario::Scenario;
use ptm_sim::sweep::{self, CellReport, Inputs};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Flags of `ptm sweep`.
#[derive(Debug, Args)]
pub struct SweepArgs {
    /// Scenario file, or the name of an embedded one.
    #[arg(required_unless_present = "merge")]
    pub scenario: Option<PathBuf>,
    /// Output folder (created; existing result files in it are replaced).
    #[arg(long)]
    pub out: PathBuf,
    /// Run only slice K of N (1-based; cells with index ≡ K−1 mod N), e.g. for a Slurm array
    /// job: `--shard $((SLURM_ARRAY_TASK_ID+1))/$SLURM_ARRAY_TASK_COUNT`.
    #[arg(long, value_name = "K/N", value_parser = parse_shard, conflicts_with = "merge")]
    pub shard: Option<(usize, usize)>,
    /// Join the outputs of shard runs (their folders) into `--out`, as a single run writes them.
    #[arg(long, value_name = "DIR", num_args = 1.., conflicts_with = "scenario")]
    pub merge: Vec<PathBuf>,
    /// Worker threads (default: all cores). Results do not depend on it.
    #[arg(long)]
    pub jobs: Option<usize>,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

/// What a sweep's folder holds, for merging shards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Grid {
    scenario: String,
    cells: usize,
    shard: Option<(usize, usize)>,
}

fn parse_shard(s: &str) -> Result<(usize, usize), String> {
    let bad = || format!("expected K/N with 1 ≤ K ≤ N, got {s:?}");
    let (k, n) = s.split_once('/').ok_or_else(bad)?;
    let (k, n): (usize, usize) = (k.parse().map_err(|_| bad())?, n.parse().map_err(|_| bad())?);
    if k == 0 || k > n {
        return Err(bad());
    }
    Ok((k, n))
}

/// Runs `ptm sweep`.
pub fn execute(args: SweepArgs) -> anyhow::Result<()> {
    if !args.merge.is_empty() {
        return merge(&args.merge, &args.out);
    }
    let path = args
        .scenario
        .as_deref()
        .expect("clap requires a scenario unless merging");
    let loaded = embedded::load_scenario(Some(path))?;
    let scenario = &loaded.scenario;
    let all = sweep::cells(scenario);
    let total = all.len();
    let cells: Vec<_> = match args.shard {
        Some((k, n)) => all
            .into_iter()
            .filter(|c| c.key.index % n == k - 1)
            .collect(),
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
        .num_threads(args.jobs.unwrap_or(0))
        .build()?;
    let results = pool.install(|| sweep::run(scenario, &cells, &inputs, &|| bar.inc(1)))?;
    bar.finish_and_clear();
    let grid = Grid {
        scenario: scenario.name.clone(),
        cells: total,
        shard: args.shard,
    };
    write_outputs(&args.out, scenario, &grid, &results)?;
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

fn write(path: PathBuf, text: String) -> anyhow::Result<()> {
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Writes every cell's JSON, `grid.json` and `scenario.ron`; and the tables when the results
/// cover the whole grid.
fn write_outputs(
    out: &Path,
    scenario: &Scenario,
    grid: &Grid,
    results: &[CellReport],
) -> anyhow::Result<()> {
    let cells_dir = out.join("cells");
    std::fs::create_dir_all(&cells_dir)
        .with_context(|| format!("cannot create {}", cells_dir.display()))?;
    for r in results {
        write(
            cells_dir.join(format!("{:05}.json", r.cell.index)),
            serde_json::to_string_pretty(r)?,
        )?;
    }
    write(out.join("grid.json"), serde_json::to_string_pretty(grid)?)?;
    write(
        out.join("scenario.ron"),
        ron::ser::to_string_pretty(scenario, Default::default())?,
    )?;
    if results.len() == grid.cells {
        write(out.join("summary.csv"), sweep::summary_csv(results))?;
        write(out.join("seeds.csv"), sweep::seeds_csv(results))?;
    }
    Ok(())
}

/// Joins shard folders: checks that they come from one grid and cover each cell exactly once.
fn merge(dirs: &[PathBuf], out: &Path) -> anyhow::Result<()> {
    let mut grid: Option<Grid> = None;
    let mut scenario: Option<Scenario> = None;
    let mut results: Vec<CellReport> = Vec::new();
    for dir in dirs {
        let read = |name: &str| {
            let p = dir.join(name);
            std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))
        };
        let g: Grid = serde_json::from_str(&read("grid.json")?)
            .with_context(|| format!("{}: malformed grid.json", dir.display()))?;
        match &grid {
            Some(first) if (first.scenario.as_str(), first.cells) != (g.scenario.as_str(), g.cells) => anyhow::bail!(
                "{} holds {} cells of {:?}, but the first folder holds {} cells of {:?}: not one grid",
                dir.display(), g.cells, g.scenario, first.cells, first.scenario
            ),
            Some(_) => {}
            None => grid = Some(g),
        }
        if scenario.is_none() {
            let name = dir.join("scenario.ron").display().to_string();
            scenario = Some(
                ron::from_str(&read("scenario.ron")?)
                    .map_err(|e| ptm_sim::Error::from_ron(&name, e))?,
            );
        }
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("cells"))
            .with_context(|| format!("cannot list {}/cells", dir.display()))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        files.sort();
        for f in files {
            let text = std::fs::read_to_string(&f)
                .with_context(|| format!("cannot read {}", f.display()))?;
            results.push(
                serde_json::from_str(&text)
                    .with_context(|| format!("{}: malformed cell report", f.display()))?,
            );
        }
    }
    let grid = grid.context("--merge needs at least one folder")?;
    results.sort_by_key(|r| r.cell.index);
    for (i, r) in results.iter().enumerate() {
        if r.cell.index != i {
            let what = if r.cell.index < i { "twice" } else { "missing" };
            anyhow::bail!(
                "cell {} is {what} in the merged folders (the grid has {} cells)",
                i.min(r.cell.index),
                grid.cells
            );
        }
    }
    if results.len() != grid.cells {
        anyhow::bail!(
            "the folders hold {} of the grid's {} cells: a shard is missing",
            results.len(),
            grid.cells
        );
    }
    let scenario = scenario.expect("read with the first grid");
    write_outputs(
        out,
        &scenario,
        &Grid {
            shard: None,
            ..grid
        },
        &results,
    )?;
    eprintln!(
        "merged {} cells from {} folders → {}",
        results.len(),
        dirs.len(),
        out.display()
    );
    Ok(())
}
