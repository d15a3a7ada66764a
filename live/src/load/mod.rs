//! An HTTP load client for `ptm serve` (`ptm bench load`): several processes, each a tokio
//! runtime on one thread with its share of the concurrent clients, each client a keep-alive
//! HTTP/1 connection (hyper) sending `POST /v1/infer` one after the other until the bounded
//! count is reached. Tenants are drawn from Zipf(s) over the server's tenants (rank 1 = the
//! first of `GET /v1/tenants`), each request carries N texts of random words. The report gives
//! throughput, latency percentiles (of every answer, and of the 200s), the count of each status
//! (`error`: the connection failed), and the client's own CPU time, so that one can tell the
//! client was not the bottleneck.
//!
//! [`soak`] runs a server and this client for a long, bounded run and samples the server's
//! resident memory.

mod client;
pub mod histogram;
pub mod soak;

pub use client::run_in_process;
use histogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

/// What to send, how much, how fast.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadOptions {
    /// The server, `http://HOST:PORT`.
    pub url: String,
    /// Concurrent clients in all (each one connection, one request at a time).
    pub concurrency: usize,
    /// Processes the clients are spread over.
    pub processes: usize,
    /// Requests in all.
    pub requests: u64,
    /// Zipf exponent of tenant popularity (0: uniform).
    pub zipf: f64,
    /// Texts per request.
    pub texts: usize,
    /// Words per text.
    pub words: usize,
    /// `deadline_ms` of each request (`None`: the server's default).
    pub deadline_ms: Option<f64>,
    /// Seed of the tenant and text draws.
    pub seed: u64,
    /// Bearer token (`--token-file` of the server).
    pub token: Option<String>,
}

impl LoadOptions {
    /// Refuses options that cannot run, naming the flag.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.url.starts_with("http://"),
            "--url {}: expected http://HOST:PORT",
            self.url
        );
        anyhow::ensure!(
            self.concurrency > 0 && self.processes > 0 && self.requests > 0,
            "--concurrency, --processes and --requests must be ≥ 1"
        );
        anyhow::ensure!(
            self.processes <= self.concurrency,
            "--processes {} exceeds --concurrency {}: every process needs a client",
            self.processes,
            self.concurrency
        );
        anyhow::ensure!(
            self.zipf.is_finite() && self.zipf >= 0.0,
            "--zipf {}: expected a finite exponent ≥ 0",
            self.zipf
        );
        anyhow::ensure!(
            (1..=256).contains(&self.texts) && (1..=256).contains(&self.words),
            "--texts and --words must be 1–256"
        );
        Ok(())
    }

    /// Process `i`'s share: its clients and its requests.
    pub fn share(&self, i: usize) -> (usize, u64) {
        let p = self.processes;
        let c = self.concurrency / p + usize::from(i < self.concurrency % p);
        let r = self.requests / p as u64 + u64::from((i as u64) < self.requests % p as u64);
        (c, r)
    }
}

/// What one process (or all of them, merged) saw.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LoadReport {
    /// Requests sent.
    pub requests: u64,
    /// Answers by status; `error` when the connection failed.
    pub statuses: BTreeMap<String, u64>,
    /// Latency of every answer.
    pub latency: Histogram,
    /// Latency of the 200s.
    pub latency_ok: Histogram,
    /// Wall clock of the first request, Unix nanoseconds.
    pub start_unix_ns: u128,
    /// Wall clock after the last answer, Unix nanoseconds.
    pub end_unix_ns: u128,
    /// The client's CPU time (user + system), seconds.
    pub cpu_s: f64,
    /// Processes merged.
    pub processes: usize,
}

impl LoadReport {
    /// Adds `other` (another process's report).
    pub fn merge(&mut self, other: &LoadReport) {
        self.requests += other.requests;
        for (k, v) in &other.statuses {
            *self.statuses.entry(k.clone()).or_default() += v;
        }
        self.latency.merge(&other.latency);
        self.latency_ok.merge(&other.latency_ok);
        self.start_unix_ns = if self.processes == 0 {
            other.start_unix_ns
        } else {
            self.start_unix_ns.min(other.start_unix_ns)
        };
        self.end_unix_ns = self.end_unix_ns.max(other.end_unix_ns);
        self.cpu_s += other.cpu_s;
        self.processes += other.processes;
    }

    /// Seconds from the first request to the last answer.
    pub fn wall_s(&self) -> f64 {
        self.end_unix_ns.saturating_sub(self.start_unix_ns) as f64 / 1e9
    }

    /// Answers with status 200.
    pub fn ok(&self) -> u64 {
        self.statuses.get("200").copied().unwrap_or(0)
    }

    /// The report as text: one summary line and a status table.
    pub fn render(&self, o: &LoadOptions) -> String {
        let wall = self.wall_s().max(1e-9);
        let mut out = format!(
            "ptm bench load: {} requests to {} from {} processes, concurrency {}, Zipf({}) over \
             the tenants, {} texts of {} words a request\n",
            self.requests, o.url, self.processes, o.concurrency, o.zipf, o.texts, o.words
        );
        out += &format!(
            "throughput {:.1} req/s ({:.1} ok/s) over {:.2} s; latency p50 {:.2} ms, p99 {:.2} \
             ms, max {:.2} ms (200s: p50 {:.2} ms, p99 {:.2} ms); client CPU {:.2} s = {:.2} \
             cores\n",
            self.requests as f64 / wall,
            self.ok() as f64 / wall,
            wall,
            self.latency.quantile_ms(0.5),
            self.latency.quantile_ms(0.99),
            self.latency.max_ms(),
            self.latency_ok.quantile_ms(0.5),
            self.latency_ok.quantile_ms(0.99),
            self.cpu_s,
            self.cpu_s / wall,
        );
        out += "| status | count |\n| --- | ---: |\n";
        for (k, v) in &self.statuses {
            out += &format!("| {k} | {v} |\n");
        }
        out
    }
}

/// Runs the load in `o.processes` processes of `exe` (each `exe <prefix…> --worker …`, whose
/// stdout is its JSON report) and merges their reports.
pub fn run_processes(o: &LoadOptions, exe: &Path, prefix: &[&str]) -> anyhow::Result<LoadReport> {
    o.validate()?;
    let mut children = Vec::with_capacity(o.processes);
    for i in 0..o.processes {
        let (concurrency, requests) = o.share(i);
        let worker = LoadOptions {
            concurrency,
            requests,
            processes: 1,
            seed: o.seed.wrapping_add(i as u64 * 0x9E37_79B9),
            ..o.clone()
        };
        let child = Command::new(exe)
            .args(prefix)
            .arg("--worker")
            .arg(serde_json::to_string(&worker)?)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| anyhow::anyhow!("starting load process {i} ({}): {e}", exe.display()))?;
        children.push(child);
    }
    let mut report = LoadReport::default();
    for (i, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output()?;
        anyhow::ensure!(
            out.status.success(),
            "load process {i} failed: {}",
            out.status
        );
        let one: LoadReport = serde_json::from_slice(&out.stdout)
            .map_err(|e| anyhow::anyhow!("load process {i}: its report: {e}"))?;
        report.merge(&one);
    }
    Ok(report)
}

/// This process's CPU time (user + system), seconds, from `/proc/self/stat` (Linux; `None`
/// elsewhere).
pub fn process_cpu_s() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on Linux's user-space ABI.
    Some(ticks as f64 / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> LoadOptions {
        LoadOptions {
            url: "http://127.0.0.1:1".into(),
            concurrency: 10,
            processes: 3,
            requests: 100,
            zipf: 1.1,
            texts: 4,
            words: 8,
            deadline_ms: None,
            seed: 1,
            token: None,
        }
    }

    #[test]
    fn shares_add_up_and_bad_options_are_refused() {
        let o = options();
        let shares: Vec<_> = (0..3).map(|i| o.share(i)).collect();
        assert_eq!(shares, vec![(4, 34), (3, 33), (3, 33)]);
        o.validate().unwrap();
        for bad in [
            LoadOptions {
                processes: 11,
                ..options()
            },
            LoadOptions {
                zipf: f64::NAN,
                ..options()
            },
            LoadOptions {
                requests: 0,
                ..options()
            },
            LoadOptions {
                url: "127.0.0.1:1".into(),
                ..options()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        assert!(process_cpu_s().is_some_and(|s| s >= 0.0));
    }

    #[test]
    fn reports_merge() {
        let mut a = LoadReport {
            requests: 2,
            statuses: [("200".to_string(), 2)].into(),
            start_unix_ns: 10,
            end_unix_ns: 20,
            cpu_s: 1.0,
            processes: 1,
            ..Default::default()
        };
        let b = LoadReport {
            requests: 3,
            statuses: [("200".to_string(), 1), ("429".to_string(), 2)].into(),
            start_unix_ns: 5,
            end_unix_ns: 15,
            cpu_s: 0.5,
            processes: 1,
            ..Default::default()
        };
        a.merge(&b);
        assert_eq!(a.requests, 5);
        assert_eq!(a.ok(), 3);
        assert_eq!(a.statuses["429"], 2);
        assert_eq!((a.start_unix_ns, a.end_unix_ns, a.processes), (5, 20, 2));
        assert!(a.render(&options()).contains("| 429 | 2 |"));
    }
}
