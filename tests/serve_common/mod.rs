//! Helpers of the `ptm serve` end-to-end tests: a tiny zoo, a server on a free loopback port,
//! an HTTP agent, raw sockets for clients that misbehave, and `/metrics` parsed.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Runs `ptm args` and asserts it succeeds.
pub fn ptm(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_ptm"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A running `ptm serve`.
pub struct Server {
    pub child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// `127.0.0.1:PORT`.
    pub addr: String,
}

/// Starts `ptm serve` on `zoo` with `extra` flags; returns once it listens.
pub fn start(zoo: &Path, extra: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ptm"))
        .args([
            "serve",
            "--zoo",
            zoo.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .expect(&line)
        .to_string();
    Server {
        child,
        base: format!("http://{addr}"),
        addr,
    }
}

/// An HTTP agent that returns every status as a response.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// POSTs `body`; returns the status and the JSON answer.
pub fn post(
    agent: &ureq::Agent,
    base: &str,
    body: &str,
) -> Result<(u16, serde_json::Value), ureq::Error> {
    let mut resp = agent
        .post(&format!("{base}/v1/infer"))
        .content_type("application/json")
        .send(body)?;
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string()?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    ))
}

/// `/metrics` as name{labels} → value.
pub fn metrics(agent: &ureq::Agent, base: &str) -> BTreeMap<String, f64> {
    let text = agent
        .get(&format!("{base}/metrics"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    parse_metrics(&text)
}

/// Prometheus text lines as name{labels} → value.
pub fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            l.rsplit_once(' ')
                .and_then(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
        })
        .collect()
}

/// The `ptm_responses_total` key of `route` and `code`.
pub fn responses_key(route: &str, code: u16) -> String {
    format!("ptm_responses_total{{route=\"{route}\",code=\"{code}\"}}")
}

/// Sends SIGTERM to the server and waits; returns its stderr.
pub fn terminate(s: Server) -> String {
    let status = Command::new("kill")
        .args(["-TERM", &s.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = s.child.wait_with_output().unwrap();
    assert!(out.status.success(), "server exit: {:?}", out.status);
    String::from_utf8(out.stderr).unwrap()
}

/// A tiny zoo of `tenants` models under the test target directory.
pub fn zoo(name: &str, tenants: usize) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    ptm(&[
        "zoo",
        "make",
        "--arch",
        "tiny",
        "--tenants",
        &tenants.to_string(),
        "--out",
        dir.to_str().unwrap(),
    ]);
    dir
}

/// A raw connection to the server.
pub fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s
}

/// Sends `bytes` on a fresh connection (then shuts the write side if `half_close`) and reads
/// until the server closes or answers; returns the status (0: closed without an answer) and
/// the body.
pub fn raw(addr: &str, bytes: &[u8], half_close: bool) -> (u16, String) {
    let mut s = connect(addr);
    s.write_all(bytes).unwrap();
    if half_close {
        s.shutdown(Shutdown::Write).unwrap();
    }
    read_response(&mut s)
}

/// Reads one response (the server closes after it or sends Content-Length).
pub fn read_response(s: &mut TcpStream) -> (u16, String) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        let text = String::from_utf8_lossy(&buf);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if body.len() >= len {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A complete POST /v1/infer request for `addr` with `body` and extra header lines.
pub fn request(addr: &str, body: &str, headers: &str) -> Vec<u8> {
    format!(
        "POST /v1/infer HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n{headers}\r\n{body}",
        body.len()
    )
    .into_bytes()
}
