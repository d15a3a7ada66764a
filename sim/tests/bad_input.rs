//! Hostile and mistyped input (issue 13): every case that used to panic, abort, wrap or saturate
//! is refused with the file, line or field and the bound — or, where the input is legal, gives
//! the exact result.

use ptm_sim::engine::{LoadingMode, Serving, Setup};
use ptm_sim::limits::{MAX_REQUESTS, MAX_TIME_NS};
use ptm_sim::profile::Profile;
use ptm_sim::scenario::Scenario;
use ptm_sim::workload::{self, trace, NoFiles, RequestDefaults, Workload, WorkloadSpec};

fn scenario(extra: &str, workload: &str) -> ptm_sim::Result<Scenario> {
    Scenario::from_ron(
        &format!(
            r#"Scenario(name: "t", profile: "p.ron", model: "m", instances: 2,
               workload: {workload}, {extra})"#
        ),
        "t.ron",
    )
}

fn build(spec: &str) -> ptm_sim::Result<Workload> {
    let spec: WorkloadSpec = ron::from_str(spec).expect("spec parses");
    workload::build(&spec, &RequestDefaults::default(), "m", 1, &NoFiles)
}

fn trace_err(text: &str, name: &str) -> String {
    workload::parse_trace(text, name, &RequestDefaults::default(), "m")
        .unwrap_err()
        .to_string()
}

fn profile(cold: &str, switch: &str, stretch: &str) -> ptm_sim::Result<Profile> {
    Profile::from_ron(
        &format!(
            r#"(gpu: (name: "g", memory_bytes: 100000000000), models: {{"m": (
                memory_per_instance_bytes: 1000,
                cold_load: (ms: {cold}),
                switch: (split: (ms: {switch}, stretch: {stretch}), full: (ms: Constant(10.0))),
                forward: (points: [(batch: 1, seq_len: 128, ms: Constant(1.0))]))}})"#
        ),
        "p.ron",
    )
}

const SEQUENCE: &str = "Sequence(repeat: 2, types: 2, gap_ms: 10.0)";

#[test]
fn instance_counts_beyond_the_bound_are_refused() {
    let s = scenario("", SEQUENCE).unwrap();
    let mut s2 = s.clone();
    s2.instances = usize::MAX;
    let e = s2.validate("command line").unwrap_err().to_string();
    assert!(
        e.contains("command line: instances")
            && e.contains("18446744073709551615")
            && e.contains("1024"),
        "{e}"
    );
    let e = scenario("sweep: Some((instances: [1, 5000]))", SEQUENCE)
        .unwrap_err()
        .to_string();
    assert!(e.contains("sweep.instances") && e.contains("5000"), "{e}");
    // The setup refuses it too (live replay and serve build one without a scenario).
    let w = build(SEQUENCE).unwrap();
    let p = Profile::example();
    let serving = Serving {
        instances: 1 << 40,
        loading: LoadingMode::Split,
        forward_batch: 1,
        ..Serving::default()
    };
    let e = Setup::new(&p, "p.ron", &w, serving)
        .unwrap_err()
        .to_string();
    assert!(e.contains("instances") && e.contains("1024"), "{e}");
}

#[test]
fn omls_tick_below_a_microsecond_is_refused() {
    for tick in ["0.0000001", "0.0", "1e300", "-1.0"] {
        let e = scenario(
            &format!("policies: [\"omls\"], policy_options: (omls: (tick_ms: {tick}))"),
            SEQUENCE,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("policy_options.omls.tick_ms"), "{tick}: {e}");
    }
    let e = scenario(
        "policies: [\"omls\"], policy_options: (omls: (switch_threshold_ms: 1e300))",
        SEQUENCE,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("switch_threshold_ms") && e.contains("10 years"),
        "{e}"
    );
}

#[test]
fn generators_whose_arrivals_overflow_are_refused() {
    let e = build("Sequence(repeat: 1000, types: 12, gap_ms: 1e300)")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("workload.gap_ms") && e.contains("10 years"),
        "{e}"
    );
    // Each gap is fine, the last arrival is not.
    let e = build("Sequence(repeat: 100, types: 12, gap_ms: 1e10)")
        .unwrap_err()
        .to_string();
    assert!(e.contains("1200 requests") && e.contains("10 years"), "{e}");
    let e = build("Generate(requests: 5, arrivals: Poisson(rate_rps: 1e-300), tenants: 3)")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("workload.arrivals") && e.contains("10 years"),
        "{e}"
    );
    // A gap of one year is legal; the eleventh request would arrive after ten.
    let e = build("Generate(requests: 20, arrivals: Fixed(gap_ms: 31536000000.0), tenants: 3)")
        .unwrap_err()
        .to_string();
    assert!(e.contains("request 11 of 20"), "{e}");
    let w = build("Generate(requests: 11, arrivals: Fixed(gap_ms: 31536000000.0), tenants: 3)")
        .unwrap();
    assert_eq!(w.requests[10].arrival_ns, MAX_TIME_NS);
    let e = build("Generate(requests: 5, arrivals: Gamma(rate_rps: 1.0, cv: 1e9), tenants: 3)")
        .unwrap_err()
        .to_string();
    assert!(e.contains("workload.arrivals.cv"), "{e}");
}

#[test]
fn request_counts_beyond_the_bound_are_refused_before_allocating() {
    let e = build("Generate(requests: 4000000000, arrivals: Poisson(rate_rps: 10.0), tenants: 3)")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("workload.requests") && e.contains(&MAX_REQUESTS.to_string()),
        "{e}"
    );
    // 9223372036854775811 × 2 wraps to 6 in 64 bits.
    let e = build("Sequence(repeat: 9223372036854775811, types: 2, gap_ms: 1.0)")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("workload.repeat") && e.contains("10000000"),
        "{e}"
    );
    // In a scenario, the refusal names the file.
    let e = scenario(
        "",
        "Generate(requests: 4000000000, arrivals: Poisson(rate_rps: 10.0), tenants: 3)",
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("t.ron: workload.requests: 4000000000"), "{e}");
    let e = scenario(
        "sweep: Some((offered_rps: [1.0, 1e-300]))",
        "Generate(requests: 5, arrivals: Poisson(rate_rps: 10.0), tenants: 3)",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("t.ron: workload.arrivals") && e.contains("10 years"),
        "{e}"
    );
    let e = build("Sequence(repeat: 1000000, types: 20, gap_ms: 1.0)")
        .unwrap_err()
        .to_string();
    assert!(e.contains("20000000 requests"), "{e}");
}

#[test]
fn trace_times_beyond_ten_years_are_refused_by_line() {
    let e = trace_err("[[\"A\", 0.1],\n [\"B\", 1e308]]", "t.json");
    assert!(
        e.starts_with("t.json:2:") && e.contains("entry 1: gap 1e308 s"),
        "{e}"
    );
    // Gaps of five years each: the third request arrives at ten, the fourth after.
    let e = trace_err(
        "[[\"A\", 157680000],\n[\"A\", 157680000],\n[\"A\", 157680000],\n[\"A\", 0]]",
        "t.json",
    );
    assert!(
        e.starts_with("t.json:4:") && e.contains("entry 3: arrives at"),
        "{e}"
    );
    let e = trace_err(
        "arrival_ms,tenant,samples,seq_len\n0,A,16,128\n1e15,B,16,128\n",
        "t.csv",
    );
    assert!(
        e.starts_with("t.csv:3:") && e.contains("arrival_ms 1000000000000000.0 ms"),
        "{e}"
    );
    let e = trace_err(
        "{\"arrival_ms\":1e308,\"tenant\":\"A\",\"samples\":16,\"seq_len\":128}\n",
        "t.jsonl",
    );
    assert!(e.starts_with("t.jsonl:1:") && e.contains("10 years"), "{e}");
    let e = trace_err(
        "arrival_ms,tenant,samples,seq_len,deadline_ms\n0,A,16,128,1e300\n",
        "t.csv",
    );
    assert!(
        e.starts_with("t.csv:2:") && e.contains("deadline_ms"),
        "{e}"
    );
}

#[test]
fn oversized_requests_in_a_trace_are_refused_by_line() {
    let e = trace_err(
        "arrival_ms,tenant,samples,seq_len\n0,A,4294967295,4294967295\n",
        "t.csv",
    );
    assert!(
        e.starts_with("t.csv:2:") && e.contains("samples 4294967295") && e.contains("1000000"),
        "{e}"
    );
}

#[test]
fn a_byte_order_mark_is_skipped_in_every_format() {
    let d = RequestDefaults::default();
    let json = workload::parse_trace("\u{feff}[[\"A\", 0.1], [\"B\", 0.0]]", "t.json", &d, "m");
    let jsonl = workload::parse_trace(
        "\u{feff}{\"arrival_ms\":0,\"tenant\":\"A\",\"samples\":16,\"seq_len\":128}\n",
        "t.jsonl",
        &d,
        "m",
    );
    let csv = workload::parse_trace(
        "\u{feff}arrival_ms,tenant,samples,seq_len\n0,A,16,128\n",
        "t.csv",
        &d,
        "m",
    );
    assert_eq!(json.unwrap().requests.len(), 2);
    assert_eq!(jsonl.unwrap(), csv.unwrap());
    assert!(Scenario::from_ron(
        "\u{feff}Scenario(name: \"t\", profile: \"p.ron\", model: \"m\", instances: 1, workload: Trace(\"t.csv\"))",
        "t.ron"
    )
    .is_ok());
    let text = ron::to_string(&Profile::example()).unwrap();
    assert!(Profile::from_ron(&format!("\u{feff}{text}"), "p.ron").is_ok());
}

#[test]
fn profile_costs_beyond_an_hour_are_refused_naming_the_field() {
    for (cold, field) in [
        ("Constant(1e308)", "cold_load.ms"),
        ("Constant(1e13)", "cold_load.ms"),
        ("LogNormal(median: 100.0, sigma: 1000.0)", "cold_load.ms"),
        ("Normal(mean: 10.0, std: 1e300)", "cold_load.ms"),
        ("Empirical([(0.0, 1.0), (100.0, 1e20)])", "cold_load.ms"),
    ] {
        let e = profile(cold, "Constant(1.0)", "[]")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!("p.ron: models.m.{field}")) && e.contains("one hour"),
            "{cold}: {e}"
        );
    }
    let e = profile("Constant(1.0)", "Constant(1.0)", "[1e300, 1e300]")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("models.m.switch.split.stretch") && e.contains("1000"),
        "{e}"
    );
    // The switch costs that used to make switches free.
    for switch in ["Constant(1e300)", "Constant(2e13)"] {
        let e = profile("Constant(1.0)", switch, "[]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("models.m.switch.split.ms"), "{e}");
    }
    // A noisy measured log-normal (three repeats, one 20 times slower) is accepted: its 8-sigma
    // point lies beyond an hour, but a draw gets there with probability below 10⁻¹²; its draws
    // are truncated at one hour.
    let p = profile(
        "LogNormal(median: 13.5, sigma: 1.73)",
        "Constant(1.0)",
        "[]",
    )
    .unwrap();
    let cold = &p.models["m"].cold_load.ms;
    assert_eq!(cold.max_ms(), 3_600_000.0);
    let mut rng = ptm_sim::rng::stream(1, ptm_sim::rng::Stream::Load);
    assert!((0..10_000).all(|_| (0.0..=3_600_000.0).contains(&cold.sample(&mut rng))));
}

#[test]
fn the_longest_legal_switch_costs_what_it_says() {
    // One instance, two tenants alternating: every request after the first switches, and a
    // switch of exactly one hour takes one hour (it used to wrap or saturate to free).
    let p = profile("Constant(1.0)", "Constant(3600000.0)", "[]").unwrap();
    let w = build("Sequence(repeat: 2, types: 2, gap_ms: 1.0)").unwrap();
    let serving = Serving {
        instances: 1,
        loading: LoadingMode::Split,
        forward_batch: 1,
        ..Serving::default()
    };
    let setup = Setup::new(&p, "p.ron", &w, serving).unwrap();
    let s = scenario("policies: [\"fcfs\"], preload: Empty", SEQUENCE).unwrap();
    let report = s.run_cell(&setup, "fcfs", 1).unwrap();
    assert_eq!(report.switches, 3);
    let hour_ms = 3_600_000.0;
    assert!(
        report.latency_ms.max >= 3.0 * hour_ms,
        "the last request waits for three one-hour switches: {:?}",
        report.latency_ms
    );
}

#[test]
fn a_run_that_cannot_end_within_a_century_is_refused() {
    // 1,000,000 requests, each possibly waiting for a one-hour switch stretched 1,000-fold.
    let p = profile("Constant(3600000.0)", "Constant(3600000.0)", "[1000.0]").unwrap();
    let w = build("Sequence(repeat: 100000, types: 10, gap_ms: 1.0)").unwrap();
    let serving = Serving {
        instances: 2,
        loading: LoadingMode::Split,
        forward_batch: 1,
        ..Serving::default()
    };
    let e = Setup::new(&p, "p.ron", &w, serving)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("p.ron: ") && e.contains("100 years") && e.contains("1000000 requests"),
        "{e}"
    );
    // The same workload on sane costs is fine.
    let p = profile("Constant(300.0)", "Constant(100.0)", "[1.0, 1.5]").unwrap();
    Setup::new(&p, "p.ron", &w, serving).unwrap();
}

#[test]
fn sweep_grids_beyond_a_million_cells_are_refused() {
    let seeds: Vec<String> = (1..=1000).map(|s| s.to_string()).collect();
    let list = seeds.join(", ");
    let e = scenario(
        &format!("seeds: [{list}], sweep: Some((instances: [{list}]))"),
        SEQUENCE,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("sweep") && e.contains("1000000"), "{e}");
}

#[test]
fn exported_traces_at_the_time_bound_read_back() {
    let w = build("Generate(requests: 11, arrivals: Fixed(gap_ms: 31536000000.0), tenants: 3)")
        .unwrap();
    let d = RequestDefaults::default();
    for (text, name) in [
        (trace::write_csv(&w, "m"), "x.csv"),
        (trace::write_jsonl(&w, "m"), "x.jsonl"),
    ] {
        assert!(!text.contains("18446744073709"), "{text}");
        assert_eq!(workload::parse_trace(&text, name, &d, "m").unwrap(), w);
    }
}

#[test]
fn trace_files_beyond_a_gibibyte_are_refused_before_reading() {
    let dir = std::env::temp_dir().join(format!("ptm-bad-input-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = std::fs::File::create(dir.join("big.csv")).unwrap();
    // Sparse: nothing is written.
    f.set_len(ptm_sim::limits::MAX_FILE_BYTES + 1).unwrap();
    let files = workload::DiskFiles { base: dir.clone() };
    let spec = WorkloadSpec::Trace("big.csv".into());
    let e = workload::build(&spec, &RequestDefaults::default(), "m", 1, &files)
        .unwrap_err()
        .to_string();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(e.contains("big.csv") && e.contains("1 GiB"), "{e}");
}

#[test]
fn a_workload_without_tenants_is_refused_by_the_setup() {
    // Live replay and serve build workloads themselves; an empty zoo gives no tenants.
    let w = Workload {
        tenants: Vec::new(),
        requests: Vec::new(),
    };
    let serving = Serving {
        instances: 1,
        loading: LoadingMode::Split,
        forward_batch: 1,
        ..Serving::default()
    };
    let e = Setup::new(&Profile::example(), "p.ron", &w, serving)
        .unwrap_err()
        .to_string();
    assert!(e.contains("0 distinct models"), "{e}");
}
