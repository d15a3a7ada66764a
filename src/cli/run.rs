//! `ptm run`: simulate one scenario's (policy, seed) cells and print a table or JSON; optionally
//! write the per-request CSV, the per-tenant CSV and a timeline (CSV or Perfetto JSON).

use super::scenario_flags::ScenarioFlags;
use anyhow::Context as _;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use ptm_live::fidelity;
use ptm_runtime::{DType, Device};
use ptm_sim::metrics::{perfetto, requests, timeline, Report};
use ptm_sim::scenario::CellRun;
use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Flags of `ptm run`.
#[derive(Debug, Default, Args)]
pub struct RunArgs {
    /// The scenario and what to change in it.
    #[command(flatten)]
    pub scenario: ScenarioFlags,
    /// Print a JSON array of reports instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Write the per-instance timeline of the run: `.csv` (phases, idle gaps filled) or `.json`
    /// (a Chrome trace: open it in the Perfetto UI); needs exactly one (policy, seed) cell.
    #[arg(long, value_name = "PATH")]
    pub timeline: Option<PathBuf>,
    /// Write one CSV row per request of every cell: arrival, start, end, tenant, instance, load.
    #[arg(long, value_name = "CSV", conflicts_with = "live")]
    pub requests: Option<PathBuf>,
    /// Write one CSV row per tenant of every cell: requests, overtimes, SLO attainment, mean and
    /// p99 latency, loads.
    #[arg(long, value_name = "CSV", conflicts_with = "live")]
    pub per_tenant: Option<PathBuf>,
    /// Replay the workload in real time on the real runtime (the same schedulers decide).
    #[arg(long, requires = "zoo", conflicts_with = "timeline")]
    pub live: bool,
    /// With --live: the zoo whose models serve the tenants (`ptm zoo make`).
    #[arg(long)]
    pub zoo: Option<PathBuf>,
    /// With --live: `cpu` or `cuda[:N]`.
    #[arg(long, default_value = "cpu")]
    pub device: Device,
    /// With --live: fp32, fp16 or bf16.
    #[arg(long, default_value = "fp32")]
    pub dtype: DType,
    /// With --live: also simulate each cell from the profile and print both (fidelity). A
    /// profile of another model architecture, device or dtype than the zoo is refused.
    #[arg(long, requires = "live")]
    pub compare: bool,
    /// With --compare: compare against a profile of another model, device or dtype anyway.
    #[arg(long, requires = "compare")]
    pub allow_profile_mismatch: bool,
    /// With --live, A/B: executors' outputs through pageable memory instead of pinned memory of
    /// their own (`KernelOptions::pinned_staging` off; cuda devices only).
    #[arg(long, requires = "live")]
    pub pageable_staging: bool,
    /// With --live, A/B: executors' inputs through their pinned memory too
    /// (`KernelOptions::pinned_uploads`; queued behind weight switches on the copy engine).
    #[arg(long, requires = "live", conflicts_with = "pageable_staging")]
    pub pinned_uploads: bool,
    /// Re-simulate a recorded `ptm run --live --compare --json` FILE with this build: its live
    /// half kept as measured, its simulated half made again from this scenario (pass the flags
    /// the recording used, e.g. --rate, --instances, --profile). Prints the fidelity tables, or
    /// with --json the cells, which `ptm fidelity-table` reads.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["live", "timeline", "requests", "per_tenant"])]
    pub resimulate: Option<PathBuf>,
}

impl RunArgs {
    /// The kernel options of a live run: the defaults, but for the A/B flags.
    fn kernel_options(&self) -> ptm_runtime::KernelOptions {
        super::staging::kernel_options(self.pageable_staging, self.pinned_uploads)
    }
}

/// Creates the folder `path` is to be written in.
pub fn create_parent(path: &Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    Ok(())
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    create_parent(path)?;
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Runs `ptm run`.
pub fn execute(args: RunArgs) -> anyhow::Result<()> {
    let loaded = args.scenario.load()?;
    let s = &loaded.scenario;
    if args.live {
        return live(&args, &loaded);
    }
    if let Some(path) = &args.resimulate {
        return resimulate(&args, &loaded, path);
    }
    let detailed = args.timeline.is_some() || args.requests.is_some() || args.per_tenant.is_some();
    let reports: Vec<Report> = if detailed {
        if args.timeline.is_some() && (s.policies.len() != 1 || s.seeds.len() != 1) {
            anyhow::bail!(
                "--timeline records one cell, but this run has {} policies × {} seeds: pass one --policy and one --seed",
                s.policies.len(),
                s.seeds.len()
            );
        }
        let cells = s.run_detailed(
            loaded.files.as_ref(),
            args.timeline.is_some() || args.requests.is_some(),
        )?;
        write_outputs(&args, s.instances, &cells)?;
        cells.into_iter().map(|c| c.report).collect()
    } else {
        s.run(loaded.files.as_ref())?
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        print!("{}", crate::table::reports(&reports));
    }
    Ok(())
}

/// Writes the files `--timeline`, `--requests` and `--per-tenant` ask for.
fn write_outputs(args: &RunArgs, instances: usize, cells: &[CellRun]) -> anyhow::Result<()> {
    if let Some(path) = &args.timeline {
        let c = &cells[0];
        let spans = c.run.timeline.as_deref().unwrap_or_default();
        let text = match path.extension().and_then(|e| e.to_str()) {
            Some("json") => {
                let title = format!(
                    "{} / {} / seed {}",
                    c.report.scenario, c.report.policy, c.report.seed
                );
                perfetto::trace_json(&title, instances, &c.workload, &c.run)?
            }
            Some("csv") => timeline::csv(spans, instances, &c.workload),
            _ => anyhow::bail!(
                "{}: expected .csv (phases) or .json (a Chrome trace for Perfetto)",
                path.display()
            ),
        };
        write(path, &text)?;
    }
    if let Some(path) = &args.requests {
        let mut out = String::from(requests::HEADER);
        for c in cells {
            requests::write_rows(
                &mut out,
                &c.report.policy,
                c.report.seed,
                &c.workload,
                &c.run,
            )?;
        }
        write(path, &out)?;
    }
    if let Some(path) = &args.per_tenant {
        let mut out = String::from(
            "policy,seed,tenant,requests,overtimes,slo_attainment,mean_latency_ms,p99_latency_ms,loads\n",
        );
        for c in cells {
            for t in &c.report.per_tenant {
                let _ = writeln!(
                    out,
                    "{},{},{},{},{},{},{},{},{}",
                    c.report.policy,
                    c.report.seed,
                    requests::csv_field(&t.tenant),
                    t.requests,
                    t.overtimes,
                    t.slo_attainment,
                    t.mean_latency_ms,
                    t.p99_latency_ms,
                    t.loads
                );
            }
        }
        write(path, &out)?;
    }
    Ok(())
}

/// `--resimulate FILE`: a recorded live run with its simulated half made by this build.
fn resimulate(args: &RunArgs, loaded: &crate::embedded::Loaded, path: &Path) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let recorded: Vec<fidelity::LiveCell> = serde_json::from_str(&text).with_context(|| {
        format!(
            "{}: expected the JSON array `ptm run --live --compare --json` writes",
            path.display()
        )
    })?;
    let source = path.display().to_string();
    let cells = ptm_sim::resimulate::resimulate(
        &loaded.scenario,
        loaded.files.as_ref(),
        &source,
        recorded,
    )?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&cells)?);
    } else {
        for c in &cells {
            print!("{}", fidelity::fidelity_table(c));
        }
    }
    Ok(())
}

/// `--live`: every cell replayed on the runtime, with a progress display and (`--compare`) the
/// fidelity tables.
fn live(args: &RunArgs, loaded: &crate::embedded::Loaded) -> anyhow::Result<()> {
    let zoo = args
        .zoo
        .as_deref()
        .context("--live needs --zoo DIR (`ptm zoo make`)")?;
    let started = Instant::now();
    let terminal = std::io::stderr().is_terminal();
    let bar = if terminal {
        ProgressBar::new(1)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} cells  {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(500));
    let show = |p: &fidelity::Progress<'_>| {
        // Replays run at wall-clock speed: the time left is at least the replay left, scaled
        // by how much longer than its replay each finished cell took.
        let elapsed = started.elapsed().as_secs_f64();
        let factor = if p.done_s > 0.0 {
            (elapsed / p.done_s).max(1.0)
        } else {
            1.0
        };
        let eta = humantime::format_duration(std::time::Duration::from_secs(
            (p.left_s * factor).ceil() as u64,
        ));
        let msg = match p.next {
            Some((policy, seed)) => format!("next: {policy}, seed {seed}; eta ~{eta}"),
            None => "done".to_string(),
        };
        bar.set_length(p.total as u64);
        bar.set_position(p.done as u64);
        bar.set_message(msg.clone());
        if !terminal {
            eprintln!("live: cell {}/{} done; {msg}", p.done, p.total);
        }
    };
    let options = fidelity::LiveOptions {
        zoo,
        device: args.device,
        dtype: args.dtype,
        compare: args.compare,
        allow_profile_mismatch: args.allow_profile_mismatch,
        options: args.kernel_options(),
        progress: Some(&show),
    };
    let cells = fidelity::run_cells(&loaded.scenario, loaded.files.as_ref(), &options)?;
    bar.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&cells)?);
    } else {
        let reports: Vec<_> = cells.iter().map(|c| c.live.clone()).collect();
        print!("{}", crate::table::reports(&reports));
        for c in &cells {
            print!("{}", fidelity::fidelity_table(c));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::RunArgs;
    use clap::Parser;
    use ptm_runtime::KernelOptions;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: RunArgs,
    }

    fn options(flags: &[&str]) -> KernelOptions {
        let argv = ["run", "--live", "--zoo", "z"]
            .into_iter()
            .chain(flags.iter().copied());
        Cli::try_parse_from(argv).unwrap().args.kernel_options()
    }

    #[test]
    fn a_live_run_takes_the_default_kernel_options_but_for_its_staging_flags() {
        let d = KernelOptions::default();
        assert_eq!(options(&[]), d);
        assert!(!options(&["--pageable-staging"]).pinned_staging);
        assert!(options(&["--pinned-uploads"]).pinned_uploads);
        let both = [
            "run",
            "--live",
            "--zoo",
            "z",
            "--pageable-staging",
            "--pinned-uploads",
        ];
        assert!(Cli::try_parse_from(both).is_err(), "the two flags conflict");
        assert!(
            Cli::try_parse_from(["run", "--pinned-uploads"]).is_err(),
            "a staging flag needs --live"
        );
    }
}
