//! Property tests of the simulator's parsers (issue 13): random and mutated scenarios, traces
//! (FastPTM JSON, CSV, JSONL) and profiles. For every input:
//! - nothing panics;
//! - an error names the input (it starts with the file name);
//! - the parser's peak allocation is at most [`alloc_bound`] of the input's length;
//! - what is accepted is within the bounds of `ptm_sim::limits`, and simulates without error.

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
#[path = "support/mutate.rs"]
mod mutate;

use counting_alloc::{peak_bytes, Counting};
use mutate::mutated;
use proptest::prelude::*;
use proptest::test_runner::Config;
use ptm_sim::engine::{LoadingMode, Serving, Setup};
use ptm_sim::limits::{
    MAX_COST_MS, MAX_REQUESTS, MAX_SAMPLES, MAX_SEQ_LEN, MAX_TENANTS, MAX_TIME_NS,
};
use ptm_sim::profile::{Dist, Profile};
use ptm_sim::scenario::Scenario;
use ptm_sim::workload::{self, NoFiles, RequestDefaults, Workload};

#[global_allocator]
static ALLOC: Counting = Counting;

/// The most a parser may hold allocated at once for an input of `len` bytes: 1 MiB plus 64
/// bytes per input byte (a request is 32 bytes and takes at least 8 bytes of any trace format).
fn alloc_bound(len: usize) -> usize {
    (1 << 20) + 64 * len
}

fn cases() -> Config {
    Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    }
}

/// Numbers as a file might write them: ordinary, huge, tiny, negative, not numbers.
fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (0u32..5000).prop_map(|v| v.to_string()),
        2 => (0.0f64..1e4).prop_map(|v| format!("{v:?}")),
        1 => any::<u32>().prop_map(|v| v.to_string()),
        1 => any::<f64>().prop_map(|v| format!("{v:?}")),
        3 => prop::sample::select(vec![
            "0", "-1", "1", "0.0", "-0.0", "1e308", "-1e308", "1e300", "1e-300", "1e15", "1e13",
            "2e13", "3600000.0", "3600000.1", "315360000000.0", "315360000000.5", "4294967295",
            "4294967296", "18446744073709551615", "9223372036854775811", "4000000000",
            "10000001", "0.0000001", "NaN", "inf", "-inf", "\"x\"", "", "1.5e", "null", "1000000",
            "1000001",
        ])
        .prop_map(str::to_string),
    ]
}

fn tenant() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "A", "B", "Z", "a", "t10", "t2", "", "AB", "é", "\"q\"",
    ])
    .prop_map(str::to_string)
}

fn bom() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["", "", "", "\u{feff}", " \n"])
}

/// A value for a trace column: plausible in a clean trace, sometimes hostile in a dirty one.
fn field(column: &'static str, clean: bool) -> BoxedStrategy<String> {
    let plausible = match column {
        "arrival_ms" | "deadline_ms" => (0.0f64..1e6).prop_map(|v| format!("{v:?}")).boxed(),
        "samples" | "seq_len" => (1u32..512).prop_map(|v| v.to_string()).boxed(),
        "tenant" => prop::sample::select(vec!["A", "B", "t2", "t10"])
            .prop_map(str::to_string)
            .boxed(),
        "model" => Just("bert-base".to_string()).boxed(),
        _ => number().boxed(),
    };
    let hostile = if matches!(column, "tenant" | "model") {
        tenant().boxed()
    } else {
        number().boxed()
    };
    if clean {
        plausible
    } else {
        prop_oneof![6 => plausible, 1 => hostile].boxed()
    }
}

/// Trace columns: mostly the required ones (and some optional), sometimes any subset.
fn columns() -> impl Strategy<Value = Vec<&'static str>> {
    let all = vec![
        "arrival_ms",
        "tenant",
        "samples",
        "seq_len",
        "deadline_ms",
        "model",
        "x",
    ];
    prop_oneof![
        3 => prop::sample::subsequence(vec!["deadline_ms", "model"], 0..=2).prop_map(|extra| {
            let mut c = vec!["arrival_ms", "tenant", "samples", "seq_len"];
            c.extend(extra);
            c
        }),
        1 => prop::sample::subsequence(all, 0..=7),
    ]
    .prop_shuffle()
}

/// Rows of values for `columns`: a clean trace or a dirty one (hostile values, rows with too
/// few or too many fields).
fn rows(
    columns: Vec<&'static str>,
) -> impl Strategy<Value = (Vec<&'static str>, Vec<Vec<String>>)> {
    any::<bool>().prop_flat_map(move |clean| {
        let fields = columns.iter().map(|c| field(c, clean)).collect::<Vec<_>>();
        let row = if clean {
            fields.boxed()
        } else {
            prop_oneof![
                6 => fields,
                1 => prop::collection::vec(number(), 0..8),
            ]
            .boxed()
        };
        (Just(columns.clone()), prop::collection::vec(row, 0..20))
    })
}

fn csv_trace() -> impl Strategy<Value = String> {
    (bom(), columns().prop_flat_map(rows)).prop_map(|(bom, (columns, rows))| {
        let mut text = format!("{bom}{}\n", columns.join(","));
        for row in rows {
            text += &row.join(",");
            text += "\n";
        }
        text
    })
}

fn jsonl_trace() -> impl Strategy<Value = String> {
    (bom(), columns().prop_flat_map(rows)).prop_map(|(bom, (columns, rows))| {
        let lines: Vec<String> = rows
            .iter()
            .map(|row| {
                let body: Vec<String> = columns
                    .iter()
                    .zip(row)
                    .map(|(k, v)| match *k {
                        "tenant" | "model" => format!("\"{k}\":{v:?}"),
                        _ => format!("\"{k}\":{v}"),
                    })
                    .collect();
                format!("{{{}}}", body.join(","))
            })
            .collect();
        format!("{bom}{}\n", lines.join("\n"))
    })
}

fn fastptm_trace() -> impl Strategy<Value = String> {
    let letter = prop_oneof![
        4 => prop::sample::select(vec!["A", "B", "C", "L", "Z"]).prop_map(str::to_string),
        1 => tenant(),
    ];
    let gap = prop_oneof![4 => (0.0f64..2.0).prop_map(|v| format!("{v:?}")), 1 => number()];
    let entry = (letter, gap, prop::bool::weighted(0.05)).prop_map(|(t, n, three)| {
        if three {
            format!("[{t:?}, {n}, 1]")
        } else {
            format!("[{t:?}, {n}]")
        }
    });
    (bom(), prop::collection::vec(entry, 0..30))
        .prop_map(|(bom, entries)| format!("{bom}[{}]", entries.join(", ")))
}

fn valid_traces() -> Vec<(String, &'static str)> {
    let w = workload::build(
        &ron::from_str("Generate(requests: 12, arrivals: Poisson(rate_rps: 5.0), tenants: 4)")
            .unwrap(),
        &RequestDefaults::default(),
        "bert-base",
        3,
        &NoFiles,
    )
    .unwrap();
    vec![
        (workload::trace::write_csv(&w, "bert-base"), "t.csv"),
        (workload::trace::write_jsonl(&w, "bert-base"), "t.jsonl"),
        (
            workload::fastptm::write(&w, &RequestDefaults::default()).unwrap(),
            "t.json",
        ),
    ]
}

/// Checks an accepted workload against the bounds and simulates it on the example profile.
fn check_accepted(w: &Workload) {
    assert!(!w.requests.is_empty() && w.requests.len() <= MAX_REQUESTS);
    assert!(!w.tenants.is_empty() && w.tenants.len() <= MAX_TENANTS as usize);
    w.assert_valid();
    for r in &w.requests {
        assert!(r.arrival_ns <= MAX_TIME_NS && r.deadline_ns <= MAX_TIME_NS);
        assert!(r.samples <= MAX_SAMPLES && r.seq_len <= MAX_SEQ_LEN);
    }
    if w.requests.len() > 300 {
        return;
    }
    let profile = Profile::example();
    let serving = Serving {
        instances: 2,
        loading: LoadingMode::Split,
        forward_batch: 1,
        ..Serving::default()
    };
    // A trace may name models the example profile lacks: that is a clear error, not a run.
    let Ok(setup) = Setup::new(&profile, "example", w, serving) else {
        return;
    };
    let scenario = Scenario::from_ron(
        r#"Scenario(name: "p", profile: "p.ron", model: "bert-base", instances: 2,
           workload: Trace("t.csv"), policies: ["fcfs-rr", "omls"])"#,
        "p.ron",
    )
    .unwrap();
    for policy in ["fcfs-rr", "omls"] {
        let report = scenario.run_cell(&setup, policy, 1).unwrap();
        assert_eq!(report.completed, w.requests.len());
    }
}

fn check_trace(text: &str, name: &str) {
    let defaults = RequestDefaults::default();
    let (result, peak) = peak_bytes(|| workload::parse_trace(text, name, &defaults, "bert-base"));
    assert!(
        peak <= alloc_bound(text.len()),
        "{name}: {peak} bytes allocated for {} bytes of input",
        text.len()
    );
    match result {
        Err(e) => {
            let e = e.to_string();
            assert!(e.starts_with(name), "error does not name {name}: {e}");
        }
        Ok(w) => check_accepted(&w),
    }
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn csv_traces(text in csv_trace()) {
        check_trace(&text, "t.csv");
    }

    #[test]
    fn jsonl_traces(text in jsonl_trace()) {
        check_trace(&text, "t.jsonl");
    }

    #[test]
    fn fastptm_traces(text in fastptm_trace()) {
        check_trace(&text, "t.json");
    }

    #[test]
    fn mutated_traces(
        (text, name) in prop::sample::select(valid_traces())
            .prop_flat_map(|(t, n)| (mutated(t), Just(n)))
    ) {
        check_trace(&text, name);
    }
}

/// A number in a profile: a plausible `lo..hi` in a clean profile, sometimes hostile in a
/// dirty one.
fn value(lo: f64, hi: f64, clean: bool) -> BoxedStrategy<String> {
    let plausible = (lo..hi).prop_map(|v| format!("{v:?}"));
    if clean {
        plausible.boxed()
    } else {
        prop_oneof![5 => plausible, 1 => number()].boxed()
    }
}

fn dist(clean: bool) -> impl Strategy<Value = String> {
    let v = move |lo, hi| value(lo, hi, clean);
    prop_oneof![
        v(0.0, 500.0).prop_map(|v| format!("Constant({v})")),
        (v(0.0, 500.0), v(0.0, 50.0)).prop_map(|(m, s)| format!("Normal(mean: {m}, std: {s})")),
        (v(0.01, 500.0), v(0.0, 1.0))
            .prop_map(|(m, s)| format!("LogNormal(median: {m}, sigma: {s})")),
        prop::collection::vec((v(1.0, 99.0), v(1.0, 2.0)), 0..4).prop_map(move |mut points| {
            if clean {
                points.sort_by(|a, b| a.0.parse::<f64>().unwrap().total_cmp(&b.0.parse().unwrap()));
                points.dedup_by(|a, b| a.0 == b.0);
                points.iter_mut().for_each(|p| p.1 = "1.5".into());
            }
            let p: Vec<String> = points.iter().map(|(a, b)| format!("({a}, {b})")).collect();
            format!("Empirical([(0.0, 1.0), {}, (100.0, 2.0)])", p.join(", "))
        }),
    ]
}

fn stretch(clean: bool) -> impl Strategy<Value = String> {
    prop::collection::vec(value(1.0, 4.0, clean), 0..4).prop_map(|v| format!("[{}]", v.join(", ")))
}

fn profile_text() -> impl Strategy<Value = String> {
    any::<bool>().prop_flat_map(profile_text_of)
}

fn profile_text_of(clean: bool) -> impl Strategy<Value = String> {
    let cost =
        move || (dist(clean), stretch(clean)).prop_map(|(d, s)| format!("(ms: {d}, stretch: {s})"));
    let shape = move || {
        if clean {
            (1u32..600).prop_map(|v| v.to_string()).boxed()
        } else {
            prop_oneof![5 => (1u32..600).prop_map(|v| v.to_string()), 1 => number()].boxed()
        }
    };
    let point = (shape(), shape(), dist(clean))
        .prop_map(|(b, l, d)| format!("(batch: {b}, seq_len: {l}, ms: {d})"));
    let bytes = move |plausible: &'static str| {
        if clean {
            Just(plausible.to_string()).boxed()
        } else {
            prop_oneof![5 => Just(plausible.to_string()), 1 => number()].boxed()
        }
    };
    (
        bom(),
        bytes("100000000000"),
        bytes("2000000000"),
        (cost(), cost(), cost()),
        dist(clean),
        prop::collection::vec(point, 0..4),
        stretch(clean),
    )
        .prop_map(
            |(bom, mem, per, (cold, split, full), overhead, points, fs)| {
                format!(
                    "{bom}(gpu: (name: \"g\", memory_bytes: {mem}), models: {{\"bert-base\": (\
                 memory_per_instance_bytes: {per}, cold_load: {cold}, switch: (split: {split}, \
                 full: {full}), request_overhead_ms: {overhead}, forward: (points: [(batch: 1, \
                 seq_len: 128, ms: Constant(0.5)), {}], stretch: {fs}))}})",
                    points.join(", ")
                )
            },
        )
}

fn every_dist(p: &Profile) -> Vec<&Dist> {
    let mut out = Vec::new();
    for m in p.models.values() {
        out.extend([
            &m.cold_load.ms,
            &m.switch.split.ms,
            &m.switch.full.ms,
            &m.request_overhead_ms,
        ]);
        out.extend(m.forward.points.iter().map(|q| &q.ms));
    }
    out
}

fn check_profile(text: &str) {
    let (result, peak) = peak_bytes(|| Profile::from_ron(text, "p.ron"));
    assert!(
        peak <= alloc_bound(text.len()),
        "{peak} bytes for {}",
        text.len()
    );
    let p = match result {
        Err(e) => {
            let e = e.to_string();
            assert!(e.starts_with("p.ron"), "error does not name p.ron: {e}");
            return;
        }
        Ok(p) => p,
    };
    let mut rng = ptm_sim::rng::stream(1, ptm_sim::rng::Stream::Service);
    for d in every_dist(&p) {
        assert!(
            d.max_ms() <= MAX_COST_MS && d.mean() <= MAX_COST_MS,
            "{d:?}"
        );
        for _ in 0..20 {
            let x = d.sample(&mut rng);
            assert!((0.0..=d.max_ms()).contains(&x), "{d:?} drew {x}");
        }
    }
    let w = workload::build(
        &ron::from_str("Sequence(repeat: 3, types: 3, gap_ms: 10.0)").unwrap(),
        &RequestDefaults::default(),
        "bert-base",
        1,
        &NoFiles,
    )
    .unwrap();
    let serving = Serving {
        instances: 2,
        loading: LoadingMode::Split,
        forward_batch: 1,
        ..Serving::default()
    };
    // Memory that does not fit two instances is a clear error.
    if let Ok(setup) = Setup::new(&p, "p.ron", &w, serving) {
        check_accepted_run(&setup);
    }
}

fn check_accepted_run(setup: &Setup<'_>) {
    let scenario = Scenario::from_ron(
        r#"Scenario(name: "p", profile: "p.ron", model: "bert-base", instances: 2,
           workload: Trace("t.csv"), policies: ["fcfs-rr", "omls"])"#,
        "p.ron",
    )
    .unwrap();
    for policy in ["fcfs-rr", "omls"] {
        let report = scenario.run_cell(setup, policy, 1).unwrap();
        assert_eq!(report.completed, 9);
    }
}

const SHIPPED_PROFILE: &str = include_str!("../../scenarios/profiles/h200.ron");
const SHIPPED_SCENARIO: &str = include_str!("../../scenarios/synthetic/zipf-tenants.ron");

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn random_profiles(text in profile_text()) {
        check_profile(&text);
    }

    #[test]
    fn mutated_profiles(text in mutated(SHIPPED_PROFILE.to_string())) {
        check_profile(&text);
    }
}

/// A number in a scenario: plausible `lo..hi` in a clean one, sometimes hostile in a dirty one.
fn num(lo: f64, hi: f64, clean: bool) -> BoxedStrategy<String> {
    value(lo, hi, clean)
}

/// A count: plausible `lo..hi` in a clean scenario; in a dirty one sometimes far beyond the
/// bounds.
fn count(lo: u32, hi: u32, clean: bool) -> BoxedStrategy<String> {
    let plausible = (lo..hi).prop_map(|v| v.to_string());
    if clean {
        return plausible.boxed();
    }
    prop_oneof![
        4 => plausible,
        1 => (0u32..3).prop_map(|v| v.to_string()),
        1 => prop::sample::select(vec![
            "10000001", "4000000000", "9223372036854775811", "18446744073709551615", "5000",
        ])
        .prop_map(str::to_string),
    ]
    .boxed()
}

fn arrivals(clean: bool) -> impl Strategy<Value = String> {
    let n = move |lo, hi| num(lo, hi, clean);
    prop_oneof![
        n(0.01, 1.0).prop_map(|v| format!("FastPtm(mu_s: {v})")),
        n(0.5, 50.0).prop_map(|v| format!("Poisson(rate_rps: {v})")),
        (n(0.5, 50.0), n(0.2, 4.0)).prop_map(|(r, c)| format!("Gamma(rate_rps: {r}, cv: {c})")),
        n(1.0, 500.0).prop_map(|v| format!("Fixed(gap_ms: {v})")),
    ]
}

fn workload_spec(clean: bool) -> impl Strategy<Value = String> {
    let popularity = prop_oneof![
        Just("Uniform".to_string()),
        num(0.3, 3.0, clean).prop_map(|s| format!("Zipf(s: {s})")),
    ];
    prop_oneof![
        4 => (count(1, 200, clean), arrivals(clean), count(1, 40, clean), popularity)
            .prop_map(|(n, a, t, p)| format!(
                "Generate(requests: {n}, arrivals: {a}, tenants: {t}, popularity: {p})"
            )),
        2 => (count(1, 12, clean), count(1, 27, clean), any::<bool>(), num(1.0, 500.0, clean))
            .prop_map(|(r, t, s, g)| format!(
                "Sequence(repeat: {r}, types: {t}, shuffle: {s}, gap_ms: {g})"
            )),
        1 => Just("Trace(\"t.csv\")".to_string()),
    ]
}

fn scenario_text() -> impl Strategy<Value = String> {
    any::<bool>().prop_flat_map(scenario_text_of)
}

fn scenario_text_of(clean: bool) -> impl Strategy<Value = String> {
    let mut names = vec![
        "\"fcfs-rr\"",
        "\"omls\"",
        "\"edf\"",
        "\"affinity\"",
        "\"sjf\"",
    ];
    if !clean {
        names.push("\"lifo\"");
    }
    let policies = prop::sample::subsequence(names, if clean { 1..=3 } else { 0..=3 });
    let n = move |lo, hi| num(lo, hi, clean);
    let c = move |lo, hi| count(lo, hi, clean);
    (
        (bom(), c(1, 5), c(1, 5), workload_spec(clean)),
        (c(1, 33), c(16, 257), n(100.0, 5000.0)),
        (policies, n(1.0, 20.0), n(0.0, 1000.0)),
        (
            prop::collection::vec(c(1, 5), 0..3),
            prop::collection::vec(n(0.5, 50.0), 0..3),
        ),
    )
        .prop_map(
            |((bom, inst, fb, w), (s, l, d), (pol, tick, thr), (sweep_inst, rates))| {
                let rates = if w.starts_with("Generate") {
                    rates.join(", ")
                } else {
                    String::new()
                };
                format!(
                    "{bom}Scenario(name: \"t\", profile: \"p.ron\", model: \"bert-base\", \
                     instances: {inst}, forward_batch: {fb}, workload: {w}, request: (samples: \
                     {s}, seq_len: {l}, deadline_ms: {d}), policies: [{}], policy_options: \
                     (omls: (tick_ms: {tick}, switch_threshold_ms: {thr})), sweep: \
                     Some((instances: [{}], offered_rps: [{rates}])))",
                    pol.join(", "),
                    sweep_inst.join(", "),
                )
            },
        )
}

fn check_scenario(text: &str) {
    let (result, peak) = peak_bytes(|| Scenario::from_ron(text, "t.ron"));
    assert!(
        peak <= alloc_bound(text.len()),
        "{peak} bytes for {}",
        text.len()
    );
    let s = match result {
        Err(e) => {
            let e = e.to_string();
            assert!(e.starts_with("t.ron"), "error does not name t.ron: {e}");
            return;
        }
        Ok(s) => s,
    };
    assert!(s.instances >= 1 && s.instances <= ptm_sim::limits::MAX_INSTANCES);
    // Generators were checked by the scenario: building allocates in proportion to the
    // requests, or refuses the random draw of an arrival beyond the bound.
    let (built, peak) = peak_bytes(|| s.load_workload(&NoFiles, 1));
    match built {
        Ok(w) => {
            assert!(peak <= alloc_bound(48 * w.requests.len()), "{peak} bytes");
            check_accepted(&w);
        }
        Err(e) => {
            assert!(
                peak <= alloc_bound(0) + 64 * MAX_REQUESTS.min(1 << 16),
                "{peak} bytes"
            );
            let e = e.to_string();
            assert!(
                e.contains("t.csv") || e.starts_with("workload.arrivals"),
                "a validated scenario failed to build: {e}"
            );
        }
    }
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn random_scenarios(text in scenario_text()) {
        check_scenario(&text);
    }

    #[test]
    fn mutated_scenarios(text in mutated(SHIPPED_SCENARIO.to_string())) {
        check_scenario(&text);
    }
}
