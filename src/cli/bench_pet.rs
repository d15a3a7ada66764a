//! `ptm bench pet`: a PET slot on a GPU over a LoRA zoo — (a) every tenant registered and
//! loaded into the adapter pool in one process, memory per tenant (GPU and host); (b) a batch
//! of distinct tenants against the same batch through the plain backbone (throughput ratio),
//! with one tenant's batch between them; (c) passes with tenants missing from the pool, their
//! loads pipelined under the backbone or made first, against resident passes. `--pet-kernels
//! warp|tiled` chooses the LoRA kernels (an A/B), `--profile` adds device time per step.

use anyhow::{bail, Context};
use clap::Args;
use ptm_live::load::soak::rss_kib;
use ptm_runtime::gpu::timing::{median, Timing};
use ptm_runtime::gpu::GpuModel;
use ptm_runtime::pet::backbone::encoder_config;
use ptm_runtime::pet::bench::{load_all, register_zoo, time_misses, time_resident};
use ptm_runtime::pet::{PetId, PetSlot, PetSlotConfig, PetZoo};
use ptm_runtime::{Batch, Config, DType, Device, KernelOptions};
use rand::{Rng, SeedableRng};
use std::path::PathBuf;

/// Flags of `ptm bench pet`.
#[derive(Debug, Args)]
pub struct PetArgs {
    /// A PET zoo folder (`pet.ron`), e.g. `ptm zoo make --pet lora --rank 8 --targets
    /// query,value --tenants 10000 --dtype fp16`.
    #[arg(long)]
    pub zoo: PathBuf,
    /// Tenants to register (default: all of the zoo's).
    #[arg(long)]
    pub tenants: Option<usize>,
    /// fp32, fp16 or bf16 (default: the zoo's).
    #[arg(long)]
    pub dtype: Option<String>,
    /// cuda or cuda:N.
    #[arg(long, default_value = "cuda:0")]
    pub device: String,
    /// Rows of the timed batches.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Tokens per row.
    #[arg(long, default_value_t = 128)]
    pub seq: usize,
    /// Distinct tenants of the mixed batch (rows are dealt to them in turn).
    #[arg(long, default_value_t = 32)]
    pub mixed: usize,
    /// Timed passes per measurement.
    #[arg(long, default_value_t = 50)]
    pub iters: usize,
    /// Untimed passes first.
    #[arg(long, default_value_t = 10)]
    pub warmup: usize,
    /// Tenants missing from the pool in the miss measurements, comma separated.
    #[arg(long, default_value = "1,8,32", value_delimiter = ',')]
    pub misses: Vec<usize>,
    /// Adapter-pool slots (default: every registered tenant).
    #[arg(long)]
    pub gpu_slots: Option<usize>,
    /// Pinned host-tier slots (default: every registered tenant).
    #[arg(long)]
    pub host_slots: Option<usize>,
    /// Threads reading tenant folders.
    #[arg(long, default_value_t = 8)]
    pub threads: usize,
    /// A/B of the LoRA kernels: `mma` (tensor cores), `fused` (shrink and expand in one
    /// launch), `tiled` (row tiles) or `warp` (one warp per row); none given: the default every
    /// other command runs.
    #[arg(long, value_enum)]
    pub pet_kernels: Option<PetKernelChoice>,
    /// Also one eager pass of each batch with a CUDA event after every step: device ms per
    /// step (summed over layers) of the plain backbone, one tenant and the mixed batch.
    #[arg(long)]
    pub profile: bool,
}

/// `--pet-kernels`: which segmented LoRA kernels run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PetKernelChoice {
    /// The tensor-core kernels (`KernelOptions::pet_mma` on; `pet_fused` and `pet_tiled` on
    /// for what they leave).
    Mma,
    /// The fused kernels (`KernelOptions::pet_fused` on, `pet_tiled` on for what they leave).
    Fused,
    /// The row-tiled kernels (`pet_fused` off, `pet_tiled` on).
    Tiled,
    /// The warp kernels (`pet_fused` and `pet_tiled` off).
    Warp,
}

impl PetArgs {
    /// The kernel options the flags choose (none given: the default every other command runs).
    fn kernel_options(&self) -> KernelOptions {
        let d = KernelOptions::default();
        let (pet_mma, pet_fused, pet_tiled) = match self.pet_kernels {
            None => (d.pet_mma, d.pet_fused, d.pet_tiled),
            Some(PetKernelChoice::Mma) => (true, true, true),
            Some(PetKernelChoice::Fused) => (false, true, true),
            Some(PetKernelChoice::Tiled) => (false, false, true),
            Some(PetKernelChoice::Warp) => (false, false, false),
        };
        KernelOptions {
            pet_mma,
            pet_fused,
            pet_tiled,
            ..d
        }
    }
}

/// Prints the step profiles side by side: one row per step name, in order of first appearance
/// over the columns, `-` where a column has no such step.
fn print_steps(columns: &[(&str, Vec<(&'static str, f64)>)]) {
    let mut names: Vec<&'static str> = Vec::new();
    for (_, steps) in columns {
        for (n, _) in steps {
            if !names.contains(n) {
                names.push(n);
            }
        }
    }
    let heads: Vec<&str> = columns.iter().map(|c| c.0).collect();
    println!();
    println!(
        "| step (device ms, summed over layers; one eager pass) | {} |",
        heads.join(" | ")
    );
    println!("|---|{}", "---|".repeat(columns.len()));
    let cell = |steps: &[(&'static str, f64)], n: &str| {
        steps
            .iter()
            .find(|(m, _)| *m == n)
            .map_or("-".to_string(), |(_, v)| format!("{v:.3}"))
    };
    for n in names.iter().chain(std::iter::once(&"total")) {
        let cells: Vec<String> = columns
            .iter()
            .map(|(_, steps)| match *n {
                "total" => format!("{:.3}", steps.iter().map(|s| s.1).sum::<f64>()),
                _ => cell(steps, n),
            })
            .collect();
        println!("| {n} | {} |", cells.join(" | "));
    }
}

fn ms(t: &Timing) -> (f64, f64) {
    (median(&t.device_ms), median(&t.call_ms))
}

/// Runs `ptm bench pet`.
pub fn run(a: PetArgs) -> anyhow::Result<()> {
    let Device::Cuda(ordinal) = a.device.parse::<Device>()? else {
        bail!("ptm bench pet measures the GPU PET slot: use --device cuda[:N]");
    };
    let zoo = PetZoo::read(&a.zoo).with_context(|| format!("reading {}", a.zoo.display()))?;
    let dtype: DType = match &a.dtype {
        Some(d) => d.parse()?,
        None => zoo.dtype,
    };
    let n = a
        .tenants
        .unwrap_or(zoo.tenants.len())
        .min(zoo.tenants.len());
    if n == 0 || a.batch == 0 || a.mixed == 0 || a.mixed > a.batch.min(n) {
        bail!(
            "need tenants ≥ 1 and 1 ≤ --mixed ≤ min(--batch, tenants) (got {n} tenants, batch {}, mixed {})",
            a.batch,
            a.mixed
        );
    }
    let backbone = a.zoo.join(&zoo.backbone);
    let cfg = encoder_config(&Config::from_file(&backbone.join("config.json"))?)?;
    let slots = (a.gpu_slots.unwrap_or(n), a.host_slots.unwrap_or(n));
    let options = a.kernel_options();
    println!("kernel options: {options}");
    let mut config = PetSlotConfig::for_zoo(&zoo, &cfg, dtype, slots, (a.batch, a.seq));
    config.options = options;
    let pid = std::process::id();
    let rss0 = rss_kib(pid).unwrap_or(0);
    let mut slot = PetSlot::new(&backbone, dtype, Device::Cuda(ordinal), config)?;
    let rss1 = rss_kib(pid).unwrap_or(0);
    let (ids, register_s) = register_zoo(&mut slot, &a.zoo, &zoo, n, a.threads)?;
    let rss2 = rss_kib(pid).unwrap_or(0);
    let in_pool = ids.len().min(slots.0);
    let load_s = load_all(&mut slot, &ids[..in_pool])?;
    let mem = slot.memory();
    let per = |b: usize| b as f64 / mem.tenants as f64;
    let rss_growth = (rss2.saturating_sub(rss1) * 1024) as f64;
    println!(
        "| PET slot ({} {dtype}, {} tenants of {}) | value |",
        zoo.arch,
        n,
        a.zoo.display()
    );
    println!("|---|---|");
    println!(
        "| register (read, check, pack; {} threads) | {register_s:.2} s |",
        a.threads
    );
    println!("| load {in_pool} into the adapter pool | {load_s:.2} s |");
    println!(
        "| GPU per tenant: pool slot / own block | {} / {:.0} bytes |",
        mem.slot_bytes,
        per(mem.block_bytes)
    );
    println!(
        "| GPU: pool / backbone / activations + PET buffers | {} / {} / {} bytes |",
        mem.gpu_pool_bytes, mem.gpu_backbone_bytes, mem.gpu_work_bytes
    );
    println!(
        "| host per tenant: pinned slot + directory (estimate) / RSS growth while registering | {} + {:.0} / {:.0} bytes |",
        mem.slot_bytes,
        per(mem.host_directory_bytes),
        rss_growth / mem.tenants as f64
    );
    println!(
        "| process RSS: start / backbone + tiers allocated / tenants registered | {} / {} / {} MiB |",
        rss0 / 1024,
        rss1 / 1024,
        rss2 / 1024
    );
    // Batches: full-length random rows; the mixed batch deals rows to `mixed` tenants spread
    // over the registered ones.
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(1);
    let rows: Vec<Vec<u32>> = (0..a.batch)
        .map(|_| {
            (0..a.seq)
                .map(|_| rng.random_range(1000..cfg.vocab_size as u32))
                .collect()
        })
        .collect();
    let batch = Batch::from_rows(&rows, cfg.pad_token_id, None)?;
    let picks: Vec<PetId> = (0..a.mixed).map(|i| ids[i * in_pool / a.mixed]).collect();
    let mixed: Vec<PetId> = (0..a.batch).map(|r| picks[r % a.mixed]).collect();
    let one = vec![picks[0]; a.batch];
    let backbone_ref = slot.backbone();
    let mut plain = GpuModel::new(
        &backbone_ref.weights,
        backbone_ref.config(),
        ordinal,
        options,
    )?;
    let p = plain.time_forward(&batch, a.warmup, a.iters)?;
    let plain_steps = if a.profile {
        plain.profile(&batch)?
    } else {
        Vec::new()
    };
    drop(plain);
    let single = time_resident(&mut slot, &batch, &one, a.warmup, a.iters)?;
    let mix = time_resident(&mut slot, &batch, &mixed, a.warmup, a.iters)?;
    if a.profile {
        slot.set_profile_steps(true)?;
        slot.forward_mixed(&batch, &one)?;
        let one_steps = slot.last_steps().to_vec();
        slot.forward_mixed(&batch, &mixed)?;
        let mixed_steps = slot.last_steps().to_vec();
        slot.set_profile_steps(false)?;
        let mixed_head = format!("PET slot, {} tenants", a.mixed);
        print_steps(&[
            ("plain backbone", plain_steps),
            ("PET slot, 1 tenant", one_steps),
            (&mixed_head, mixed_steps),
        ]);
    }
    let ((pd, pc), (sd, sc), (md, mc)) = (ms(&p), ms(&single), ms(&mix));
    println!();
    println!(
        "| {} × {} batch (graph replays; call = whole call) | device ms | call ms | throughput vs plain (device / call) |",
        a.batch, a.seq
    );
    println!("|---|---|---|---|");
    println!("| plain backbone (GpuModel) | {pd:.3} | {pc:.3} | 1 |");
    println!(
        "| PET slot, 1 tenant | {sd:.3} | {sc:.3} | {:.3} / {:.3} |",
        pd / sd,
        pc / sc
    );
    println!(
        "| PET slot, {} distinct tenants | {md:.3} | {mc:.3} | {:.3} / {:.3} |",
        a.mixed,
        pd / md,
        pc / mc
    );
    println!();
    println!(
        "| tenants missing from the pool (of {}) | device ms | call ms | call − resident ms |",
        a.mixed
    );
    println!("|---|---|---|---|");
    println!("| 0 (resident) | {md:.3} | {mc:.3} | 0 |");
    let mut misses = Vec::new();
    for &k in &a.misses {
        let k = k.min(a.mixed);
        for pipelined in [true, false] {
            let t = time_misses(&mut slot, &batch, &mixed, k, pipelined, a.iters)?;
            let (d, c) = ms(&t);
            let how = if pipelined {
                "loads pipelined under the pass"
            } else {
                "loads waited for, then the pass"
            };
            println!("| {k}, {how} | {d:.3} | {c:.3} | {:.3} |", c - mc);
            misses.push(serde_json::json!({"missing": k, "pipelined": pipelined,
                "device_ms": d, "call_ms": c, "extra_call_ms": c - mc}));
        }
    }
    let gpu = ptm_runtime::gpu::device_name(ordinal).unwrap_or_default();
    println!(
        "{}",
        serde_json::json!({"bench": "pet", "gpu": gpu, "arch": zoo.arch.name(), "dtype": dtype.to_string(),
            "tenants": n, "in_pool": in_pool, "register_s": register_s, "load_s": load_s,
            "slot_bytes": mem.slot_bytes, "block_bytes_per_tenant": per(mem.block_bytes),
            "gpu_pool_bytes": mem.gpu_pool_bytes, "gpu_backbone_bytes": mem.gpu_backbone_bytes,
            "gpu_work_bytes": mem.gpu_work_bytes, "host_tier_bytes": mem.host_tier_bytes,
            "host_directory_bytes_per_tenant": per(mem.host_directory_bytes),
            "rss_growth_bytes_per_tenant": rss_growth / mem.tenants as f64,
            "rss_kib": [rss0, rss1, rss2], "batch": a.batch, "seq": a.seq, "mixed": a.mixed,
            "iters": a.iters, "plain_device_ms": pd, "plain_call_ms": pc,
            "single_device_ms": sd, "single_call_ms": sc, "mixed_device_ms": md, "mixed_call_ms": mc,
            "ratio_device": pd / md, "ratio_call": pc / mc, "misses": misses,
            "kernel_options": options.to_string()})
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: PetArgs,
    }

    fn options(flags: &[&str]) -> KernelOptions {
        let argv = ["pet", "--zoo", "z"]
            .into_iter()
            .chain(flags.iter().copied());
        Cli::try_parse_from(argv).unwrap().args.kernel_options()
    }

    #[test]
    fn no_flag_is_the_default_and_pet_kernels_sets_one_option() {
        let d = KernelOptions::default();
        assert_eq!(options(&[]), d);
        for (flag, mma, fused, tiled) in [
            ("mma", true, true, true),
            ("fused", false, true, true),
            ("tiled", false, false, true),
            ("warp", false, false, false),
        ] {
            let o = options(&["--pet-kernels", flag]);
            assert_eq!(
                (o.pet_mma, o.pet_fused, o.pet_tiled),
                (mma, fused, tiled),
                "{flag}"
            );
            for ((name, on), (_, default)) in o.fields().iter().zip(d.fields()) {
                if !["pet_tiled", "pet_fused", "pet_mma"].contains(name) {
                    assert_eq!(*on, default, "{name}");
                }
            }
        }
    }
}
