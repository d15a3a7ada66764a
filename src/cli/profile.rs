//! `ptm profile diff A B`: how far two calibrations of one device are apart, figure by figure
//! (the repeatability check of a calibration). `ptm profile check P`: whether a profile
//! describes this build and, given them, a zoo, device and dtype (`ptm_calibrate::identity`).

use anyhow::Context as _;
use clap::{Args, Subcommand};
use ptm_calibrate::{Check, Expected};
use ptm_runtime::{DType, Device};
use ptm_sim::profile::{Cost, Profile};
use std::path::{Path, PathBuf};

/// `ptm profile` subcommands.
#[derive(Debug, Subcommand)]
pub enum ProfileCommand {
    /// Compare the measured medians of two profiles.
    Diff(DiffArgs),
    /// Whether a profile matches this build and (given) a zoo, device and dtype: every field
    /// side by side; fails when the profile describes another device kind, GPU, model
    /// architecture or dtype.
    Check(CheckArgs),
    /// Refit a profile's figures with this build's estimators from what it recorded (each
    /// cost centred on its measured median; the FIFO copy engine's link occupancy from the
    /// switch's stretch curve), without the device; writes the refitted profile.
    Refit(RefitArgs),
}

/// Flags of `ptm profile refit`.
#[derive(Debug, Args)]
pub struct RefitArgs {
    /// The profile (ron).
    pub profile: PathBuf,
    /// Where to write the refitted profile.
    #[arg(long)]
    pub out: PathBuf,
}

/// Flags of `ptm profile check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The profile (ron).
    pub profile: PathBuf,
    /// The zoo a run would serve (`ptm zoo make`): its architecture and dtype are compared.
    #[arg(long)]
    pub zoo: Option<PathBuf>,
    /// The device a run would use (`cpu` or `cuda[:N]`): its kind, name and driver are compared.
    #[arg(long)]
    pub device: Option<Device>,
    /// The dtype a run would use (default: the zoo's).
    #[arg(long, requires = "zoo")]
    pub dtype: Option<DType>,
    /// Check only this model of the profile (default: every one).
    #[arg(long)]
    pub model: Option<String>,
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
    match cmd {
        ProfileCommand::Diff(args) => diff(args),
        ProfileCommand::Check(args) => check(args),
        ProfileCommand::Refit(args) => refit(args),
    }
}

/// Runs `ptm profile check`.
fn refit(args: RefitArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.profile)
        .with_context(|| format!("cannot read {}", args.profile.display()))?;
    let mut profile = Profile::from_ron(&text, &args.profile.display().to_string())?;
    let notes = ptm_calibrate::refit::refit(&mut profile);
    profile.validate(&args.out.display().to_string())?;
    // The original's leading comments (its provenance), then what the refit changed.
    let mut out: String = text
        .lines()
        .take_while(|l| l.trim_start().starts_with("//"))
        .map(|l| format!("{l}\n"))
        .collect();
    out.push_str(&format!(
        "// Refit by `ptm profile refit` (ptm {}) from {}: {} figure(s) changed.\n",
        env!("CARGO_PKG_VERSION"),
        args.profile.display(),
        notes.len()
    ));
    for n in &notes {
        out.push_str(&format!("//   {n}\n"));
        println!("{n}");
    }
    out.push_str(&ron::ser::to_string_pretty(
        &profile,
        ron::ser::PrettyConfig::default(),
    )?);
    out.push('\n');
    crate::cli::run::create_parent(&args.out)?;
    std::fs::write(&args.out, out)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    println!(
        "wrote {} ({} figure(s) changed)",
        args.out.display(),
        notes.len()
    );
    Ok(())
}

fn check(args: CheckArgs) -> anyhow::Result<()> {
    let profile = read(&args.profile)?;
    let name = args.profile.display().to_string();
    let run = Expected::run(args.zoo.as_deref(), args.device, args.dtype)?;
    let check = Check::new(&profile, &name, args.model.as_deref(), &run)?;
    println!("profile {name} against this build ({})", describe(&run));
    print!("{}", check.table());
    let refused = check.refused().len();
    let warnings = check.warnings().len();
    anyhow::ensure!(
        refused == 0,
        "{name} does not describe this run: {refused} field(s) refused (see the table)"
    );
    println!(
        "matches: nothing refused, {warnings} warning(s){}",
        if warnings > 0 {
            " (measured by another build or driver: re-calibrate to be sure)"
        } else {
            ""
        }
    );
    Ok(())
}

/// What the run side of a check is: this build, and the device and zoo when given.
fn describe(run: &Expected) -> String {
    let mut parts = vec![format!(
        "ptm-runtime {} build {}",
        run.build.version, run.build.build
    )];
    if let Some(d) = &run.device {
        parts.push(format!("device {}", d.kind));
    }
    if let Some(m) = &run.model {
        parts.push(format!("model {} {}", m.arch, m.dtype));
    }
    parts.join(", ")
}

/// Runs `ptm profile diff`.
fn diff(args: DiffArgs) -> anyhow::Result<()> {
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
