//! `ptm zoo make`: write N seeded fine-tuned variants of an architecture in the HF layout, or
//! (`--pet`) one backbone and N parameter-efficient tenants (LoRA, adapters, BitFit).

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use ptm_runtime::pet::zoo::{parse_target, Placement};
use ptm_runtime::pet::{make_pet_zoo, PetSpec};
use ptm_runtime::{make_zoo, Arch, DType};
use std::path::PathBuf;
use std::time::Instant;

/// Most tenants one `ptm zoo make` writes.
const MAX_ZOO_TENANTS: i64 = 100_000;

/// `ptm zoo …`
#[derive(Debug, Args)]
pub struct ZooArgs {
    #[command(subcommand)]
    command: ZooCommand,
}

#[derive(Debug, Subcommand)]
enum ZooCommand {
    /// Write a zoo: DIR/<arch>-tNNN/{config.json, model.safetensors, tokenizer.json, vocab.txt}
    /// and DIR/zoo.ron.
    Make {
        /// tiny, minilm-l6, bert-base, bert-large or roberta-base.
        #[arg(long)]
        arch: String,
        /// Number of fine-tuned variants (1 to 100,000; `ptm calibrate` needs at least 2 to
        /// switch between).
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=MAX_ZOO_TENANTS))]
        tenants: u32,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// Weight dtype in the files: fp32, fp16 or bf16.
        #[arg(long, default_value = "fp32")]
        dtype: String,
        /// Seed of the weights.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Parameter-efficient tenants over one backbone instead of full fine-tunes:
        /// DIR/backbone/ plus DIR/<arch>-<kind>-tNNN/ in PEFT (lora, bitfit) or `adapters`
        /// library (adapter) layout, and DIR/pet.ron.
        #[arg(long, value_enum)]
        pet: Option<PetArg>,
        /// LoRA rank.
        #[arg(long, default_value_t = 8)]
        rank: usize,
        /// LoRA alpha (default: twice the rank).
        #[arg(long)]
        alpha: Option<f64>,
        /// LoRA targets in every layer, comma-separated: query, key, value,
        /// attention.output.dense, intermediate.dense, output.dense (the FFN's down projection).
        #[arg(long, default_value = "query,value", value_delimiter = ',')]
        targets: Vec<String>,
        /// Adapter placement.
        #[arg(long, value_enum, default_value_t = PlacementArg::Houlsby)]
        placement: PlacementArg,
        /// Adapter reduction factor (hidden size ÷ bottleneck width).
        #[arg(long, default_value_t = 16)]
        reduction_factor: usize,
        /// Writer threads (the files do not depend on it; default: the machine's cores).
        #[arg(long)]
        threads: Option<usize>,
    },
}

/// `--pet`.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum PetArg {
    /// LoRA in the Hugging Face PEFT layout.
    Lora,
    /// Bottleneck adapters in the `adapters` library's layout.
    Adapter,
    /// BitFit: bias-only deltas (PEFT-like layout).
    Bitfit,
}

/// `--placement`.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum PlacementArg {
    /// After attention and after the FFN.
    Houlsby,
    /// After the FFN, on the layer-normed output.
    Pfeiffer,
}

/// Runs `ptm zoo`.
pub fn run(args: ZooArgs) -> anyhow::Result<()> {
    match args.command {
        ZooCommand::Make {
            arch,
            tenants,
            out,
            dtype,
            seed,
            pet,
            rank,
            alpha,
            targets,
            placement,
            reduction_factor,
            threads,
        } => {
            let arch: Arch = arch.parse()?;
            let dtype: DType = dtype.parse()?;
            if let Some(kind) = pet {
                let spec = match kind {
                    PetArg::Lora => PetSpec::Lora {
                        rank,
                        alpha: alpha.unwrap_or(2.0 * rank as f64),
                        targets: targets
                            .iter()
                            .map(|t| parse_target(t.trim()))
                            .collect::<Result<_, _>>()?,
                    },
                    PetArg::Adapter => PetSpec::Adapter {
                        placement: match placement {
                            PlacementArg::Houlsby => Placement::Houlsby,
                            PlacementArg::Pfeiffer => Placement::Pfeiffer,
                        },
                        reduction_factor,
                    },
                    PetArg::Bitfit => PetSpec::Bitfit,
                };
                let threads = threads
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
                let start = Instant::now();
                let zoo = make_pet_zoo(arch, &spec, tenants as usize, &out, dtype, seed, threads)
                    .with_context(|| {
                    format!("making the {arch} PET zoo in {}", out.display())
                })?;
                let secs = start.elapsed().as_secs_f64();
                let bytes = zoo.tenant_bytes();
                let params: usize = zoo.tenants.iter().map(|t| t.parameters).sum();
                println!(
                    "{}  backbone  bytes={}",
                    out.join(&zoo.backbone).display(),
                    zoo.backbone_bytes
                );
                for t in zoo.tenants.iter().take(3) {
                    println!(
                        "{}  {:?}  labels={}  params={}  bytes={}",
                        out.join(&t.name).display(),
                        t.task,
                        t.labels,
                        t.parameters,
                        t.file_bytes
                    );
                }
                let n = zoo.tenants.len();
                println!(
                    "{n} {} tenants: {bytes} bytes ({} per tenant), {params} parameters ({} per tenant); written in {secs:.2} s with {threads} threads",
                    spec.kind().name(),
                    bytes / n as u64,
                    params / n
                );
                println!("{}", out.join("pet.ron").display());
                return Ok(());
            }
            let zoo = make_zoo(arch, tenants as usize, &out, dtype, seed)
                .with_context(|| format!("making the {arch} zoo in {}", out.display()))?;
            for m in &zoo.models {
                println!(
                    "{}  {:?}  labels={}  params={}  bytes={}",
                    out.join(&m.name).display(),
                    m.task,
                    m.labels,
                    m.parameters,
                    m.file_bytes
                );
            }
            println!("{}", out.join("zoo.ron").display());
            Ok(())
        }
    }
}
