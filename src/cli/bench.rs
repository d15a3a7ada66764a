//! `ptm bench infer`: inference latency of zoo models on a device.

use clap::Args;

/// `ptm bench …`
#[derive(Debug, Args)]
pub struct BenchArgs {}

/// Runs `ptm bench`.
pub fn run(_a: BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("ptm bench: not built yet")
}
