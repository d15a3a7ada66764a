//! `ptm plot`: figures from a sweep's folder, or a timeline's CSV.

use anyhow::{bail, Context as _};
use clap::Args;
use ptm_sim::sweep::CellReport;
use std::path::{Path, PathBuf};

/// Flags of `ptm plot`.
#[derive(Debug, Args)]
pub struct PlotArgs {
    /// A folder written by `ptm sweep` (its cells/*.json).
    #[arg(required_unless_present = "timeline")]
    pub dir: Option<PathBuf>,
    /// Also (or only) draw this timeline CSV from `ptm run --timeline`.
    #[arg(long, value_name = "CSV")]
    pub timeline: Option<PathBuf>,
    /// Where to write the figures (default: DIR/plots, or the timeline's folder).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Do not list the files written.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Reads every cell report of a sweep folder, in cell order.
pub fn read_cells(dir: &Path) -> anyhow::Result<Vec<CellReport>> {
    let cells_dir = dir.join("cells");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&cells_dir)
        .with_context(|| {
            format!(
                "cannot list {} (is {} a `ptm sweep` folder?)",
                cells_dir.display(),
                dir.display()
            )
        })?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.retain(|f| f.extension().is_some_and(|e| e == "json"));
    files.sort();
    let mut cells = Vec::with_capacity(files.len());
    for f in files {
        let text =
            std::fs::read_to_string(&f).with_context(|| format!("cannot read {}", f.display()))?;
        cells.push(
            serde_json::from_str(&text)
                .with_context(|| format!("{}: not a cell report", f.display()))?,
        );
    }
    Ok(cells)
}

/// Runs `ptm plot`.
pub fn execute(args: PlotArgs) -> anyhow::Result<()> {
    let mut written = Vec::new();
    if let Some(dir) = &args.dir {
        let cells = read_cells(dir)?;
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
        let title = csv
            .file_stem()
            .map_or("timeline".into(), |s| s.to_string_lossy().into_owned());
        written.extend(ptm_plots::render_timeline(&rows, &title, &out)?);
    }
    if !args.quiet {
        for f in &written {
            println!("{}", f.display());
        }
    }
    Ok(())
}
