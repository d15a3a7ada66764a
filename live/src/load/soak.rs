//! The soak benchmark (`ptm bench serve-soak`): a `ptm serve` process on loopback, the load
//! client in this process for a long bounded run, and the server's resident memory (`VmRSS`
//! of `/proc/PID/status`) sampled as answers accumulate. Memory that grows with every request
//! shows as a slope that does not flatten; the report gives the curve and the growth per
//! request over its second half, after the caches and pools of the warm-up have filled.

use super::{run_in_process, LoadOptions, LoadReport};
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How to soak.
#[derive(Debug, Clone)]
pub struct SoakOptions {
    /// The zoo the server serves.
    pub zoo: PathBuf,
    /// Extra flags of `ptm serve`.
    pub serve_args: Vec<String>,
    /// The load (its `url` is filled in once the server listens).
    pub load: LoadOptions,
    /// Memory samples over the run.
    pub samples: usize,
}

/// One sample of the server's memory.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Answers received so far.
    pub requests: u64,
    /// Seconds since the load started.
    pub elapsed_s: f64,
    /// The server's resident memory, KiB.
    pub rss_kib: u64,
    /// Bytes of the coordinator's per-request records then (`ptm_request_record_bytes`).
    pub record_bytes: u64,
}

/// What the soak measured.
#[derive(Debug, Clone)]
pub struct SoakReport {
    /// The load as run (its `url` the server's).
    pub options: LoadOptions,
    /// The load client's report.
    pub load: LoadReport,
    /// Memory over the run (the first at 0 requests).
    pub samples: Vec<Sample>,
}

impl SoakReport {
    /// Growth of resident memory per request over the second half of the run, bytes
    /// (least squares over the samples there).
    pub fn second_half_bytes_per_request(&self) -> f64 {
        self.second_half_slope(|s| s.rss_kib as f64 * 1024.0)
    }

    /// Growth of the coordinator's per-request records per request over the second half.
    pub fn second_half_record_bytes_per_request(&self) -> f64 {
        self.second_half_slope(|s| s.record_bytes as f64)
    }

    fn second_half_slope(&self, y: impl Fn(&Sample) -> f64) -> f64 {
        let last = self.samples.last().map_or(0, |s| s.requests);
        let half: Vec<_> = self
            .samples
            .iter()
            .filter(|s| s.requests * 2 >= last)
            .collect();
        if half.len() < 2 {
            return 0.0;
        }
        let n = half.len() as f64;
        let mx = half.iter().map(|s| s.requests as f64).sum::<f64>() / n;
        let my = half.iter().map(|s| y(s)).sum::<f64>() / n;
        let sxy: f64 = half
            .iter()
            .map(|s| (s.requests as f64 - mx) * (y(s) - my))
            .sum();
        let sxx: f64 = half.iter().map(|s| (s.requests as f64 - mx).powi(2)).sum();
        if sxx == 0.0 {
            0.0
        } else {
            sxy / sxx
        }
    }

    /// The curve as CSV: `requests,elapsed_s,rss_kib,record_bytes`.
    pub fn csv(&self) -> String {
        let mut out = String::from("requests,elapsed_s,rss_kib,record_bytes\n");
        for s in &self.samples {
            out += &format!(
                "{},{:.3},{},{}\n",
                s.requests, s.elapsed_s, s.rss_kib, s.record_bytes
            );
        }
        out
    }
}

/// Resident memory of process `pid`, KiB (Linux).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// `ptm_request_record_bytes` from the server's `/metrics` (0 if it cannot be read).
fn record_bytes(addr: &str) -> u64 {
    use std::io::{Read as _, Write as _};
    let read = || -> std::io::Result<String> {
        let mut s = std::net::TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )?;
        let mut text = String::new();
        s.read_to_string(&mut text)?;
        Ok(text)
    };
    read()
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("ptm_request_record_bytes "))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Starts `exe serve --zoo … --listen 127.0.0.1:0 <serve_args>`; returns it and its address.
fn start_server(exe: &Path, o: &SoakOptions) -> anyhow::Result<(Child, String)> {
    let mut child = Command::new(exe)
        .arg("serve")
        .arg("--zoo")
        .arg(&o.zoo)
        .args(["--listen", "127.0.0.1:0"])
        .args(&o.serve_args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| anyhow::anyhow!("starting {} serve: {e}", exe.display()))?;
    let mut line = String::new();
    if let Some(out) = child.stdout.as_mut() {
        BufReader::new(out).read_line(&mut line)?;
    }
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .map(str::to_string);
    match addr {
        Some(a) => Ok((child, a)),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!("ptm serve did not start: {line:?}")
        }
    }
}

/// Stops the server with SIGTERM (its graceful path) and waits for it.
fn stop_server(mut child: Child) -> anyhow::Result<()> {
    let pid = child.id().to_string();
    let sent = Command::new("kill").args(["-TERM", &pid]).status();
    if !sent.is_ok_and(|s| s.success()) {
        child.kill()?;
    }
    let status = child.wait()?;
    anyhow::ensure!(status.success(), "ptm serve exited with {status}");
    Ok(())
}

/// Runs the soak with `exe` as the `ptm` binary; `on_sample` sees each sample as it is taken.
pub fn soak(
    exe: &Path,
    mut o: SoakOptions,
    on_sample: &mut dyn FnMut(&Sample),
) -> anyhow::Result<SoakReport> {
    anyhow::ensure!(o.samples >= 2, "--samples must be ≥ 2");
    let (server, addr) = start_server(exe, &o)?;
    let pid = server.id();
    o.load.url = format!("http://{addr}");
    let progress = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let every = (o.load.requests / (o.samples as u64 - 1)).max(1);
    let start = Instant::now();
    let mut samples = vec![Sample {
        requests: 0,
        elapsed_s: 0.0,
        rss_kib: rss_kib(pid).unwrap_or(0),
        record_bytes: record_bytes(&addr),
    }];
    on_sample(&samples[0]);
    let load = std::thread::scope(|scope| {
        let (load, progress_in, done_in) = (o.load.clone(), progress.clone(), done.clone());
        let runner = scope.spawn(move || {
            let r = run_in_process(&load, Some(progress_in));
            done_in.store(true, Relaxed);
            r
        });
        let mut next = every;
        loop {
            let n = progress.load(Relaxed);
            let finished = done.load(Relaxed);
            if n >= next || finished {
                let s = Sample {
                    requests: n,
                    elapsed_s: start.elapsed().as_secs_f64(),
                    rss_kib: rss_kib(pid).unwrap_or(0),
                    record_bytes: record_bytes(&addr),
                };
                on_sample(&s);
                samples.push(s);
                next = (n / every + 1) * every;
            }
            if finished {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        runner
            .join()
            .map_err(|_| anyhow::anyhow!("the load thread panicked"))?
    });
    stop_server(server)?;
    Ok(SoakReport {
        options: o.load,
        load: load?,
        samples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_second_half_slope_is_the_growth_per_request() {
        let samples = (0..=10)
            .map(|i| Sample {
                requests: i * 1000,
                elapsed_s: i as f64,
                // Flat at 10 MiB until half-way, then 512 bytes a request.
                rss_kib: 10_240 + if i >= 5 { (i - 5) * 500 } else { 0 },
                record_bytes: i * 100_000,
            })
            .collect();
        let r = SoakReport {
            options: LoadOptions {
                url: String::new(),
                concurrency: 1,
                processes: 1,
                requests: 1,
                zipf: 0.0,
                texts: 1,
                words: 1,
                deadline_ms: None,
                seed: 1,
                token: None,
            },
            load: LoadReport::default(),
            samples,
        };
        assert!((r.second_half_bytes_per_request() - 512.0).abs() < 1e-6);
        assert!((r.second_half_record_bytes_per_request() - 100.0).abs() < 1e-6);
        assert!(r
            .csv()
            .starts_with("requests,elapsed_s,rss_kib,record_bytes\n0,0.000,10240,0\n"));
        assert!(rss_kib(std::process::id()).is_some_and(|k| k > 0));
    }
}
