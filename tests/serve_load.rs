//! `ptm bench load` against `ptm serve`: several processes, a bounded count, and the server's
//! `/metrics` equal to the client's counts status by status; `ptm bench serve-soak` at a small
//! size writes its memory curve.

mod serve_common;

use serve_common::{agent, metrics, responses_key, start, terminate, zoo};
use std::process::Command;

#[test]
fn the_load_client_counts_what_the_server_counts() {
    let zoo = zoo("serve-bench-load", 3);
    // A small queue and a short deadline: some 429s beside the 200s.
    let server = start(&zoo, &["--queue", "2", "--instances", "1"]);
    let out = Command::new(env!("CARGO_BIN_EXE_ptm"))
        .args([
            "bench",
            "load",
            "--url",
            &server.base,
            "--concurrency",
            "6",
            "--processes",
            "2",
            "--requests",
            "120",
            "--texts",
            "2",
            "--words",
            "4",
            "--deadline-ms",
            "400",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["requests"], 120);
    assert_eq!(report["processes"], 2);
    let statuses = report["statuses"].as_object().unwrap();
    assert!(!statuses.contains_key("error"), "{statuses:?}");
    assert_eq!(
        statuses.values().map(|v| v.as_u64().unwrap()).sum::<u64>(),
        120
    );
    assert!(statuses["200"].as_u64().unwrap() > 0, "{statuses:?}");
    assert!(report["cpu_s"].as_f64().unwrap() >= 0.0);
    let m = metrics(&agent(), &server.base);
    for (status, n) in statuses {
        let code: u16 = status.parse().unwrap();
        assert_eq!(
            m[&responses_key("/v1/infer", code)],
            n.as_u64().unwrap() as f64,
            "{status}: {m:?}"
        );
    }
    assert_eq!(
        m["ptm_requests_completed_total"],
        statuses["200"].as_f64().unwrap()
    );
    terminate(server);
}

#[test]
fn a_small_soak_writes_its_memory_curve() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("soak.csv");
    let out = Command::new(env!("CARGO_BIN_EXE_ptm"))
        .args([
            "bench",
            "serve-soak",
            "--requests",
            "200",
            "--concurrency",
            "4",
            "--samples",
            "3",
            "--out",
            csv.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Until a first service time is measured only what can start at once is admitted: a few
    // 429s at the start, none after.
    assert!(
        stdout.contains("200 requests to http://127.0.0.1:"),
        "{stdout}"
    );
    assert!(stdout.contains("| 200 | "), "{stdout}");
    assert!(stdout.contains("bytes per request"), "{stdout}");
    let text = std::fs::read_to_string(&csv).unwrap();
    let rows: Vec<Vec<f64>> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    assert!(rows.len() >= 3, "{text}");
    assert_eq!(rows[0][0], 0.0);
    assert_eq!(rows.last().unwrap()[0], 200.0);
    assert!(rows.iter().all(|r| r[2] > 1000.0), "RSS in KiB: {text}");
    // The coordinator's records are read from /metrics at each sample.
    assert!(rows.last().unwrap()[3] > 0.0, "{text}");
}

/// Memory levels off: after a warm-up, neither the coordinator's request records nor the
/// server's resident memory grow with the count of requests served (the ledger forgets answered
/// requests once they are at least 1,024 and half of its books). In a debug build it takes
/// about a minute.
#[test]
fn memory_levels_off_under_a_soak() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("soak.csv");
    let out = Command::new(env!("CARGO_BIN_EXE_ptm"))
        .args([
            "bench",
            "serve-soak",
            "--requests",
            "20000",
            "--concurrency",
            "32",
            "--samples",
            "11",
            "--out",
            csv.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = std::fs::read_to_string(&csv).unwrap();
    let rows: Vec<Vec<f64>> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    let half = &rows[rows.len() / 2..];
    let (first, last) = (&half[0], &half[half.len() - 1]);
    let requests = last[0] - first[0];
    // The records stay within what the ledger keeps before it forgets (2 × 1,024 requests
    // plus those in flight, about 70 bytes each): bounded, whatever the count served.
    assert!(
        half.iter().all(|r| r[3] <= 256.0 * 1024.0),
        "records grew: {text}"
    );
    // Resident memory: under 32 bytes a request over the second half of a short debug run
    // (allocator noise; the unbounded records of before grew 117 bytes a request, and the 1M
    // request soak in BENCHMARKS.md shows where it levels off).
    let rss_bytes = (last[2] - first[2]) * 1024.0;
    assert!(
        rss_bytes / requests < 32.0,
        "RSS grew {rss_bytes} B: {text}"
    );
}
