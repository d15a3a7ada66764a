//! `ptm calibrate`: measure a device with the real runtime and write the simulator's profile.

use anyhow::Context as _;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use ptm_calibrate::{calibrate, runtime_target, target_for, Plan};
use ptm_runtime::{DType, Device};
use std::path::PathBuf;

/// Flags of `ptm calibrate`.
#[derive(Debug, Args)]
pub struct CalibrateArgs {
    /// `cpu` or `cuda[:N]`.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// A zoo to measure (`ptm zoo make`; repeatable): its first two tenants.
    #[arg(long, conflicts_with = "models")]
    pub zoo: Vec<PathBuf>,
    /// Architectures to measure, comma separated (e.g. tiny,minilm-l6): two seeded tenants each
    /// are made in a temporary folder.
    #[arg(long, value_delimiter = ',')]
    pub models: Vec<String>,
    /// fp32, fp16 or bf16.
    #[arg(long, default_value = "fp32")]
    pub dtype: String,
    /// The quick plan: batches 1 and 4, lengths 16 and 32, 1–2 instances, 5 repeats.
    #[arg(long)]
    pub quick: bool,
    /// A zoo of parameter-efficient tenants to measure over its backbone (`ptm zoo make
    /// --pet …`; repeatable): the costs of its kind are added to the backbone's model, which
    /// the calibration must measure too (a `--zoo` of the same architecture).
    #[arg(long)]
    pub pet_zoo: Vec<PathBuf>,
    /// Replace the plan's forward batches (comma separated, each 1 to 4,096), e.g. 1,8.
    #[arg(long, value_delimiter = ',', value_name = "N,…",
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub batches: Vec<u32>,
    /// Replace the plan's sequence lengths (comma separated, each 1 to 8,192), e.g.
    /// 64,128,256,512.
    #[arg(long, value_delimiter = ',', value_name = "N,…",
          value_parser = clap::value_parser!(u32).range(1..=8192))]
    pub seq_lens: Vec<u32>,
    /// Replace the largest number of instances contention is measured with (1 to 64).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub max_instances: Option<u64>,
    /// Replace the measured repeats per figure (2 to 10,000).
    #[arg(long, value_parser = clap::value_parser!(u64).range(2..=10_000))]
    pub repeats: Option<u64>,
    /// Replace the repeats of the slow figures: cold loads, FastPTM-mode and full switches
    /// (1 to 10,000).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub slow_repeats: Option<u64>,
    /// Replace the largest number of instances the slow figures are measured with (1 to 64).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub slow_max_instances: Option<u64>,
    /// Where to write the profile (ron).
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs `ptm calibrate`.
pub fn execute(args: CalibrateArgs) -> anyhow::Result<()> {
    let device: Device = args.device.parse()?;
    let dtype: DType = args.dtype.parse()?;
    // Check where the profile goes before measuring for minutes: create its folder and a file
    // beside it (the profile replaces it at the end, in one rename).
    let parent = match args.out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).with_context(|| {
        format!(
            "cannot create {} for --out {} (checked before measuring)",
            parent.display(),
            args.out.display()
        )
    })?;
    let pending = tempfile::NamedTempFile::new_in(&parent).with_context(|| {
        format!(
            "cannot write in {} for --out {} (checked before measuring)",
            parent.display(),
            args.out.display()
        )
    })?;
    let tmp = tempfile::tempdir()?;
    let mut zoos = args.zoo.clone();
    let models = if zoos.is_empty() && args.models.is_empty() {
        vec!["tiny".to_string()]
    } else {
        args.models.clone()
    };
    if zoos.is_empty() {
        for m in &models {
            zoos.push(runtime_target::make_zoo(m, dtype, tmp.path())?);
        }
    }
    let mut plan = if args.quick {
        Plan::quick()
    } else {
        Plan::full()
    };
    if !args.batches.is_empty() {
        plan.batches = args.batches.clone();
    }
    if !args.seq_lens.is_empty() {
        plan.seq_lens = args.seq_lens.clone();
    }
    if let Some(n) = args.max_instances {
        plan.max_instances = n as usize;
    }
    if let Some(n) = args.repeats {
        plan.repeats = n as usize;
    }
    if let Some(n) = args.slow_repeats {
        plan.slow_repeats = n as usize;
    }
    if let Some(n) = args.slow_max_instances {
        plan.slow_max_instances = n as usize;
    }
    plan.validate()?;
    let (mut target, names) = target_for(device, &zoos, dtype, &plan)?;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let date = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let bar = ProgressBar::new((names.len() * plan.steps_per_model()) as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} figures, eta {eta}  {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    let mut profile = calibrate(
        target.as_mut(),
        &names,
        &plan,
        &command,
        &date,
        &mut |step| {
            bar.set_position(step.done as u64);
            bar.set_message(step.what);
        },
    )?;
    bar.finish_and_clear();
    for dir in &args.pet_zoo {
        eprintln!(
            "measuring the parameter-efficient tenants of {}",
            dir.display()
        );
        let (model, kind, costs) = ptm_calibrate::pet::calibrate_pet(dir, device, dtype, &plan)?;
        let known = names.join(", ");
        let m = profile.models.get_mut(&model).with_context(|| {
            format!(
                "{}: its backbone is {model}, which this calibration did not measure ({known}): add a --zoo of that architecture and dtype",
                dir.display()
            )
        })?;
        m.pet.insert(kind.key(), costs);
    }
    let text = format!(
        "// Measured by ptm calibrate: {command}\n// on {} (--device {}), {date}. Every cost records its statistics in `measured`.\n{}\n",
        profile.gpu.name,
        args.device,
        ron::ser::to_string_pretty(&profile, ron::ser::PrettyConfig::default())?
    );
    std::fs::write(pending.path(), text)
        .with_context(|| format!("cannot write {}", pending.path().display()))?;
    pending
        .persist(&args.out)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    eprintln!(
        "wrote {} ({} models: {})",
        args.out.display(),
        names.len(),
        names.join(", ")
    );
    Ok(())
}
