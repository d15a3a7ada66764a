//! `ptm trace import` on a real log: the Azure LLM inference trace (2023, CC-BY 4.0; an excerpt
//! of its first 600 requests is in `tests/data/`, see its README) with ISO-8601 timestamps.

use ptm_sim::workload::import::{import, Columns, Import};
use ptm_sim::workload::{trace, Popularity};

const AZURE: &str = include_str!("data/azure-llm-2023-code-excerpt.csv");

fn spec() -> Import {
    Import::new(Columns::parse("arrival=TIMESTAMP,seq_len=ContextTokens").unwrap())
}

#[test]
fn the_azure_trace_imports_with_its_timestamps() {
    let w = import(AZURE, "azure.csv", &spec()).unwrap();
    assert_eq!(w.requests.len(), 600);
    // 2023-11-16 18:17:03.9799600 → 18:17:04.0319600 → 18:17:04.0781490, and the last at
    // 18:21:25.6159590: exact nanoseconds from the first.
    let arrivals: Vec<u64> = w.requests.iter().map(|r| r.arrival_ns).collect();
    assert_eq!(&arrivals[..3], &[0, 52_000_000, 98_189_000]);
    assert_eq!(arrivals[599], 261_635_999_000);
    // Context lengths clipped to the model's 512 tokens (428 of the 600 are longer).
    assert_eq!(w.requests[0].seq_len, 512);
    assert_eq!(w.requests[2].seq_len, 110);
    assert_eq!(w.requests.iter().filter(|r| r.seq_len == 512).count(), 428);
    // No tenant column: 100 Zipf(1.1) tenants drawn with the seed; the most popular is drawn
    // most, and the draw is deterministic.
    assert_eq!(w.tenants.len(), 100);
    let mut counts = vec![0; 100];
    for r in &w.requests {
        counts[r.tenant as usize] += 1;
    }
    assert!(counts[0] > counts[10] && counts[0] > 60, "{counts:?}");
    assert_eq!(w, import(AZURE, "azure.csv", &spec()).unwrap());
}

#[test]
fn speedup_and_uniform_tenants_and_our_format_round_trip() {
    let mut s = spec();
    s.speedup = 10.0;
    s.popularity = Popularity::Uniform;
    s.tenants = 4;
    s.seed = 7;
    let w = import(AZURE, "azure.csv", &s).unwrap();
    assert_eq!(w.requests[599].arrival_ns, 26_163_599_900);
    assert_eq!(w.tenants.len(), 4);
    // Written in our CSV format, it reads back to the same workload.
    let csv = trace::write_csv(&w, &s.model);
    let back = trace::parse_csv(&csv, "t.csv", &Default::default(), &s.model).unwrap();
    assert_eq!(back.requests, w.requests);
}

#[test]
fn a_bad_timestamp_names_its_line_and_column() {
    let text = AZURE.replacen("2023-11-16 18:17:04.0319600", "18:17 yesterday", 1);
    let err = import(&text, "azure.csv", &spec()).unwrap_err().to_string();
    assert!(
        err.starts_with("azure.csv:3:") && err.contains("TIMESTAMP") && err.contains("ISO-8601"),
        "{err}"
    );
    let err = import(
        AZURE,
        "azure.csv",
        &Import::new(Columns::parse("arrival=Time").unwrap()),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("\"Time\"") && err.contains("TIMESTAMP"),
        "{err}"
    );
}
