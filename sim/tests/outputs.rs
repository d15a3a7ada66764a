//! What a user reads after a run: the per-request rows, the Perfetto trace, per-tenant
//! summaries, means over seeds, and comparisons of two runs.

use ptm_sim::compare::{self, METRICS};
use ptm_sim::metrics::{over_seeds, perfetto, requests, TenantReport};
use ptm_sim::profile::Profile;
use ptm_sim::scenario::Scenario;
use ptm_sim::workload::{FileSource, NoFiles};
use std::path::Path;

struct Files;

impl FileSource for Files {
    fn read(&self, path: &Path) -> ptm_sim::Result<(String, String)> {
        if path == Path::new("p.ron") {
            let p = Profile::example();
            Ok((ron::ser::to_string(&p).unwrap(), "p.ron".into()))
        } else {
            NoFiles.read(path)
        }
    }
}

fn scenario(instances: usize) -> Scenario {
    Scenario::from_ron(
        &format!(
            r#"Scenario(name: "out", profile: "p.ron", model: "bert-base", instances: {instances},
               workload: Generate(requests: 200, arrivals: Poisson(rate_rps: 12.0), tenants: 6,
                                  popularity: Zipf(s: 1.0)),
               policies: ["fcfs-rr", "affinity"], seeds: [1, 2, 3])"#
        ),
        "out.ron",
    )
    .unwrap()
}

#[test]
fn per_request_rows_add_up_to_the_report() {
    let cells = scenario(2).run_detailed(&Files, true).unwrap();
    assert_eq!(cells.len(), 6);
    let mut csv = String::from(requests::HEADER);
    for c in &cells {
        requests::write_rows(
            &mut csv,
            &c.report.policy,
            c.report.seed,
            &c.workload,
            &c.run,
        )
        .unwrap();
    }
    let header: Vec<&str> = requests::HEADER.trim_end().split(',').collect();
    assert_eq!(header.len(), 15);
    for c in &cells {
        let mine: Vec<Vec<&str>> = csv
            .lines()
            .skip(1)
            .map(|l| l.split(',').collect::<Vec<_>>())
            .filter(|f| f[0] == c.report.policy && f[1] == c.report.seed.to_string())
            .collect();
        assert_eq!(mine.len(), 200);
        let count = |kind: &str| mine.iter().filter(|f| f[12] == kind).count() as u64;
        assert_eq!(count("switch"), c.report.switches);
        assert_eq!(count("cold_load"), c.report.cold_loads);
        let late = mine.iter().filter(|f| f[10] == "1").count();
        assert_eq!(late, c.report.overtimes);
        for f in &mine {
            assert_eq!(f.len(), 15);
            let t = |i: usize| f[i].parse::<f64>().unwrap();
            assert!(t(4) <= t(5) && t(5) <= t(6), "arrival ≤ start ≤ end: {f:?}");
            assert!(f[11].parse::<usize>().unwrap() < 2, "instance");
            let source = match f[12] {
                "none" => "arena",
                "pool_load" => "pool",
                "switch" => "host",
                "cold_load" => "file",
                other => panic!("load {other}"),
            };
            assert_eq!(f[13], source, "the load's source tier");
            assert!(f[14].parse::<u32>().is_ok(), "batch number: {f:?}");
        }
    }
}

#[test]
fn the_perfetto_trace_is_chrome_trace_json() {
    let cells = scenario(2).run_detailed(&Files, true).unwrap();
    let c = &cells[0];
    let text = perfetto::trace_json("out / fcfs-rr / 1", 2, &c.workload, &c.run).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let events = v["traceEvents"].as_array().unwrap();
    let complete: Vec<&serde_json::Value> = events.iter().filter(|e| e["ph"] == "X").collect();
    let spans = c.run.timeline.as_ref().unwrap();
    assert_eq!(complete.len(), spans.len());
    assert_eq!(
        complete.iter().filter(|e| e["cat"] == "inference").count(),
        200
    );
    for e in &complete {
        assert!(e["ts"].as_f64().unwrap() >= 0.0 && e["dur"].as_f64().unwrap() >= 0.0);
        assert!(e["tid"].as_u64().unwrap() < 2);
    }
    let names: Vec<&str> = events
        .iter()
        .filter(|e| e["name"] == "thread_name")
        .map(|e| e["args"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["instance 0", "instance 1"]);
    // The waiting-requests counter ends at 0 (every request started).
    let last = events.iter().rev().find(|e| e["ph"] == "C").unwrap();
    assert_eq!(last["args"]["waiting"], 0);
}

#[test]
fn tenants_means_and_comparisons() {
    let a = scenario(2).run(&Files).unwrap();
    for r in &a {
        let per: u64 = r.per_tenant.iter().map(|t| t.overtimes).sum();
        assert_eq!(per as usize, r.overtimes);
        for t in &r.per_tenant {
            assert!((0.0..=1.0).contains(&t.slo_attainment) && t.p99_latency_ms >= 0.0);
        }
        let worst = TenantReport::worst(&r.per_tenant, 3);
        assert!(worst
            .windows(2)
            .all(|w| w[0].slo_attainment <= w[1].slo_attainment));
        assert!(
            r.offered_rps > 8.0 && r.offered_rps < 16.0,
            "{}",
            r.offered_rps
        );
        assert_eq!(r.deadline_ms, Some(3000.0));
    }
    let means = over_seeds(&a);
    assert_eq!(means.len(), 2);
    assert_eq!(means[0].seeds, 3);
    assert!(means[0].throughput_rps.ci95.unwrap() > 0.0);
    // The same run against itself changes nothing; against four instances it is paired cell by
    // cell.
    let same = compare::compare(&compare::keyed_reports(&a), &compare::keyed_reports(&a)).unwrap();
    assert_eq!(same.pairs.len(), 6);
    assert!(same
        .pairs
        .iter()
        .all(|p| p.changes.iter().all(|c| c.relative() == Some(0.0))));
    let b = scenario(4).run(&Files).unwrap();
    let diff = compare::compare(&compare::keyed_reports(&a), &compare::keyed_reports(&b)).unwrap();
    assert_eq!(diff.pairs[0].key, "fcfs-rr seed=1");
    assert_eq!(diff.pairs[0].changes.len(), METRICS.len());
    assert!(diff.only_a.is_empty() && diff.only_b.is_empty());
    let err = compare::compare(&compare::keyed_reports(&a), &[]).unwrap_err();
    assert!(err.to_string().contains("share no cell"), "{err}");
}
