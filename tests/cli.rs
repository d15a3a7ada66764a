//! End-to-end tests of the `ptm` binary: the README's commands, every shipped scenario, and
//! what bad input gets.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ptm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ptm"))
        .args(args)
        .output()
        .expect("ptm runs")
}

fn ok(args: &[&str]) -> String {
    let out = ptm(args);
    assert!(
        out.status.success(),
        "ptm {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn fails(args: &[&str]) -> String {
    let out = ptm(args);
    assert_eq!(
        out.status.code(),
        Some(2),
        "ptm {args:?} should fail with code 2"
    );
    String::from_utf8(out.stderr).unwrap()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn repo(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(path)
        .display()
        .to_string()
}

#[test]
fn bare_ptm_runs_the_default_with_every_policy_and_writes_figures() {
    let dir = temp_dir("bare");
    let out = Command::new(env!("CARGO_BIN_EXE_ptm"))
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8(out.stdout).unwrap();
    assert_eq!(table, ok(&["run"]), "the table is `ptm run`'s");
    let figures = dir.join("results/fastptm-overall/plots");
    assert!(
        figures.join("throughput.png").exists() && figures.join("latency-cdf-split.svg").exists()
    );
    assert!(
        table.starts_with("fastptm-overall: 480 requests, 12 tenants, 3 instances"),
        "{table}"
    );
    for policy in [
        "fcfs-rr", "fcfs-mod", "fcfs ", "omls", "edf", "sjf", "affinity",
    ] {
        assert!(
            table.contains(&format!("\n{policy}")),
            "{policy} missing from\n{table}"
        );
    }
}

#[test]
fn json_reports_have_the_documented_fields_and_are_deterministic() {
    let a = ok(&["run", "--json"]);
    assert_eq!(a, ok(&["run", "--json"]), "two runs must be byte-identical");
    let reports: serde_json::Value = serde_json::from_str(&a).unwrap();
    let reports = reports.as_array().unwrap();
    assert_eq!(reports.len(), 7);
    for r in reports {
        for key in [
            "scenario",
            "policy",
            "seed",
            "instances",
            "requests",
            "completed",
            "throughput_rps",
            "makespan_s",
            "switches",
            "cold_loads",
            "overtimes",
            "slo_attainment",
            "latency_ms",
            "wait_ms",
            "gpu_busy_frac",
            "per_instance",
            "per_tenant",
        ] {
            assert!(r.get(key).is_some(), "missing {key}");
        }
        for key in ["mean", "p50", "p95", "p99", "max"] {
            assert!(r["latency_ms"][key].is_number() && r["wait_ms"][key].is_number());
        }
        assert_eq!(r["completed"], r["requests"]);
        assert_eq!(r["per_instance"].as_array().unwrap().len(), 3);
    }
}

#[test]
fn every_shipped_scenario_parses_and_runs() {
    let names = ok(&["list"]);
    // `ptm list`: a name, then a description.
    let scenarios: Vec<&str> = names
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.ends_with(".ron") && !n.starts_with("profiles/"))
        .collect();
    assert!(scenarios.len() >= 6, "{names}");
    for name in scenarios {
        // Embedded by name, and the same file from disk, give the same reports.
        let embedded = ok(&["run", name, "--json", "--seed", "1"]);
        let on_disk = ok(&[
            "run",
            &repo(&format!("scenarios/{name}")),
            "--json",
            "--seed",
            "1",
        ]);
        let strip = |s: &str| s.replace(&repo("scenarios/"), "");
        assert_eq!(strip(&embedded), strip(&on_disk), "{name}");
        let reports: serde_json::Value = serde_json::from_str(&embedded).unwrap();
        assert!(!reports.as_array().unwrap().is_empty());
    }
}

#[test]
fn a_trace_and_a_policy_run_on_their_own() {
    let trace = repo("scenarios/traces/fastptm/167281892426_dat_T240_L12_M0.10.json");
    let out = ok(&["run", "--trace", &trace, "--policy", "omls", "--json"]);
    let reports: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(reports.as_array().unwrap().len(), 1);
    assert_eq!(reports[0]["policy"], "omls");
    assert_eq!(reports[0]["requests"], 240);
}

#[test]
fn an_exported_trace_replays_identically_in_every_format() {
    let dir = temp_dir("export");
    let original = ok(&["run", "--json", "--policy", "omls", "--policy", "affinity"]);
    for ext in ["csv", "jsonl", "json"] {
        let file = dir.join(format!("overall.{ext}"));
        let file = file.to_str().unwrap();
        ok(&["trace", "export", "--out", file]);
        let replayed = ok(&[
            "run", "--trace", file, "--json", "--policy", "omls", "--policy", "affinity",
        ]);
        assert_eq!(original, replayed, "{ext}");
    }
}

#[test]
fn overrides_apply() {
    let out = ok(&[
        "run",
        "--instances",
        "5",
        "--loading",
        "full",
        "--seed",
        "3",
        "--seed",
        "4",
        "--policy",
        "fcfs",
        "--json",
    ]);
    let reports: serde_json::Value = serde_json::from_str(&out).unwrap();
    let reports = reports.as_array().unwrap();
    assert_eq!(reports.len(), 2);
    assert_eq!(reports[0]["instances"], 5);
    assert_eq!(reports[0]["loading"], "full");
    assert_eq!(
        (reports[0]["seed"].as_u64(), reports[1]["seed"].as_u64()),
        (Some(3), Some(4))
    );
}

#[test]
fn a_malformed_scenario_is_refused_with_file_line_and_column() {
    let dir = temp_dir("bad-scenario");
    let file = dir.join("bad.ron");
    std::fs::write(
        &file,
        "Scenario(\n  name: \"x\",\n  profile: \"p.ron\",\n  model: 3,\n)",
    )
    .unwrap();
    let err = fails(&["run", file.to_str().unwrap()]);
    assert!(err.contains(&format!("{}:4:", file.display())), "{err}");
}

#[test]
fn bad_traces_are_refused_with_their_position() {
    let dir = temp_dir("bad-trace");
    for (name, text, wanted) in [
        ("letter.json", "[[\"A\", 0.1],\n[\"?\", 0.1]]", ":2:"),
        ("gap.json", "[[\"A\", -0.1]]", "entry 0: gap -0.1"),
        (
            "nan.json",
            "[[\"A\", 0.1], [\"B\", \"soon\"]]",
            "entry 1: gap seconds",
        ),
        (
            "rows.csv",
            "arrival_ms,tenant,samples,seq_len\n0,a,16,128\n5,b,many,128\n",
            "rows.csv:3:",
        ),
    ] {
        let file = dir.join(name);
        std::fs::write(&file, text).unwrap();
        let err = fails(&["run", "--trace", file.to_str().unwrap()]);
        assert!(err.contains(name) && err.contains(wanted), "{name}: {err}");
    }
}

#[test]
fn a_profile_lacking_the_model_is_named() {
    let dir = temp_dir("bad-profile");
    let text = std::fs::read_to_string(repo("scenarios/profiles/h200.ron")).unwrap();
    let file = dir.join("other.ron");
    std::fs::write(
        &file,
        text.replace("\"bert-base-fp16\"", "\"roberta-base\""),
    )
    .unwrap();
    let err = fails(&["run", "--profile", file.to_str().unwrap()]);
    assert!(
        err.contains("bert-base-fp16") && err.contains("roberta-base") && err.contains("other.ron"),
        "{err}"
    );
}

#[test]
fn too_many_instances_and_unknown_policies_are_refused() {
    // The shipped H200 profile: 1,294,160,128 bytes an executor (passes of up to 32 rows).
    let err = fails(&["run", "--instances", "200"]);
    assert!(err.contains("at most 115 instances fit"), "{err}");
    let err = fails(&["run", "fastptm/overall-rtx3090", "--instances", "10"]);
    assert!(err.contains("at most 9 instances fit"), "{err}");
    let err = fails(&["run", "--policy", "lottery"]);
    assert!(err.contains("lottery") && err.contains("affinity"), "{err}");
    let err = fails(&["run", "no/such/scenario.ron"]);
    assert!(err.contains("no/such/scenario.ron"), "{err}");
}

#[test]
fn sweeps_are_identical_whatever_the_thread_count() {
    let dir = temp_dir("sweep-jobs");
    let one = dir.join("one");
    let two = dir.join("two");
    ok(&[
        "sweep",
        "fastptm/omls-vs-fcfs",
        "--out",
        one.to_str().unwrap(),
        "--jobs",
        "1",
        "-q",
    ]);
    ok(&[
        "sweep",
        "fastptm/omls-vs-fcfs",
        "--out",
        two.to_str().unwrap(),
        "--jobs",
        "2",
        "-q",
    ]);
    for file in [
        "summary.csv",
        "seeds.csv",
        "cells/00000.json",
        "cells/00053.json",
    ] {
        let a = std::fs::read(one.join(file)).unwrap();
        assert_eq!(a, std::fs::read(two.join(file)).unwrap(), "{file}");
    }
    let summary = std::fs::read_to_string(one.join("summary.csv")).unwrap();
    assert_eq!(
        summary.lines().count(),
        1 + 6 * 3 * 3,
        "6 workloads × 3 instance counts × 3 policies"
    );
    // The cell's JSON holds the same report a single `ptm run` of that configuration gives.
    let cell: serde_json::Value =
        serde_json::from_slice(&std::fs::read(one.join("cells/00000.json")).unwrap()).unwrap();
    assert_eq!(cell["cell"]["workload"], "T240-mu0.10");
    let trace = repo("scenarios/traces/fastptm/167281892426_dat_T240_L12_M0.10.json");
    let single = ok(&[
        "run",
        "fastptm/omls-vs-fcfs",
        "--trace",
        &trace,
        "--instances",
        "1",
        "--policy",
        "fcfs-rr",
        "--json",
    ]);
    let single: serde_json::Value = serde_json::from_str(&single).unwrap();
    assert_eq!(cell["report"], single[0]);
}

#[test]
fn a_grid_run_in_shards_and_merged_equals_the_whole_run() {
    let dir = temp_dir("shards");
    let path = |p: &str| dir.join(p).to_str().unwrap().to_string();
    ok(&["sweep", "fastptm/loading", "--out", &path("whole"), "-q"]);
    for k in 1..=3 {
        ok(&[
            "sweep",
            "fastptm/loading",
            "--shard",
            &format!("{k}/3"),
            "--out",
            &path(&format!("s{k}")),
            "-q",
        ]);
        assert!(
            !dir.join(format!("s{k}/summary.csv")).exists(),
            "a shard alone writes no summary"
        );
    }
    ok(&[
        "sweep",
        "--merge",
        &path("s1"),
        &path("s2"),
        &path("s3"),
        "--out",
        &path("merged"),
    ]);
    for file in ["summary.csv", "seeds.csv", "cells/00047.json"] {
        let whole = std::fs::read(dir.join("whole").join(file)).unwrap();
        assert_eq!(
            whole,
            std::fs::read(dir.join("merged").join(file)).unwrap(),
            "{file}"
        );
    }
    let err = fails(&[
        "sweep",
        "--merge",
        &path("s1"),
        &path("s3"),
        "--out",
        &path("broken"),
    ]);
    assert!(err.contains("cell 1 is missing"), "{err}");
    let err = fails(&[
        "sweep",
        "--merge",
        &path("s1"),
        &path("s1"),
        "--out",
        &path("broken"),
    ]);
    assert!(err.contains("cell 0 is twice"), "{err}");
    let err = fails(&[
        "sweep",
        "fastptm/loading",
        "--shard",
        "4/3",
        "--out",
        &path("x"),
    ]);
    assert!(err.contains("K/N"), "{err}");
}

#[test]
fn a_timeline_tiles_each_instance_from_start_to_end() {
    let dir = temp_dir("timeline");
    let file = dir.join("tl.csv");
    ok(&[
        "run",
        "--policy",
        "omls",
        "--timeline",
        file.to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(&file).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("instance,kind,start_ms,end_ms,request,tenant")
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let inferences = rows.iter().filter(|r| r[1] == "inference").count();
    assert_eq!(inferences, 480, "one inference per request");
    let end: f64 = rows
        .iter()
        .map(|r| r[3].parse::<f64>().unwrap())
        .fold(0.0, f64::max);
    for i in 0..3 {
        let mine: Vec<_> = rows.iter().filter(|r| r[0] == i.to_string()).collect();
        assert_eq!(mine[0][2], "0.000000");
        assert!(
            mine.windows(2).all(|w| w[0][3] == w[1][2]),
            "instance {i} has a gap or overlap"
        );
        assert_eq!(mine.last().unwrap()[3].parse::<f64>().unwrap(), end);
    }
    let err = fails(&["run", "--timeline", file.to_str().unwrap()]);
    assert!(err.contains("one --policy"), "{err}");
}

#[test]
fn capacity_brackets_the_slo_target_per_policy() {
    let out = ok(&[
        "capacity",
        "fastptm/overall-rtx3090",
        "--policy",
        "fcfs-rr",
        "--policy",
        "affinity",
        "--slo",
        "0.95",
        "--json",
    ]);
    let results: serde_json::Value = serde_json::from_str(&out).unwrap();
    let results = results.as_array().unwrap();
    assert_eq!(results.len(), 2);
    for r in results {
        let (cap, miss) = (
            r["capacity_rps"].as_f64().unwrap(),
            r["missed_at_rps"].as_f64().unwrap(),
        );
        assert!(
            cap > 0.0 && miss > cap && (miss - cap) / miss <= 0.01,
            "{r}"
        );
        assert!(r["slo_attainment"].as_f64().unwrap() >= 0.95);
    }
    // Round-robin FCFS switches on almost every request: it saturates first.
    assert!(results[1]["capacity_rps"].as_f64() > results[0]["capacity_rps"].as_f64());
    assert_eq!(
        out,
        ok(&[
            "capacity",
            "fastptm/overall-rtx3090",
            "--policy",
            "fcfs-rr",
            "--policy",
            "affinity",
            "--slo",
            "0.95",
            "--json"
        ])
    );
}

#[test]
fn plot_renders_a_sweep_and_a_timeline() {
    let dir = temp_dir("plot");
    let sweep = dir.join("sweep");
    ok(&[
        "sweep",
        "fastptm/overall",
        "--out",
        sweep.to_str().unwrap(),
        "-q",
    ]);
    let listed = ok(&["plot", sweep.to_str().unwrap()]);
    for stem in [
        "throughput",
        "overtimes",
        "switches",
        "latency-p99",
        "latency-cdf-split",
        "latency-cdf-full",
    ] {
        for ext in ["png", "svg"] {
            let f = sweep.join("plots").join(format!("{stem}.{ext}"));
            assert!(
                f.exists() && std::fs::metadata(&f).unwrap().len() > 10_000,
                "{}",
                f.display()
            );
            assert!(listed.contains(&f.display().to_string()));
        }
    }
    let tl = dir.join("tl.csv");
    ok(&[
        "run",
        "--policy",
        "affinity",
        "--timeline",
        tl.to_str().unwrap(),
    ]);
    ok(&["plot", "--timeline", tl.to_str().unwrap()]);
    // Named after its input (tl.csv → tl.png), so two timelines do not overwrite each other.
    assert!(dir.join("tl.png").exists());
    let err = fails(&["plot", dir.join("nothing").to_str().unwrap()]);
    assert!(err.contains("ptm sweep"), "{err}");
}

#[test]
fn calibrate_on_the_cpu_then_simulate_and_replay_live() {
    let dir = temp_dir("calibrate-live");
    let path = |p: &str| dir.join(p).to_str().unwrap().to_string();
    ok(&[
        "zoo",
        "make",
        "--arch",
        "tiny",
        "--tenants",
        "3",
        "--out",
        &path("zoo"),
    ]);
    ok(&[
        "calibrate",
        "--device",
        "cpu",
        "--zoo",
        &path("zoo"),
        "--quick",
        "--out",
        &path("cpu.ron"),
    ]);
    let profile = std::fs::read_to_string(dir.join("cpu.ron")).unwrap();
    assert!(
        profile.contains("\"tiny-fp32\"")
            && profile.contains("measured: Some(")
            && profile.contains("interpolation")
    );
    // The weight tiers' figures, measured through the CPU twin of the pool; contention by
    // resource and the host's work per dispatch, measured through the live path.
    assert!(
        profile.contains("weights_bytes: Some(")
            && profile.contains("pool_switch: Some(")
            && profile.contains("contention: Some(")
            && profile.contains("handoff_ms:"),
        "{profile}"
    );
    // The simulator accepts it.
    let sim = ok(&[
        "run",
        "--profile",
        &path("cpu.ron"),
        "--model",
        "tiny-fp32",
        "--policy",
        "omls",
        "--json",
    ]);
    let sim: serde_json::Value = serde_json::from_str(&sim).unwrap();
    assert_eq!(sim[0]["completed"], 480);
    let costs = sim[0]["cost_model"].as_str().unwrap();
    assert!(
        costs.contains("contention by resource")
            && costs.contains("host overhead per dispatch measured"),
        "{costs}"
    );
    // A short trace replayed live on the CPU runtime, beside the simulation.
    let mut trace = String::from("arrival_ms,tenant,samples,seq_len\n");
    for i in 0..24 {
        trace += &format!("{},t{},8,32\n", i * 20, i % 3);
    }
    std::fs::write(dir.join("t.csv"), trace).unwrap();
    let out = ok(&[
        "run",
        "--live",
        "--zoo",
        &path("zoo"),
        "--profile",
        &path("cpu.ron"),
        "--model",
        "tiny-fp32",
        "--trace",
        &path("t.csv"),
        "--instances",
        "2",
        "--policy",
        "affinity",
        "--policy",
        "fcfs-rr",
        "--compare",
        "--json",
    ]);
    let cells: serde_json::Value = serde_json::from_str(&out).unwrap();
    let cells = cells.as_array().unwrap();
    assert_eq!(cells.len(), 2);
    for c in cells {
        assert_eq!(c["live"]["completed"], 24);
        assert_eq!(c["simulated"]["completed"], 24);
        assert!(c["live"]["gpu"].as_str().unwrap().starts_with("live: cpu"));
        let loads = |r: &serde_json::Value| {
            r["switches"].as_u64().unwrap() + r["cold_loads"].as_u64().unwrap()
        };
        assert!(loads(&c["live"]) >= 1);
    }
    // The weight tiers live on the CPU twin: a pool smaller than the tenants (promotions,
    // evictions, loads from the pool), cross-request batches, both new policies; every request
    // answered, beside the simulation on the calibrated pool figures.
    let tiers = r#"Scenario(
    name: "tiers-cpu",
    profile: "cpu.ron",
    model: "tiny-fp32",
    instances: 2,
    forward_batch: 8,
    preload: Empty,
    gpu_pool: Some(Tenants(2)),
    batching: Some((max_wait_ms: 1.0)),
    workload: Generate(requests: 60, arrivals: Poisson(rate_rps: 100.0), tenants: 3, popularity: Zipf(s: 1.1)),
    request: (samples: 2, seq_len: 16, deadline_ms: 1000.0),
    policies: ["tier-affinity", "deadline-batch"],
    seeds: [1],
)"#;
    std::fs::write(dir.join("tiers.ron"), tiers).unwrap();
    let out = ok(&[
        "run",
        &path("tiers.ron"),
        "--live",
        "--zoo",
        &path("zoo"),
        "--compare",
        "--json",
    ]);
    let tiers_cells: serde_json::Value = serde_json::from_str(&out).unwrap();
    for c in tiers_cells.as_array().unwrap() {
        assert_eq!(c["live"]["completed"], 60, "{c}");
        assert_eq!(c["simulated"]["completed"], 60, "{c}");
        assert!(c["simulated"]["pool_loads"].as_u64().unwrap() > 0, "{c}");
        assert!(c["live_phases"]["pool_load_ms"].is_number(), "{c}");
    }
    // As a table: the error's sign is labelled, and progress with the time left goes to
    // standard error while the cells replay.
    let out = ptm(&[
        "run",
        "--live",
        "--zoo",
        &path("zoo"),
        "--profile",
        &path("cpu.ron"),
        "--model",
        "tiny-fp32",
        "--trace",
        &path("t.csv"),
        "--instances",
        "2",
        "--policy",
        "fcfs-rr",
        "--seed",
        "1",
        "--seed",
        "2",
        "--compare",
    ]);
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("(sim − live)/live"), "{table}");
    let progress = String::from_utf8_lossy(&out.stderr);
    assert!(
        progress.contains("live: cell 0/2 done; next: fcfs-rr, seed 1; eta ~")
            && progress.contains("live: cell 2/2 done; done"),
        "{progress}"
    );
    // Round-robin FCFS decides the same whatever the timings: the same loads live and simulated.
    assert_eq!(
        cells[1]["live"]["switches"],
        cells[1]["simulated"]["switches"]
    );
    // A missing zoo and a missing GPU are named.
    let live_on = |zoo: &str, device: &str| {
        fails(&[
            "run",
            "--live",
            "--zoo",
            zoo,
            "--device",
            device,
            "--trace",
            &path("t.csv"),
        ])
    };
    let err = live_on(&path("no-zoo"), "cpu");
    assert!(err.contains("no-zoo") && err.contains("zoo.ron"), "{err}");
    if std::env::var("PTM_TEST_CUDA").is_err() {
        let err = live_on(&path("zoo"), "cuda:0");
        assert!(err.contains("cuda:0") || err.contains("GPU"), "{err}");
    }
    // Repeatability check: a profile against itself differs by nothing.
    let same = ok(&["profile", "diff", &path("cpu.ron"), &path("cpu.ron")]);
    assert!(
        same.contains("largest difference 0.0 %, 0 beyond"),
        "{same}"
    );
    let fastptm = repo("scenarios/profiles/rtx3090-fastptm.ron");
    let err = fails(&["profile", "diff", &fastptm, &path("cpu.ron")]);
    assert!(err.contains("no measured figures"), "{err}");
    let err = fails(&[
        "calibrate",
        "--device",
        "cuda:0",
        "--zoo",
        &path("zoo"),
        "--quick",
        "--out",
        &path("x.ron"),
    ]);
    assert!(err.contains("issue 4") || err.contains("GPU"), "{err}");
}

#[test]
fn every_shipped_measured_profile_runs_every_fastptm_scenario() {
    for profile in ["h200.ron", "h100.ron"] {
        let p = repo(&format!("scenarios/profiles/{profile}"));
        for scenario in [
            "overall",
            "instances",
            "loading",
            "omls-vs-fcfs",
            "sequence",
        ] {
            let out = ok(&[
                "run",
                &format!("fastptm/{scenario}"),
                "--profile",
                &p,
                "--model",
                "bert-base-fp16",
                "--policy",
                "affinity",
                "--json",
            ]);
            let r: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(r[0]["completed"], r[0]["requests"], "{profile} {scenario}");
            assert!(
                r[0]["gpu"].as_str().unwrap().starts_with("NVIDIA H"),
                "{profile}"
            );
        }
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            text.contains("calibration: Some(") && text.contains("measured: Some("),
            "{profile}"
        );
    }
}

#[test]
fn a_recorded_live_run_is_resimulated_by_this_build_and_tabled() {
    // A live-versus-simulated recording made on the H200 (issue 16's Azure cell, 1 instance).
    let results = "runtime/bench/results/h200-2026-11-29-round2/e";
    let recording = repo(&format!("{results}/azure-m1.json"));
    let args = |instances: &'static str| {
        vec![
            "run".to_string(),
            repo("runtime/bench/issue16/azure-code.ron"),
            "--instances".into(),
            instances.into(),
            "--rate".into(),
            "150".into(),
            "--profile".into(),
            repo(&format!("{results}/h200.ron")),
            "--model".into(),
            "bert-base-fp16".into(),
            "--resimulate".into(),
            recording.clone(),
        ]
    };
    let mut json_args = args("1");
    json_args.push("--json".into());
    let out = ok(&json_args.iter().map(String::as_str).collect::<Vec<_>>());
    let cells: serde_json::Value = serde_json::from_str(&out).unwrap();
    let before: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&recording).unwrap()).unwrap();
    let cells = cells.as_array().unwrap();
    assert_eq!(cells.len(), 4);
    for (c, b) in cells.iter().zip(before.as_array().unwrap()) {
        // The live half is the measurement, kept as recorded; the simulated half is new.
        assert_eq!(c["live"], b["live"]);
        assert_eq!(c["live_latencies_ns"], b["live_latencies_ns"]);
        assert_eq!(c["simulated"]["policy"], b["live"]["policy"]);
        assert_eq!(c["simulated_latencies_ns"].as_array().unwrap().len(), 1100);
    }
    let dir = temp_dir("resimulate");
    let file = dir.join("cells.json");
    std::fs::write(&file, &out).unwrap();
    let table = ok(&["fidelity-table", file.to_str().unwrap()]);
    assert!(table.contains("| cells | omls | 1 | 1100 |"), "{table}");
    assert!(!table.contains("Live between recordings"), "{table}");
    // The same cells from another call (a file of the same name elsewhere): live's range over
    // the two recordings, the same simulation in both.
    let again = dir.join("other");
    std::fs::create_dir_all(&again).unwrap();
    std::fs::write(again.join("cells.json"), &out).unwrap();
    let table = ok(&[
        "fidelity-table",
        file.to_str().unwrap(),
        again.join("cells.json").to_str().unwrap(),
    ]);
    assert!(
        table.contains("### Live between recordings of the same cell"),
        "{table}"
    );
    assert!(
        table.contains("| cells | omls | 1 | 2 |")
            && table.contains("(0.0 %) | ")
            && table.contains("| yes |"),
        "{table}"
    );
    // A recording of another run is refused, naming the cell and the difference.
    let err = fails(&args("2").iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        err.contains("cell 0 (fcfs-rr / seed 1)") && err.contains("1 instances recorded, 2 given"),
        "{err}"
    );
}
