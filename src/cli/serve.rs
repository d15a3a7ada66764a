//! `ptm serve`: serve a zoo's tenants over HTTP on loopback, scheduled by a policy.

use clap::Args;
use ptm_live::serve::{self, HttpOptions, ServeOptions};
use ptm_runtime::{DType, Device};
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
    /// Samples per forward pass.
    #[arg(long, default_value_t = 8)]
    pub forward_batch: u32,
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
    /// A profile for the policy's and admission's estimates (default: a quick calibration of
    /// the zoo on the device at start-up).
    #[arg(long, requires = "model")]
    pub profile: Option<PathBuf>,
    /// The profile's model that describes the zoo.
    #[arg(long)]
    pub model: Option<String>,
}

/// Runs `ptm serve`.
pub fn execute(args: ServeArgs) -> anyhow::Result<()> {
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
        queue: args.queue,
        deadline_ms: args.deadline_ms,
        profile: None,
        http: HttpOptions {
            header_timeout: Duration::from_millis(args.header_timeout_ms),
            body_timeout: Duration::from_millis(args.body_timeout_ms),
            grace: Duration::from_millis(args.grace_ms),
        },
        token,
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
