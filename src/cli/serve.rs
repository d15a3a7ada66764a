//! `ptm serve`: serve a zoo's tenants over HTTP on loopback, scheduled by a policy.

use clap::Args;
use ptm_live::serve::{self, ServeOptions};
use ptm_runtime::{DType, Device};
use ptm_sim::profile::Profile;
use std::net::SocketAddr;
use std::path::PathBuf;

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
    /// Samples per forward pass.
    #[arg(long, default_value_t = 8)]
    pub forward_batch: u32,
    /// Most requests waiting; more get 429.
    #[arg(long, default_value_t = 64)]
    pub queue: usize,
    /// Deadline of requests that give none, milliseconds.
    #[arg(long, default_value_t = 3000.0)]
    pub deadline_ms: f64,
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
    anyhow::ensure!(
        args.listen.ip().is_loopback(),
        "--listen {}: ptm serve listens on loopback only",
        args.listen
    );
    anyhow::ensure!(
        args.instances > 0 && args.queue > 0 && args.forward_batch > 0,
        "--instances, --queue and --forward-batch must be ≥ 1"
    );
    let profile = match (&args.profile, &args.model) {
        (Some(p), Some(m)) => {
            let name = p.display().to_string();
            let text = std::fs::read_to_string(p)
                .map_err(|e| anyhow::anyhow!("cannot read {name}: {e}"))?;
            Some((Profile::from_ron(&text, &name)?, name, m.clone()))
        }
        _ => None,
    };
    let metrics = serve::serve(ServeOptions {
        listen: args.listen,
        zoo: args.zoo,
        device: args.device,
        dtype: args.dtype,
        policy: args.policy,
        instances: args.instances,
        forward_batch: args.forward_batch,
        queue: args.queue,
        deadline_ms: args.deadline_ms,
        profile,
        allow_profile_mismatch: args.allow_profile_mismatch,
    })?;
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
