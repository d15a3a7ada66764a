//! `ptm serve`: serve a zoo's tenants over HTTP on loopback, scheduled by a policy.

use clap::Args;
use ptm_live::serve::{self, HttpOptions, ServeOptions};
use ptm_runtime::{DType, Device};
use ptm_sim::engine::Batching;
use ptm_sim::ledger::{Capacity, Eviction};
use ptm_sim::profile::Profile;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Flags of `ptm serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (loopback; port 0 picks a free one and prints it).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The zoo whose models are the tenants (`ptm zoo make`).
    #[arg(long)]
    pub zoo: PathBuf,
    /// Scheduling policy (as in `ptm run`).
    #[arg(long, default_value = "affinity")]
    pub policy: String,
    /// `cpu` or `cuda[:N]`.
    #[arg(long, default_value = "cpu")]
    pub device: Device,
    /// fp32, fp16 or bf16.
    #[arg(long, default_value = "fp32")]
    pub dtype: DType,
    /// Instances (model slots).
    #[arg(long, default_value_t = 2)]
    pub instances: usize,
    /// Samples per forward pass; with --max-wait-ms, also the most rows of a batch of
    /// requests of one tenant.
    #[arg(long, visible_alias = "max-batch", default_value_t = 8)]
    pub forward_batch: u32,
    /// A GPU weight pool (tier 1): a tenant count, bytes with a unit (`80GB`), or `auto`
    /// (what the device holds after the instances). Absent: FastPTM's model, no pool.
    #[arg(long, value_parser = super::scenario_flags::parse_capacity)]
    pub gpu_pool: Option<Capacity>,
    /// Who a full pool evicts: lru, lfu, gdsf or tinylfu.
    #[arg(long, default_value = "lru", value_parser = super::scenario_flags::parse_eviction)]
    pub eviction: Eviction,
    /// Cross-request batching: how long a policy may hold a partial batch, milliseconds
    /// (absent: one request a dispatch).
    #[arg(long)]
    pub max_wait_ms: Option<f64>,
    /// Most requests waiting; more get 429.
    #[arg(long, default_value_t = 64)]
    pub queue: usize,
    /// Deadline of requests that give none, milliseconds (positive, at most a day).
    #[arg(long, default_value_t = 3000.0)]
    pub deadline_ms: f64,
    /// Most time for a request header to arrive (also closes keep-alive connections idle
    /// that long), milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub header_timeout_ms: u64,
    /// Most time for a request body to arrive (408 after), milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub body_timeout_ms: u64,
    /// After SIGINT/SIGTERM, most time for open connections to finish before requests still
    /// waiting are refused (503) and the rest dropped, milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub grace_ms: u64,
    /// A file whose first line is a token every request must carry as
    /// `Authorization: Bearer <token>`.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// How executor threads wait for the GPU: auto (the driver's default: spin while there
    /// are cores to spare), spin, yield, or block (sleep; frees the core for HTTP and
    /// tokenization). cuda devices only.
    #[arg(long, default_value = "auto")]
    pub gpu_sync: ptm_runtime::gpu::HostSync,
    /// A/B: executors' inputs and outputs through pageable memory (the driver stages each copy
    /// itself, synchronously) instead of pinned host memory of their own
    /// (`KernelOptions::pinned_staging` off; cuda devices only).
    #[arg(long)]
    pub pageable_staging: bool,
    /// A/B: executors' uploads (a pass's inputs) through their pinned memory too
    /// (`KernelOptions::pinned_uploads`; asynchronous host→device copies, queued behind weight
    /// switches on the copy engine; cuda devices only).
    #[arg(long, conflicts_with = "pageable_staging")]
    pub pinned_uploads: bool,
    /// A profile for the policy's and admission's estimates (default: a quick calibration of
    /// the zoo on the device at start-up). One of another model architecture, device or
    /// dtype than the zoo is refused.
    #[arg(long, requires = "model")]
    pub profile: Option<PathBuf>,
    /// The profile's model that describes the zoo.
    #[arg(long)]
    pub model: Option<String>,
    /// Use a --profile of another model, device or dtype anyway.
    #[arg(long, requires = "profile")]
    pub allow_profile_mismatch: bool,
}

/// Runs `ptm serve`.
pub fn execute(args: ServeArgs) -> anyhow::Result<()> {
    if let Some(w) = args.max_wait_ms {
        anyhow::ensure!(
            w.is_finite() && (0.0..=60_000.0).contains(&w),
            "--max-wait-ms {w}: expected 0 to 60000"
        );
    }
    anyhow::ensure!(
        args.eviction != Eviction::Belady,
        "--eviction belady needs the whole trace in advance: the simulator only"
    );
    let token = args
        .token_file
        .as_deref()
        .map(serve::read_token)
        .transpose()?;
    let (profile_path, model) = (args.profile, args.model);
    let options = ServeOptions {
        listen: args.listen,
        zoo: args.zoo,
        device: args.device,
        dtype: args.dtype,
        policy: args.policy,
        instances: args.instances,
        forward_batch: args.forward_batch,
        gpu_pool: args.gpu_pool,
        eviction: args.eviction,
        batching: args.max_wait_ms.map(|max_wait_ms| Batching { max_wait_ms }),
        queue: args.queue,
        deadline_ms: args.deadline_ms,
        profile: None,
        allow_profile_mismatch: args.allow_profile_mismatch,
        http: HttpOptions {
            header_timeout: Duration::from_millis(args.header_timeout_ms),
            body_timeout: Duration::from_millis(args.body_timeout_ms),
            grace: Duration::from_millis(args.grace_ms),
        },
        token,
        gpu_sync: args.gpu_sync,
        kernel_options: super::staging::kernel_options(args.pageable_staging, args.pinned_uploads),
    };
    // Refuse bad flags before reading a profile or calibrating.
    options.validate()?;
    let profile = match (&profile_path, &model) {
        (Some(p), Some(m)) => {
            let name = p.display().to_string();
            let text = std::fs::read_to_string(p)
                .map_err(|e| anyhow::anyhow!("cannot read {name}: {e}"))?;
            Some((Profile::from_ron(&text, &name)?, name, m.clone()))
        }
        _ => None,
    };
    let metrics = serve::serve(ServeOptions { profile, ..options })?;
    eprintln!("ptm serve: stopped after answering every accepted request");
    eprint!(
        "{}",
        metrics
            .render()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n")
    );
    eprintln!();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::scenario_flags::{parse_capacity, parse_eviction};
    use ptm_sim::ledger::Capacity;

    #[test]
    fn pool_sizes_parse_with_units() {
        assert_eq!(parse_capacity("auto"), Ok(Capacity::Auto));
        assert_eq!(parse_capacity("600"), Ok(Capacity::Tenants(600)));
        assert_eq!(parse_capacity("80GB"), Ok(Capacity::Bytes(80_000_000_000)));
        assert_eq!(parse_capacity("1 GiB"), Ok(Capacity::Bytes(1 << 30)));
        assert!(parse_capacity("-3GB").is_err());
        assert!(parse_capacity("lots").unwrap_err().contains("80GB"));
        assert!(parse_eviction("fifo").unwrap_err().contains("lru"));
    }
}
