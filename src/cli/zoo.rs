//! `ptm zoo make`: write N seeded fine-tuned variants of an architecture in the HF layout.

use anyhow::Context;
use clap::{Args, Subcommand};
use ptm_runtime::{make_zoo, Arch, DType};
use std::path::PathBuf;

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
    },
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
        } => {
            let arch: Arch = arch.parse()?;
            let dtype: DType = dtype.parse()?;
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
