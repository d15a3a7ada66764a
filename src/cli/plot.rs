//! `ptm plot`: figures from a sweep's folder, or a timeline's CSV.

use anyhow::bail;
use clap::Args;
use std::path::{Path, PathBuf};

/// Flags of `ptm plot`.
#[derive(Debug, Args)]
pub struct PlotArgs {
    /// A folder written by `ptm sweep` (its cells/*.json).
    #[arg(required_unless_present = "timeline")]
    pub dir: Option<PathBuf>,
    /// Also (or only) draw this timeline CSV from `ptm run --timeline X.csv`, as X.png/X.svg
    /// (in --out if given, else beside the CSV).
    #[arg(long, value_name = "CSV")]
    pub timeline: Option<PathBuf>,
    /// With --timeline: draw only this time window, seconds, e.g. `10-12.5`.
    #[arg(long, value_name = "FROM-TO", value_parser = parse_window, requires = "timeline")]
    pub window: Option<Window>,
    /// Where to write the figures (default: DIR/plots, or the timeline's folder).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Do not list the files written.
    #[arg(long, short)]
    pub quiet: bool,
}

/// A time window in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window(pub f64, pub f64);

fn parse_window(s: &str) -> Result<Window, String> {
    let bad = || format!("expected FROM-TO in seconds with 0 ≤ FROM < TO, e.g. 10-12.5, got {s:?}");
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let (a, b): (f64, f64) = (
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    );
    if !(a.is_finite() && b.is_finite() && a >= 0.0 && b > a) {
        return Err(bad());
    }
    Ok(Window(a, b))
}

/// Runs `ptm plot`.
pub fn execute(args: PlotArgs) -> anyhow::Result<()> {
    let mut written = Vec::new();
    if let Some(dir) = &args.dir {
        let cells = ptm_sim::sweep::folder::read_cells(dir)?;
        if cells.is_empty() {
            bail!("{}: no cell reports in cells/", dir.display());
        }
        let out = args.out.clone().unwrap_or_else(|| dir.join("plots"));
        let title = cells[0].report.scenario.clone();
        written.extend(ptm_plots::render_sweep(&cells, &title, &out)?);
    }
    if let Some(csv) = &args.timeline {
        let rows = ptm_plots::read_timeline_csv(csv)?;
        let out = args
            .out
            .clone()
            .unwrap_or_else(|| csv.parent().map(Path::to_path_buf).unwrap_or_default());
        let stem = csv
            .file_stem()
            .map_or("timeline".into(), |s| s.to_string_lossy().into_owned());
        let window = args.window.map(|w| (w.0, w.1));
        written.extend(ptm_plots::render_timeline(
            &rows,
            &stem,
            &out.join(&stem),
            window,
        )?);
    }
    if !args.quiet {
        for f in &written {
            println!("{}", f.display());
        }
    }
    Ok(())
}
