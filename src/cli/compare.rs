//! `ptm compare A B`: two runs (`ptm run --json` files) or two sweeps (`ptm sweep` folders),
//! cell by cell (`ptm_sim::compare`).

use anyhow::Context as _;
use clap::Args;
use ptm_sim::compare::{self, Comparison, METRICS};
use ptm_sim::metrics::Report;
use ptm_sim::sweep::folder;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Flags of `ptm compare`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Side A: a `ptm sweep` folder, or a JSON file of `ptm run --json`.
    pub a: PathBuf,
    /// Side B, of the same kind.
    pub b: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn side(path: &Path) -> anyhow::Result<Vec<(String, Report)>> {
    if path.is_dir() {
        return Ok(compare::keyed_cells(&folder::read_cells(path)?));
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let reports: Vec<Report> = serde_json::from_str(&text).map_err(|e| {
        ptm_sim::Error::from_json(
            &format!(
                "{} (expected `ptm run --json` output or a sweep folder)",
                path.display()
            ),
            &e,
        )
    })?;
    Ok(compare::keyed_reports(&reports))
}

fn pct(r: Option<f64>) -> String {
    r.map_or_else(|| "n/a".into(), |r| format!("{:+.1} %", 100.0 * r))
}

/// The table: per pair, each metric as `A → B (change)`.
pub fn table(c: &Comparison, a: &Path, b: &Path) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "A = {}, B = {}: {} cells paired; change = (B − A) / A",
        a.display(),
        b.display(),
        c.pairs.len()
    );
    for p in &c.pairs {
        let _ = writeln!(out, "{}", p.key);
        for ((name, _), ch) in METRICS.iter().zip(&p.changes) {
            let _ = writeln!(
                out,
                "  {name:<16} {:>12.3} → {:>12.3}  {:>9}",
                ch.a,
                ch.b,
                pct(ch.relative())
            );
        }
    }
    for (side, keys) in [("A", &c.only_a), ("B", &c.only_b)] {
        if !keys.is_empty() {
            let _ = writeln!(out, "only in {side}: {}", keys.join("; "));
        }
    }
    out
}

/// Runs `ptm compare`.
pub fn execute(args: CompareArgs) -> anyhow::Result<()> {
    let c = compare::compare(&side(&args.a)?, &side(&args.b)?)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&c)?);
    } else {
        print!("{}", table(&c, &args.a, &args.b));
    }
    Ok(())
}
