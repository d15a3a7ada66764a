//! `ptm bench infer`: GPU inference latency of zoo-shaped models (seeded weights, full-length
//! random token ids), as device time of one CUDA-graph replay, eager launches, and whole calls.

use anyhow::{bail, Context};
use clap::Args;
use ptm_runtime::gpu::timing::median;
use ptm_runtime::gpu::GpuModel;
use ptm_runtime::zoo::write_model;
use ptm_runtime::{Arch, Batch, Config, DType, Device, KernelOptions, PackedWeights, Task};
use rand::{Rng, SeedableRng};
use std::path::PathBuf;

/// Flags of `ptm bench infer`: inference latency per batch size at one sequence length.
#[derive(Debug, Args)]
pub struct InferArgs {
    /// Architectures, comma separated.
    #[arg(long, default_value = "bert-base,bert-large", value_delimiter = ',')]
    pub arch: Vec<String>,
    /// fp32, fp16 or bf16.
    #[arg(long, default_value = "fp16")]
    pub dtype: String,
    /// Batch sizes, comma separated.
    #[arg(long, default_value = "1,8,32", value_delimiter = ',')]
    pub batch: Vec<usize>,
    /// Sequence length in tokens.
    #[arg(long, default_value_t = 128)]
    pub seq: usize,
    /// Timed iterations per point (after 20 warm-up calls).
    #[arg(long, default_value_t = 200)]
    pub iters: usize,
    /// cuda or cuda:N.
    #[arg(long, default_value = "cuda:0")]
    pub device: String,
    /// Peak dense matrix throughput of the GPU in TFLOP/s, for the FLOP floor.
    #[arg(long, default_value_t = 791.0)]
    pub peak_tflops: f64,
    /// Where to write the models (a temporary folder if absent).
    #[arg(long)]
    pub work: Option<PathBuf>,
    /// Also print the device time of each step of one eager forward pass.
    #[arg(long)]
    pub profile: bool,
    /// A/B: attention as batched GEMMs around a softmax kernel instead of the fused kernel.
    #[arg(long)]
    pub no_fused_attention: bool,
    /// A/B: the two-pass fused attention kernel even where the single-pass one fits.
    #[arg(long)]
    pub no_single_pass_attention: bool,
    /// A/B: cuBLAS GEMMs and bias kernels instead of cuBLASLt with bias epilogues.
    #[arg(long)]
    pub no_cublaslt: bool,
    /// A/B: the attention-output and FFN-down GEMMs add the residual in place (β = 1).
    #[arg(long)]
    pub residual_epilogue: bool,
    /// A/B: inputs and outputs through pageable memory (the driver stages each copy itself)
    /// instead of pinned host memory of the model's own.
    #[arg(long)]
    pub pageable_staging: bool,
    /// A/B: inputs through the pinned memory too (asynchronous host→device copies).
    #[arg(long)]
    pub pinned_uploads: bool,
}

impl InferArgs {
    /// The kernel options the flags choose (all absent: the default every other command runs).
    fn kernel_options(&self) -> KernelOptions {
        let d = super::staging::kernel_options(self.pageable_staging, self.pinned_uploads);
        KernelOptions {
            fused_attention: d.fused_attention && !self.no_fused_attention,
            single_pass_attention: d.single_pass_attention && !self.no_single_pass_attention,
            cublaslt: d.cublaslt && !self.no_cublaslt,
            residual_epilogue: d.residual_epilogue || self.residual_epilogue,
            pet_tiled: d.pet_tiled,
            pet_fused: d.pet_fused,
            pet_mma: d.pet_mma,
            pinned_staging: d.pinned_staging,
            pinned_uploads: d.pinned_uploads,
        }
    }
}

/// FLOPs of one forward pass of the encoder (matrix products only).
pub fn forward_flops(c: &Config, batch: usize, seq: usize) -> f64 {
    let (n, h, i) = (
        (batch * seq) as f64,
        c.hidden_size as f64,
        c.intermediate_size as f64,
    );
    let s = seq as f64;
    let per_layer = 2.0 * n * h * 3.0 * h
        + 2.0 * 2.0 * batch as f64 * s * s * h
        + 2.0 * n * h * h
        + 2.0 * 2.0 * n * h * i;
    per_layer * c.num_hidden_layers as f64
}

/// Runs `ptm bench infer`.
pub fn run(args: InferArgs) -> anyhow::Result<()> {
    let options = args.kernel_options();
    let InferArgs {
        arch,
        dtype,
        batch,
        seq,
        iters,
        device,
        peak_tflops,
        work,
        profile,
        ..
    } = args;
    let dtype: DType = dtype.parse()?;
    let Device::Cuda(ordinal) = device.parse::<Device>()? else {
        bail!("ptm bench infer measures the GPU backend: use --device cuda[:N]");
    };
    let tmp = tempfile::tempdir()?;
    let work = work.unwrap_or_else(|| tmp.path().to_path_buf());
    println!("kernel options: {options}");
    println!(
        "| model | dtype | batch | seq | graph ms | eager ms | call ms | FLOP floor ms | TFLOP/s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut json = Vec::new();
    let mut profiles = Vec::new();
    for a in &arch {
        let a: Arch = a.parse()?;
        let cfg = a.config(Task::SequenceClassification, 2);
        let dir = work.join(format!("bench-{a}"));
        write_model(&dir, &cfg, dtype, 0, 0)
            .with_context(|| format!("writing {}", dir.display()))?;
        let w = PackedWeights::from_file(&dir.join("model.safetensors"), &cfg, dtype)?;
        let mut m = GpuModel::new(&w, &cfg, ordinal, options)?;
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(1);
        for &b in &batch {
            let rows: Vec<Vec<u32>> = (0..b)
                .map(|_| {
                    (0..seq)
                        .map(|_| rng.random_range(1000..cfg.vocab_size as u32))
                        .collect()
                })
                .collect();
            let input = Batch::from_rows(&rows, cfg.pad_token_id, None)?;
            m.set_use_graphs(true);
            let g = m.time_forward(&input, 20, iters)?;
            m.set_use_graphs(false);
            let e = m.time_forward(&input, 5, iters.min(50))?;
            if profile {
                let steps = m.profile(&input)?;
                let total: f64 = steps.iter().map(|s| s.1).sum();
                let mut line = format!("profile {a} {dtype} batch {b}: total {total:.3} ms");
                for (name, ms) in steps {
                    line += &format!("; {name} {ms:.3}");
                }
                profiles.push(line);
            }
            m.set_use_graphs(true);
            let flops = forward_flops(&cfg, b, seq);
            let (gm, em, cm) = (
                median(&g.device_ms),
                median(&e.device_ms),
                median(&g.call_ms),
            );
            let floor = flops / (peak_tflops * 1e12) * 1e3;
            println!(
                "| {a} | {dtype} | {b} | {seq} | {gm:.3} | {em:.3} | {cm:.3} | {floor:.3} | {:.0} |",
                flops / (gm * 1e-3) / 1e12
            );
            json.push(
                serde_json::json!({"model": a.name(), "dtype": dtype.to_string(), "batch": b,
                "seq": seq, "graph_ms": gm, "eager_ms": em, "call_ms": cm, "flop_floor_ms": floor,
                "flops": flops, "iters": iters, "gpu": m.device_name(),
                "kernel_options": options.to_string()}),
            );
        }
        std::fs::remove_dir_all(&dir).ok();
    }
    for p in profiles {
        println!("{p}");
    }
    for j in json {
        println!("{j}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: InferArgs,
    }

    fn options(flags: &[&str]) -> KernelOptions {
        let argv = std::iter::once("infer").chain(flags.iter().copied());
        Cli::try_parse_from(argv).unwrap().args.kernel_options()
    }

    #[test]
    fn no_flag_is_the_default_and_each_flag_flips_one_option() {
        let d = KernelOptions::default();
        assert_eq!(options(&[]), d);
        let flipped = [
            ("--no-fused-attention", "fused_attention"),
            ("--no-single-pass-attention", "single_pass_attention"),
            ("--no-cublaslt", "cublaslt"),
            ("--residual-epilogue", "residual_epilogue"),
            ("--pageable-staging", "pinned_staging"),
            ("--pinned-uploads", "pinned_uploads"),
        ];
        for (flag, field) in flipped {
            let o = options(&[flag]);
            for ((name, on), (_, default)) in o.fields().iter().zip(d.fields()) {
                assert_eq!(*on != default, *name == field, "{flag}: {name}");
            }
        }
    }
}
