//! `ptm bench load` (an HTTP load client for `ptm serve`) and `ptm bench serve-soak` (a long
//! loopback run with the server's memory sampled).

use clap::Args;
use ptm_live::load::soak::{self, SoakOptions};
use ptm_live::load::{run_in_process, run_processes, LoadOptions};
use ptm_runtime::zoo::{make_zoo, Arch};
use ptm_runtime::DType;
use std::path::PathBuf;

/// Flags of `ptm bench load`.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// The server, `http://HOST:PORT`.
    #[arg(long)]
    pub url: Option<String>,
    /// Concurrent clients in all (one connection each, one request at a time).
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Processes the clients are spread over.
    #[arg(long, default_value_t = 1)]
    pub processes: usize,
    /// Requests in all.
    #[arg(long, default_value_t = 16_000)]
    pub requests: u64,
    /// Zipf exponent of tenant popularity over the server's tenants (0: uniform).
    #[arg(long, default_value_t = 1.1)]
    pub zipf: f64,
    /// Texts per request.
    #[arg(long, default_value_t = 4)]
    pub texts: usize,
    /// Words per text.
    #[arg(long, default_value_t = 12)]
    pub words: usize,
    /// `deadline_ms` of each request (default: the server's).
    #[arg(long)]
    pub deadline_ms: Option<f64>,
    /// Seed of the tenant and text draws.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// A file whose first line is the server's token.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Print the merged report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Internal: run one process's share, given as JSON, and print its JSON report.
    #[arg(long, hide = true)]
    pub worker: Option<String>,
}

/// Runs `ptm bench load`.
pub fn load(args: LoadArgs) -> anyhow::Result<()> {
    if let Some(w) = &args.worker {
        let o: LoadOptions = serde_json::from_str(w)?;
        let report = run_in_process(&o, None)?;
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    let url = args
        .url
        .clone()
        .ok_or_else(|| anyhow::anyhow!("--url is required (the server, http://HOST:PORT)"))?;
    let o = LoadOptions {
        url,
        concurrency: args.concurrency,
        processes: args.processes,
        requests: args.requests,
        zipf: args.zipf,
        texts: args.texts,
        words: args.words,
        deadline_ms: args.deadline_ms,
        seed: args.seed,
        token: args
            .token_file
            .as_deref()
            .map(ptm_live::serve::read_token)
            .transpose()?,
    };
    let report = run_processes(&o, &std::env::current_exe()?, &["bench", "load"])?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render(&o));
    }
    Ok(())
}

/// Flags of `ptm bench serve-soak`.
#[derive(Debug, Args)]
pub struct SoakArgs {
    /// The zoo to serve (default: a tiny zoo of 4 tenants made in a temporary directory).
    #[arg(long)]
    pub zoo: Option<PathBuf>,
    /// Requests in all.
    #[arg(long, default_value_t = 1_000_000)]
    pub requests: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Instances of the server.
    #[arg(long, default_value_t = 2)]
    pub instances: usize,
    /// Zipf exponent of tenant popularity.
    #[arg(long, default_value_t = 1.1)]
    pub zipf: f64,
    /// Texts per request.
    #[arg(long, default_value_t = 1)]
    pub texts: usize,
    /// Memory samples over the run.
    #[arg(long, default_value_t = 50)]
    pub samples: usize,
    /// Write the memory curve here as CSV (requests, elapsed_s, rss_kib).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Runs `ptm bench serve-soak`.
pub fn soak(args: SoakArgs) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let zoo = match args.zoo {
        Some(z) => z,
        None => {
            let dir = tmp.path().join("zoo");
            make_zoo(Arch::Tiny, 4, &dir, DType::Fp32, 1)?;
            dir
        }
    };
    let queue = (2 * args.concurrency).max(64);
    let o = SoakOptions {
        zoo,
        // A queue above the concurrency and a long deadline: every request is admitted, so
        // the run measures the memory of served requests.
        serve_args: [
            "--instances",
            &args.instances.to_string(),
            "--queue",
            &queue.to_string(),
            "--deadline-ms",
            "60000",
        ]
        .map(String::from)
        .to_vec(),
        load: LoadOptions {
            url: String::new(),
            concurrency: args.concurrency,
            processes: 1,
            requests: args.requests,
            zipf: args.zipf,
            texts: args.texts,
            words: 8,
            deadline_ms: None,
            seed: 1,
            token: None,
        },
        samples: args.samples,
    };
    println!(
        "| requests | elapsed s | server RSS MiB | coordinator records MiB |\n| ---: | ---: | ---: | ---: |"
    );
    let report = soak::soak(&std::env::current_exe()?, o.clone(), &mut |s| {
        println!(
            "| {} | {:.1} | {:.1} | {:.1} |",
            s.requests,
            s.elapsed_s,
            s.rss_kib as f64 / 1024.0,
            s.record_bytes as f64 / (1 << 20) as f64
        )
    })?;
    print!("\n{}", report.load.render(&report.options));
    let (rss, records) = (
        report.second_half_bytes_per_request(),
        report.second_half_record_bytes_per_request(),
    );
    println!(
        "server memory growth over the second half: {rss:.1} bytes per request, of which the \
         coordinator's per-request records {records:.1}, the rest {:.1}",
        rss - records
    );
    if let Some(out) = &args.out {
        std::fs::write(out, report.csv())
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", out.display()))?;
    }
    Ok(())
}
