//! `ptm serve` against slow, broken and hostile clients (issue 13): slow headers and bodies
//! are timed out, half-closing clients are answered, a checkpoint corrupted at run time leaves
//! its instance consistent, SIGTERM with held connections exits within the grace period with
//! every accepted request answered or refused, cross-origin and unauthenticated requests are
//! refused, bad flags are refused at start-up, and `/metrics` counts exactly what the clients
//! received, status by status. Timeouts are shortened by flags so the suite takes seconds.

mod serve_common;

use serve_common::*;
use std::collections::BTreeMap;
use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn bad_deadlines_and_timeouts_are_refused_at_start_up() {
    for (flag, value, want) in [
        ("--deadline-ms", "-1", "--deadline-ms -1"),
        ("--deadline-ms", "NaN", "--deadline-ms NaN"),
        ("--deadline-ms", "inf", "--deadline-ms inf"),
        ("--deadline-ms", "0", "0 would refuse every request"),
        ("--deadline-ms", "1e300", "at most 86400000"),
        ("--header-timeout-ms", "0", "--header-timeout-ms"),
        ("--body-timeout-ms", "0", "--body-timeout-ms"),
        ("--gpu-sync", "block", "only a cuda device"),
        ("--gpu-sync", "busy", "expected auto, spin, yield or block"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_ptm"))
            .args(["serve", "--zoo", "/nonexistent", "--listen", "127.0.0.1:0"])
            .arg(format!("{flag}={value}"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flag} {value} was accepted");
        assert!(err.contains(want), "{flag} {value}: {err}");
    }
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("token");
    std::fs::write(&empty, "\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ptm"))
        .args(["serve", "--zoo", "/nonexistent", "--token-file"])
        .arg(&empty)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("the first line is empty"));
}

#[test]
fn slow_headers_and_bodies_time_out_half_closed_clients_are_answered() {
    let zoo = zoo("serve-slow", 2);
    let server = start(
        &zoo,
        &["--header-timeout-ms", "300", "--body-timeout-ms", "300"],
    );
    let addr = server.addr.clone();
    // A header that never ends: the connection is closed without an answer.
    let mut slow = connect(&addr);
    slow.write_all(format!("POST /v1/infer HTTP/1.1\r\nHost: {addr}\r\n").as_bytes())
        .unwrap();
    assert_eq!(read_response(&mut slow).0, 0, "closed, no answer");
    // A body that never arrives: 408 naming the flag.
    let mut slow = connect(&addr);
    slow.write_all(
        format!("POST /v1/infer HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 100\r\n\r\n{{")
            .as_bytes(),
    )
    .unwrap();
    let (status, body) = read_response(&mut slow);
    assert_eq!(status, 408, "{body}");
    assert!(body.contains("--body-timeout-ms"), "{body}");
    // A full request, then the client shuts its write side: it still gets its answer.
    let body = r#"{"tenant": "tiny-t001", "texts": ["half closed"]}"#;
    let (status, answer) = raw(&addr, &request(&addr, body, ""), true);
    assert_eq!(status, 200, "{answer}");
    let json: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(json["tenant"], "tiny-t001");
    let m = metrics(&agent(), &server.base);
    assert_eq!(m["ptm_header_timeouts_total"], 1.0, "{m:?}");
    assert_eq!(m[&responses_key("/v1/infer", 408)], 1.0, "{m:?}");
    assert_eq!(m[&responses_key("/v1/infer", 200)], 1.0, "{m:?}");
    terminate(server);
}

#[test]
fn a_checkpoint_corrupted_at_run_time_leaves_its_instance_empty_and_consistent() {
    let zoo = zoo("serve-corrupt", 2);
    // One instance: every request of the corrupt tenant goes where the failed load was.
    let server = start(&zoo, &["--instances", "1"]);
    let file = zoo.join("tiny-t001").join("model.safetensors");
    let len = std::fs::metadata(&file).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let agent = agent();
    let body = |t: &str| format!(r#"{{"tenant": "{t}", "texts": ["some text"]}}"#);
    // Cold loads from the truncated file fail, each with the file named, never with a
    // stale "does not hold" from an instance that believes it loaded.
    for _ in 0..2 {
        let (status, json) = post(&agent, &server.base, &body("tiny-t001")).unwrap();
        assert_eq!(status, 500, "{json}");
        let error = json["error"].as_str().unwrap();
        assert!(error.contains("model.safetensors"), "{error}");
        assert!(!error.contains("does not hold"), "{error}");
    }
    // Another tenant loads cold into the empty instance and is served.
    let (status, json) = post(&agent, &server.base, &body("tiny-t000")).unwrap();
    assert_eq!(
        (status, json["cold_load"].as_bool()),
        (200, Some(true)),
        "{json}"
    );
    // The corrupt tenant again: a switch from the host cache (read intact at start-up).
    let (status, json) = post(&agent, &server.base, &body("tiny-t001")).unwrap();
    assert_eq!(
        (status, json["switched"].as_bool()),
        (200, Some(true)),
        "{json}"
    );
    let m = metrics(&agent, &server.base);
    assert_eq!(m[&responses_key("/v1/infer", 500)], 2.0);
    assert_eq!(m[&responses_key("/v1/infer", 200)], 2.0);
    assert_eq!(m["ptm_cold_loads_total"], 3.0, "two failed, one done");
    terminate(server);
}

#[test]
fn cross_origin_rebinding_and_tokenless_requests_are_refused() {
    let zoo = zoo("serve-guard", 2);
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "let-me-in\n").unwrap();
    let server = start(&zoo, &["--token-file", token_file.to_str().unwrap()]);
    let addr = server.addr.clone();
    let body = r#"{"tenant": "tiny-t000", "texts": ["hello"]}"#;
    let auth = "Authorization: Bearer let-me-in\r\n";
    // The page a user visits posts text/plain cross-origin: refused.
    let cases = [
        (
            format!("{auth}Origin: http://evil.example\r\n"),
            403,
            "Origin",
        ),
        (
            format!("{auth}Sec-Fetch-Site: cross-site\r\n"),
            403,
            "Sec-Fetch-Site",
        ),
        (String::new(), 401, "Authorization"),
        (
            "Authorization: Bearer wrong\r\n".into(),
            401,
            "Authorization",
        ),
    ];
    for (headers, want, field) in cases {
        let (status, answer) = raw(&addr, &request(&addr, body, &headers), false);
        assert_eq!(status, want, "{headers}: {answer}");
        let json: serde_json::Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(json["field"], field, "{answer}");
    }
    // DNS rebinding: the page's own host name in Host.
    let rebound = request(&addr, body, auth)
        .iter()
        .map(|&b| b as char)
        .collect::<String>()
        .replace(&format!("Host: {addr}"), "Host: evil.example");
    let (status, answer) = raw(&addr, rebound.as_bytes(), false);
    assert_eq!(status, 403, "{answer}");
    assert!(answer.contains("DNS rebinding"), "{answer}");
    // The same origin with the token is served.
    let same = format!("{auth}Origin: http://{addr}\r\nSec-Fetch-Site: same-origin\r\n");
    let (status, answer) = raw(&addr, &request(&addr, body, &same), false);
    assert_eq!(status, 200, "{answer}");
    terminate(server);
}

#[test]
fn metrics_count_exactly_what_clients_received_for_every_status() {
    let zoo = zoo("serve-count", 2);
    let server = start(&zoo, &["--queue", "2", "--instances", "1"]);
    let addr = server.addr.clone();
    let mut counted: BTreeMap<(String, u16), u64> = BTreeMap::new();
    let mut count = |route: &str, status: u16| {
        *counted.entry((route.to_string(), status)).or_default() += 1;
    };
    let ok = r#"{"tenant": "tiny-t000", "texts": ["fine"]}"#;
    let long_text = format!(
        r#"{{"tenant": "tiny-t000", "texts": ["{}"]}}"#,
        "word ".repeat(20_000)
    );
    let cases: Vec<(Vec<u8>, &str, u16)> = vec![
        (request(&addr, ok, ""), "/v1/infer", 200),
        (request(&addr, "{nope", ""), "/v1/infer", 400),
        (
            request(&addr, r#"{"tenant": "ghost", "texts": ["x"]}"#, ""),
            "/v1/infer",
            404,
        ),
        (request(&addr, &long_text, ""), "/v1/infer", 413),
        (
            format!("POST /v1/infer HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 999999999\r\n\r\n")
                .into_bytes(),
            "/v1/infer",
            413,
        ),
        (
            format!("GET /v1/infer HTTP/1.1\r\nHost: {addr}\r\n\r\n").into_bytes(),
            "/v1/infer",
            405,
        ),
        (
            format!("GET /nowhere HTTP/1.1\r\nHost: {addr}\r\n\r\n").into_bytes(),
            "other",
            404,
        ),
        (
            format!("GET /v1/tenants HTTP/1.1\r\nHost: {addr}\r\n\r\n").into_bytes(),
            "/v1/tenants",
            200,
        ),
        (
            request(&addr, ok, "Origin: http://evil.example\r\n"),
            "/v1/infer",
            403,
        ),
        (b"BLAH BLAH BLAH\r\n\r\n".to_vec(), "protocol", 400),
        (
            format!("GET /v1/tenants HTTP/1.1\r\nHost: {addr}\r\nBad Header\r\n\r\n").into_bytes(),
            "protocol",
            400,
        ),
    ];
    for (bytes, route, want) in &cases {
        let (status, body) = raw(&addr, bytes, false);
        assert_eq!(status, *want, "{}: {body}", String::from_utf8_lossy(bytes));
        // Every answer the server writes itself has a JSON body naming what was wrong.
        if *route != "protocol" && *want != 200 {
            let json: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert!(json["error"].is_string(), "{body}");
        }
        count(route, status);
    }
    // Concurrent load on one instance with a queue of 2: some 429s.
    let agent = agent();
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..6)
            .map(|c| {
                let (agent, base) = (agent.clone(), server.base.clone());
                scope.spawn(move || {
                    (0..15)
                        .map(|i| {
                            let body = format!(
                                r#"{{"tenant": "tiny-t00{}", "texts": ["client {c} request {i}"]}}"#,
                                (c + i) % 2
                            );
                            post(&agent, &base, &body).unwrap().0
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    for s in statuses {
        assert!(s == 200 || s == 429, "{s}");
        count("/v1/infer", s);
    }
    let m = metrics(&agent, &server.base);
    for ((route, status), n) in &counted {
        assert_eq!(
            m.get(&responses_key(route, *status)).copied(),
            Some(*n as f64),
            "{route} {status}: {m:?}"
        );
    }
    // Nothing else was counted (the scrape itself is counted after it renders).
    let total: f64 = m
        .iter()
        .filter(|(k, _)| k.starts_with("ptm_responses_total"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(total, counted.values().sum::<u64>() as f64, "{m:?}");
    let accepted = counted[&("/v1/infer".to_string(), 200)] as f64;
    assert_eq!(m["ptm_requests_accepted_total"], accepted);
    assert_eq!(m["ptm_requests_completed_total"], accepted);
    terminate(server);
}

#[test]
fn sigterm_under_load_with_held_connections_exits_within_the_grace_period() {
    let zoo = zoo("serve-term", 3);
    let grace_ms = 1000;
    let server = start(
        &zoo,
        &[
            "--instances",
            "1",
            "--grace-ms",
            &grace_ms.to_string(),
            // Held connections would otherwise stay a minute.
            "--header-timeout-ms",
            "60000",
            "--body-timeout-ms",
            "60000",
        ],
    );
    let addr = server.addr.clone();
    // A client holding a partial header and one holding a body it never sends.
    let mut held_header = connect(&addr);
    held_header
        .write_all(format!("POST /v1/infer HTTP/1.1\r\nHost: {addr}\r\n").as_bytes())
        .unwrap();
    let mut held_body = connect(&addr);
    held_body
        .write_all(
            format!("POST /v1/infer HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 50\r\n\r\n{{")
                .as_bytes(),
        )
        .unwrap();
    let agent = agent();
    let pid = server.child.id().to_string();
    let (answered, signalled) = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..6)
            .map(|c| {
                let (agent, base) = (agent.clone(), server.base.clone());
                scope.spawn(move || {
                    let mut statuses = Vec::new();
                    for i in 0.. {
                        let rows: Vec<Vec<u32>> = (0..64)
                            .map(|r| {
                                (0..30)
                                    .map(|t| 5 + (r * 17 + t * 3 + c + i) % 500)
                                    .collect()
                            })
                            .collect();
                        let body = serde_json::json!({
                            "tenant": format!("tiny-t00{}", (c + i) % 3),
                            "token_ids": rows,
                        })
                        .to_string();
                        match post(&agent, &base, &body) {
                            Ok((status, _)) => statuses.push(status),
                            // Refused connections after the listener closed: never accepted.
                            Err(_) => break,
                        }
                        if statuses.len() >= 200 {
                            break;
                        }
                    }
                    statuses
                })
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(60);
        while metrics(&agent, &server.base)["ptm_requests_accepted_total"] < 3.0 {
            assert!(Instant::now() < deadline, "the server accepted nothing");
            std::thread::sleep(Duration::from_millis(5));
        }
        let signalled = Instant::now();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let answered: Vec<u16> = clients
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        (answered, signalled)
    });
    let out = { server }.child.wait_with_output().unwrap();
    let took = signalled.elapsed();
    assert!(out.status.success(), "{:?}", out.status);
    // The held connections would keep it a minute; it stops after the grace period, plus
    // the short flush and the request running then (generous bound for a loaded machine).
    assert!(
        took < Duration::from_millis(grace_ms) + Duration::from_secs(20),
        "exit took {took:?}"
    );
    assert!(
        answered.iter().all(|s| [200, 429, 503].contains(s)),
        "{answered:?}"
    );
    assert!(answered.contains(&200), "{answered:?}");
    // The held connections were closed without an answer (their requests never arrived).
    assert_eq!(read_response(&mut held_header).0, 0);
    assert_eq!(read_response(&mut held_body).0, 0);
    // Everything the clients received, the server counted (and nothing else on the route).
    let log = String::from_utf8(out.stderr).unwrap();
    let m = parse_metrics(&log);
    for code in [200, 429, 503] {
        let got = answered.iter().filter(|&&s| s == code).count() as f64;
        let key = responses_key("/v1/infer", code);
        assert_eq!(m.get(&key).copied().unwrap_or(0.0), got, "{code}: {log}");
    }
    // Accepted requests were answered (200) or refused after the grace period (abandoned).
    assert_eq!(
        m["ptm_requests_accepted_total"],
        m["ptm_requests_completed_total"] + m["ptm_abandoned_total"],
        "{log}"
    );
}

#[test]
fn a_second_signal_ends_the_grace_period() {
    let zoo = zoo("serve-term-twice", 2);
    let server = start(
        &zoo,
        &["--grace-ms", "60000", "--header-timeout-ms", "60000"],
    );
    let mut held = connect(&server.addr);
    held.write_all(format!("GET /metrics HTTP/1.1\r\nHost: {}\r\n", server.addr).as_bytes())
        .unwrap();
    let pid = server.child.id().to_string();
    let t = Instant::now();
    for _ in 0..2 {
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        std::thread::sleep(Duration::from_millis(300));
    }
    let out = { server }.child.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    // Not the minute of the grace period or of the header timeout.
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    assert_eq!(read_response(&mut held).0, 0);
}
