//! `ptm serve` on loopback with a tiny CPU zoo: concurrent clients for a bounded time, every
//! accepted request answered exactly once, counters that add up, malformed bodies refused with
//! the field named, and a graceful shutdown.

mod serve_common;

use serve_common::{agent, metrics, post, responses_key, start, terminate, zoo};
use std::collections::BTreeMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[test]
fn concurrent_clients_get_one_answer_each_and_the_counters_add_up() {
    let zoo = zoo("serve-load", 3);
    let server = start(&zoo, &["--queue", "4", "--instances", "2"]);
    let agent = agent();
    let tenants: serde_json::Value = serde_json::from_str(
        &agent
            .get(&format!("{}/v1/tenants", server.base))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap(),
    )
    .unwrap();
    let names: Vec<String> = tenants["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names.len(), 3);

    // Malformed bodies, each refused with the field named, interleaved with the load.
    let malformed = [
        ("not json", 400, None),
        ("[1, 2]", 400, None),
        (r#"{"texts": ["x"]}"#, 400, Some("tenant")),
        (r#"{"tenant": 7, "texts": ["x"]}"#, 400, Some("tenant")),
        (r#"{"tenant": "tiny-t000"}"#, 400, Some("texts")),
        (
            r#"{"tenant": "tiny-t000", "texts": []}"#,
            400,
            Some("texts"),
        ),
        (
            r#"{"tenant": "tiny-t000", "texts": ["a"], "token_ids": [[1]]}"#,
            400,
            Some("texts"),
        ),
        (
            r#"{"tenant": "tiny-t000", "token_ids": [[1, -2]]}"#,
            400,
            Some("token_ids"),
        ),
        (
            r#"{"tenant": "tiny-t000", "token_ids": [[999999999]]}"#,
            400,
            Some("token_ids"),
        ),
        (
            r#"{"tenant": "tiny-t000", "texts": ["a"], "deadline_ms": -5}"#,
            400,
            Some("deadline_ms"),
        ),
        (
            r#"{"tenant": "tiny-t000", "texts": ["a"], "colour": "red"}"#,
            400,
            Some("colour"),
        ),
        (
            r#"{"tenant": "nobody", "texts": ["a"]}"#,
            404,
            Some("tenant"),
        ),
    ];
    let counts: Arc<Mutex<BTreeMap<u16, u64>>> = Arc::default();
    let stop = Instant::now() + Duration::from_secs(3);
    std::thread::scope(|scope| {
        for c in 0..4 {
            let (agent, base, names, counts) = (
                agent.clone(),
                server.base.clone(),
                names.clone(),
                counts.clone(),
            );
            scope.spawn(move || {
                let mut i = 0;
                while Instant::now() < stop && i < 400 {
                    let tenant = &names[(c + i) % names.len()];
                    let body = if i % 5 == 4 {
                        format!(r#"{{"tenant": "{tenant}", "token_ids": [[101, 7, 8, 102]], "deadline_ms": 1000}}"#)
                    } else {
                        format!(r#"{{"tenant": "{tenant}", "texts": ["request {i} from client {c}", "and a second text"]}}"#)
                    };
                    let (status, json) = post(&agent, &base, &body).expect("every request gets a response");
                    if status == 200 {
                        assert_eq!(json["tenant"], *tenant);
                        assert_eq!(json["outputs"].as_array().unwrap().len(), if i % 5 == 4 { 1 } else { 2 });
                    } else {
                        assert_eq!(status, 429, "{json}");
                        assert!(json["error"].as_str().unwrap().contains("queue full") || json["error"].as_str().unwrap().contains("deadline"));
                    }
                    *counts.lock().unwrap().entry(status).or_default() += 1;
                    i += 1;
                }
            });
        }
        for (body, want, field) in malformed {
            let (status, json) = post(&agent, &server.base, body).unwrap();
            assert_eq!(status, want, "{body}: {json}");
            if let Some(f) = field {
                assert_eq!(json["field"], f, "{body}: {json}");
            }
            *counts.lock().unwrap().entry(status).or_default() += 1;
        }
    });
    let counts = counts.lock().unwrap().clone();
    assert!(counts.get(&200).copied().unwrap_or(0) > 20, "{counts:?}");
    let m = metrics(&agent, &server.base);
    for (status, n) in &counts {
        assert_eq!(
            m[&responses_key("/v1/infer", *status)],
            *n as f64,
            "{status}: {m:?}"
        );
    }
    assert_eq!(
        m["ptm_requests_accepted_total"], counts[&200] as f64,
        "accepted = answered with outputs"
    );
    assert_eq!(m["ptm_latency_seconds_count"], counts[&200] as f64);
    assert!(m["ptm_switches_total"] + m["ptm_cold_loads_total"] >= 2.0);
    assert_eq!(m["ptm_queue_depth"], 0.0);
    let log = terminate(server);
    assert!(
        log.contains("stopped after answering every accepted request"),
        "{log}"
    );
}

#[test]
fn shutdown_answers_requests_in_flight() {
    let zoo = zoo("serve-drain", 3);
    let server = start(&zoo, &["--queue", "64", "--instances", "1"]);
    let agent = agent();
    let answered = Arc::new(Mutex::new(Vec::new()));
    std::thread::scope(|scope| {
        for c in 0..8 {
            let (agent, base, answered) = (agent.clone(), server.base.clone(), answered.clone());
            scope.spawn(move || {
                // Token ids, not texts: tokenizing in a debug build on a loaded machine
                // would take longer than the wait below.
                let rows: Vec<Vec<u32>> = (0..256)
                    .map(|i| (0..40).map(|t| 5 + (i * 31 + t * 7 + c) % 900).collect())
                    .collect();
                let body = serde_json::json!({
                    "tenant": format!("tiny-t00{}", c % 3),
                    "token_ids": rows,
                    // Long passes in a debug build on a loaded machine: not refused for time.
                    "deadline_ms": 60000,
                })
                .to_string();
                // A connection refused after shutdown began is a request never accepted.
                if let Ok((status, _)) = post(&agent, &base, &body) {
                    answered.lock().unwrap().push(status);
                }
            });
        }
        // Signal once the server has accepted work, so that some requests are in flight.
        let deadline = Instant::now() + Duration::from_secs(60);
        while metrics(&agent, &server.base)["ptm_requests_accepted_total"] < 1.0 {
            assert!(Instant::now() < deadline, "the server accepted nothing");
            std::thread::sleep(Duration::from_millis(5));
        }
        let pid = server.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
    });
    let out = { server }.child.wait_with_output().unwrap();
    assert!(out.status.success());
    let log = String::from_utf8(out.stderr).unwrap();
    let answered = answered.lock().unwrap();
    assert!(
        answered.iter().all(|s| [200, 429, 503].contains(s)),
        "{answered:?}"
    );
    assert!(
        answered.contains(&200),
        "requests in flight at the signal were answered: {answered:?}"
    );
    // The server's own count of answers equals what the clients received.
    let total: u64 = log
        .lines()
        .filter(|l| l.starts_with("ptm_responses_total{route=\"/v1/infer\""))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap())
        .sum();
    assert_eq!(total, answered.len() as u64, "{log}");
}
