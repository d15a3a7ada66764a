//! End-to-end tests of the answers a user acts on (issue 12): capacity, `ptm plan`, names of
//! embedded files, the flags of `run`, per-request and per-tenant outputs, Perfetto traces,
//! `ptm compare`, `ptm trace import` and the calibrate pre-check.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ptm_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ptm"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("ptm runs")
}

fn ok_in(dir: &Path, args: &[&str]) -> String {
    let out = ptm_in(dir, args);
    assert!(
        out.status.success(),
        "ptm {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn ok(args: &[&str]) -> String {
    ok_in(Path::new(env!("CARGO_MANIFEST_DIR")), args)
}

fn fails(args: &[&str]) -> String {
    let out = ptm_in(Path::new(env!("CARGO_MANIFEST_DIR")), args);
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

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap()
}

#[test]
fn capacity_is_bounded_by_the_executors_and_never_zero_with_full_attainment() {
    // FastPTM's 480-request trace on 3 instances of ~10–13 ms requests: main printed 589.9
    // req/s for fcfs and 10484575.969 for sjf and affinity.
    let out = ok(&[
        "capacity",
        "fastptm/overall",
        "--slo",
        "0.99",
        "--requests",
        "3000",
        "--json",
    ]);
    let results = json(&out);
    for c in results.as_array().unwrap() {
        let bound = c["bound_rps"].as_f64().unwrap();
        assert!(bound < 320.0, "3 instances of ≥ 9 ms requests: {c}");
        let cap = c["capacity_rps"].as_f64().unwrap();
        assert!(cap > 0.0 && cap <= bound, "{c}");
    }
    // An SLO of 1.0: a number with its attainment, or "not reached" — never 0 with 1.0.
    for scenario in ["fastptm/overall", "fastptm/overall-rtx3090"] {
        let out = ok(&[
            "capacity",
            scenario,
            "--slo",
            "1.0",
            "--policy",
            "omls",
            "--requests",
            "3000",
            "--json",
        ]);
        let c = &json(&out)[0];
        match c["capacity_rps"].as_f64() {
            Some(cap) => assert!(cap > 0.0 && c["slo_attainment"] == 1.0, "{c}"),
            None => assert!(
                c["slo_attainment"].is_null() && c["not_reached"].is_string(),
                "{c}"
            ),
        }
    }
    let table = ok(&[
        "capacity",
        "fastptm/overall",
        "--policy",
        "affinity",
        "--deadline-ms",
        "5",
        "--requests",
        "2000",
    ]);
    assert!(table.contains("not reached"), "{table}");
}

#[test]
fn plan_answers_which_policy_and_how_many_instances() {
    let dir = temp_dir("plan");
    let out = ok(&[
        "plan",
        "fastptm/overall",
        "--slo",
        "0.99",
        "--rate",
        "150",
        "--instance-counts",
        "1-3",
        "--policy",
        "fcfs-rr",
        "--policy",
        "affinity",
        "--requests",
        "3000",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(
        out.contains("instances=1") && out.contains("instances=3"),
        "{out}"
    );
    assert!(
        out.contains("cheapest meeting SLO 0.99 at 150.000 req/s: instances="),
        "{out}"
    );
    for f in [
        "plan.json",
        "capacity.csv",
        "capacity-vs-instances.png",
        "capacity-vs-instances.svg",
    ] {
        assert!(dir.join(f).exists(), "{f}");
    }
    let plan = json(&std::fs::read_to_string(dir.join("plan.json")).unwrap());
    assert_eq!(plan["rows"].as_array().unwrap().len(), 6);
    let choice = plan["answers"][0]["choice"].as_u64().unwrap() as usize;
    let chosen = &plan["rows"][choice];
    assert!(chosen["capacity"]["capacity_rps"].as_f64().unwrap() >= 150.0 * 0.99);
    assert_eq!(plan["answers"][0]["check"]["met"], true);
}

#[test]
fn plan_searches_eviction_only_with_a_pool_to_evict_from() {
    // FastPTM's model has no GPU pool: an eviction axis there would be rows of one value.
    let err = fails(&["plan", "fastptm/overall", "--evictions", "lru,belady"]);
    assert!(
        err.contains("--evictions: no GPU pool to evict from") && err.contains("--gpu-pools"),
        "{err}"
    );
    let err = fails(&["plan", "fastptm/overall", "--evictions", "lru,mru"]);
    assert!(
        err.contains("mru") && err.contains("lru, lfu, gdsf, belady"),
        "{err}"
    );
}

#[test]
fn run_prints_the_mean_over_seeds_and_the_offered_load() {
    let out = ok(&[
        "run", "--policy", "OMLS", "--policy", "Affinity", "--seed", "1", "--seed", "2",
    ]);
    assert!(out.contains("offered load 9.999 req/s"), "{out}");
    assert!(out.contains("mean over seeds ± 95 % interval"), "{out}");
    let mean_rows: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("mean over seeds"))
        .skip(2)
        .collect();
    assert_eq!(mean_rows.len(), 2, "{out}");
    assert!(
        mean_rows[0].starts_with("omls") && mean_rows[0].contains('±'),
        "{out}"
    );
    // One seed: no mean row, and no interval of 0 pretending to be one.
    let one = ok(&["run", "--policy", "omls"]);
    assert!(
        !one.contains("mean over seeds") && !one.contains('±'),
        "{one}"
    );
    // Policies in any case, listed in --help; --jobs 0 refused.
    assert!(ok(&["run", "--help"]).contains("affinity"));
    let err = fails(&["sweep", "fastptm/overall", "--jobs", "0"]);
    assert!(err.contains("--jobs"), "{err}");
}

#[test]
fn run_flags_replace_rate_tenants_deadline_and_workload() {
    let r = json(&ok(&[
        "run",
        "--policy",
        "fcfs",
        "--rate",
        "40",
        "--deadline-ms",
        "50",
        "--json",
    ]));
    let rate = r[0]["offered_rps"].as_f64().unwrap();
    assert!((rate - 40.0).abs() < 1e-6, "{rate}");
    assert_eq!(r[0]["deadline_ms"], 50.0);
    let spec = "Generate(requests: 300, arrivals: Poisson(rate_rps: 20.0), tenants: 5)";
    let r = json(&ok(&[
        "run",
        "--policy",
        "fcfs",
        "--workload",
        spec,
        "--tenants",
        "40",
        "--json",
    ]));
    assert_eq!(
        (r[0]["requests"].as_u64(), r[0]["tenants"].as_u64()),
        (Some(300), Some(40))
    );
    let err = fails(&["run", "--tenants", "40"]);
    assert!(
        err.contains("--tenants applies to a generated workload"),
        "{err}"
    );
}

#[test]
fn embedded_names_resolve_from_flags_files_and_saved_sweeps() {
    let dir = temp_dir("names");
    // From a flag.
    let a = ok(&[
        "run",
        "fastptm/overall-rtx3090",
        "--profile",
        "profiles/h200.ron",
        "--model",
        "bert-base-fp16",
        "--policy",
        "omls",
        "--json",
    ]);
    assert!(json(&a)[0]["gpu"].as_str().unwrap().contains("H200"));
    // From a user's scenario file.
    let file = dir.join("mine.ron");
    std::fs::write(
        &file,
        r#"Scenario(name: "mine", profile: "profiles/h200.ron", model: "bert-base-fp16",
           instances: 2, workload: Trace("traces/fastptm/167281892426_dat_T240_L12_M0.10.json"),
           policies: ["affinity"])"#,
    )
    .unwrap();
    let r = json(&ok_in(&dir, &["run", "mine.ron", "--json"]));
    assert_eq!(r[0]["requests"], 240);
    // The scenario.ron a sweep saves runs again, from another folder.
    ok_in(&dir, &["sweep", "fastptm/loading", "-q"]);
    let saved = dir.join("results/fastptm-loading/scenario.ron");
    assert!(saved.exists(), "sweep --out defaults to results/<scenario>");
    let other = temp_dir("names-elsewhere");
    let again = json(&ok_in(
        &other,
        &[
            "run",
            saved.to_str().unwrap(),
            "--seed",
            "1",
            "--policy",
            "omls",
            "--json",
        ],
    ));
    assert_eq!(again[0]["requests"], 240);
    // ptm show, ptm list with descriptions.
    assert!(ok(&["show", "fastptm/overall"]).contains("Scenario("));
    assert!(ok(&["show", "profiles/h200.ron"]).contains("memory_per_instance_bytes"));
    let list = ok(&["list"]);
    for line in list.lines() {
        assert!(
            line.split_whitespace().count() > 2,
            "no description: {line}"
        );
    }
    assert!(
        list.contains("profiles/h200.ron") && list.contains("H200"),
        "{list}"
    );
    // A missing file is named once, not with "(os error 2)" twice.
    let err = fails(&["run", "--profile", "nope/h300.ron"]);
    assert!(
        err.contains("nope/h300.ron") && err.matches("os error").count() <= 1,
        "{err}"
    );
    let err = fails(&["run", dir.join("missing.ron").to_str().unwrap()]);
    assert!(err.matches("os error").count() <= 1, "{err}");
}

#[test]
fn per_request_per_tenant_and_perfetto_outputs_and_compare() {
    let dir = temp_dir("outputs");
    let p = |f: &str| dir.join(f).to_str().unwrap().to_string();
    let table = ok(&[
        "run",
        "--policy",
        "omls",
        "--policy",
        "fcfs-rr",
        "--requests",
        &p("out/requests.csv"),
        "--per-tenant",
        &p("out/tenants.csv"),
    ]);
    assert!(table.contains("worst tenant"), "{table}");
    let rows = std::fs::read_to_string(dir.join("out/requests.csv")).unwrap();
    assert!(rows.starts_with("policy,seed,request,tenant,arrival_ms,start_ms,end_ms,"));
    assert_eq!(rows.lines().count(), 1 + 2 * 480);
    let tenants = std::fs::read_to_string(dir.join("out/tenants.csv")).unwrap();
    assert_eq!(tenants.lines().count(), 1 + 2 * 12);
    // The timeline as a Chrome trace, into a folder that does not exist yet.
    ok(&["run", "--policy", "omls", "--timeline", &p("deep/tl.json")]);
    let trace = json(&std::fs::read_to_string(dir.join("deep/tl.json")).unwrap());
    assert!(trace["traceEvents"].as_array().unwrap().len() > 960);
    ok(&["run", "--policy", "omls", "--timeline", &p("deep2/tl.csv")]);
    assert!(dir.join("deep2/tl.csv").exists());
    // Compare two runs.
    std::fs::write(dir.join("a.json"), ok(&["run", "--json"])).unwrap();
    std::fs::write(
        dir.join("b.json"),
        ok(&["run", "--json", "--instances", "2"]),
    )
    .unwrap();
    let cmp = ok(&["compare", &p("a.json"), &p("b.json")]);
    assert!(
        cmp.contains("7 cells paired") && cmp.contains("omls seed=1"),
        "{cmp}"
    );
    assert!(cmp.contains("throughput_rps") && cmp.contains('%'), "{cmp}");
    let err = fails(&["compare", &p("a.json"), &p("nothing")]);
    assert!(err.contains("nothing"), "{err}");
}

#[test]
fn a_real_log_imports_and_runs() {
    let dir = temp_dir("import");
    let log = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("sim/tests/data/azure-llm-2023-code-excerpt.csv");
    let out = dir.join("azure.csv");
    let o = ptm_in(
        &dir,
        &[
            "trace",
            "import",
            log.to_str().unwrap(),
            "--columns",
            "arrival=TIMESTAMP,seq_len=ContextTokens",
            "--speedup",
            "4",
            "--tenants",
            "50",
            "--popularity",
            "zipf:1.1",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(said.contains("imported 600 requests"), "{said}");
    let r = json(&ok(&[
        "run",
        "--trace",
        out.to_str().unwrap(),
        "--policy",
        "affinity",
        "--json",
    ]));
    assert_eq!(r[0]["requests"], 600);
    // 600 requests over 261.6 s, four times faster.
    let rate = r[0]["offered_rps"].as_f64().unwrap();
    assert!((rate - 599.0 / (261.635999 / 4.0)).abs() < 1e-6, "{rate}");
}

#[test]
fn calibrate_checks_its_output_before_measuring_and_zoos_default_to_two_tenants() {
    let dir = temp_dir("precheck");
    let zoo = dir.join("zoo");
    let made = ok(&[
        "zoo",
        "make",
        "--arch",
        "tiny",
        "--out",
        zoo.to_str().unwrap(),
    ]);
    assert_eq!(
        made.lines().filter(|l| l.contains("tiny-t")).count(),
        2,
        "{made}"
    );
    std::fs::write(dir.join("a-file"), "").unwrap();
    let bad_out = dir.join("a-file/cpu.ron");
    let err = fails(&[
        "calibrate",
        "--device",
        "cpu",
        "--zoo",
        zoo.to_str().unwrap(),
        "--quick",
        "--out",
        bad_out.to_str().unwrap(),
    ]);
    assert!(
        err.contains("checked before measuring") && err.contains("a-file"),
        "{err}"
    );
}
