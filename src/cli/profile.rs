//! `ptm profile diff A B`: how far two calibrations of one device are apart, figure by figure
//! (the repeatability check of a calibration).

use anyhow::Context as _;
use clap::{Args, Subcommand};
use ptm_sim::profile::{Cost, Profile};
use std::path::{Path, PathBuf};

/// `ptm profile` subcommands.
#[derive(Debug, Subcommand)]
pub enum ProfileCommand {
    /// Compare the measured medians of two profiles.
    Diff(DiffArgs),
}

/// Flags of `ptm profile diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The first profile.
    pub a: PathBuf,
    /// The second profile.
    pub b: PathBuf,
    /// Figures further apart than this (percent) are counted as misses.
    #[arg(long, default_value_t = 5.0)]
    pub tolerance_pct: f64,
}

fn read(path: &Path) -> anyhow::Result<Profile> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(Profile::from_ron(&text, &path.display().to_string())?)
}

/// Every measured median of a profile: (model, figure, ms).
fn medians(p: &Profile) -> Vec<(String, String, f64)> {
    let mut out = Vec::new();
    for (model, m) in &p.models {
        let mut cost = |name: &str, c: &Cost| {
            if let Some(s) = &c.measured {
                out.push((model.clone(), name.to_string(), s.median_ms));
            }
        };
        cost("cold load", &m.cold_load);
        cost("switch split", &m.switch.split);
        cost("switch full", &m.switch.full);
        if let Some(f) = &m.switch.fastptm {
            cost("switch fastptm", f);
        }
        for pt in &m.forward.points {
            if let Some(s) = &pt.measured {
                out.push((
                    model.clone(),
                    format!("forward b{} s{}", pt.batch, pt.seq_len),
                    s.median_ms,
                ));
            }
        }
    }
    out
}

/// Runs `ptm profile …`.
pub fn execute(cmd: ProfileCommand) -> anyhow::Result<()> {
    let ProfileCommand::Diff(args) = cmd;
    let (a, b) = (medians(&read(&args.a)?), medians(&read(&args.b)?));
    anyhow::ensure!(
        !a.is_empty(),
        "{}: no measured figures (not written by ptm calibrate?)",
        args.a.display()
    );
    println!(
        "{:<24} {:<20} {:>12} {:>12} {:>8}",
        "model", "figure", "A median ms", "B median ms", "diff"
    );
    let (mut worst, mut misses, mut compared) = (0.0f64, 0, 0);
    for (model, figure, ma) in &a {
        let Some((_, _, mb)) = b.iter().find(|(m, f, _)| m == model && f == figure) else {
            println!(
                "{model:<24} {figure:<20} {ma:>12.4} {:>12} {:>8}",
                "missing", ""
            );
            continue;
        };
        let diff = 100.0 * (mb - ma) / ma;
        compared += 1;
        worst = worst.max(diff.abs());
        if diff.abs() > args.tolerance_pct {
            misses += 1;
        }
        println!("{model:<24} {figure:<20} {ma:>12.4} {mb:>12.4} {diff:>+7.1}%");
    }
    println!(
        "{compared} figures compared: largest difference {worst:.1} %, {misses} beyond ±{} %",
        args.tolerance_pct
    );
    Ok(())
}
