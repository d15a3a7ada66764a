//! Our trace format, for users' real logs: CSV with a header, or JSON Lines.
//!
//! Fields (CSV columns or JSON keys):
//!
//! | field | required | meaning |
//! | --- | --- | --- |
//! | `arrival_ms` | yes | arrival time, milliseconds from the trace start (decimals allowed) |
//! | `tenant` | yes | the tenant's name (any string) |
//! | `samples` | yes | samples in the request (≥ 1) |
//! | `seq_len` | yes | tokens per sample (≥ 1) |
//! | `deadline_ms` | no | deadline after arrival; empty or absent = the scenario default |
//! | `model` | no | the profile model this tenant is a fine-tune of; default = the scenario's |
//!
//! Rows need not be sorted: requests are ordered by arrival, ties in file order. Tenants are
//! ordered naturally by name (`t2` before `t10`). A tenant given two different models is refused.
//! Export writes arrivals with six decimals, so a trace round-trips to the nanosecond.
//!
//! Bounds ([`crate::limits`]): at most 10,000,000 rows and 1,000,000 tenants; `samples` and
//! `seq_len` at most 1,000,000; `arrival_ms` and `deadline_ms` at most 10 years. A row beyond
//! them is refused by its line. A leading UTF-8 byte-order mark is skipped.

use super::{natural_cmp, Request, RequestDefaults, Tenant, Workload};
use crate::error::{Error, Result};
use crate::limits::{self, MAX_REQUESTS, MAX_SAMPLES, MAX_SEQ_LEN, MAX_TENANTS};
use crate::time::format_ms_exact;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One row of a trace, as read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Row {
    /// Arrival, milliseconds.
    pub arrival_ms: f64,
    /// Tenant name.
    pub tenant: String,
    /// Samples.
    pub samples: u32,
    /// Tokens per sample.
    pub seq_len: u32,
    /// Deadline after arrival, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<f64>,
    /// Profile model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// Parses a CSV trace.
pub fn parse_csv(
    text: &str,
    name: &str,
    defaults: &RequestDefaults,
    model: &str,
) -> Result<Workload> {
    let text = super::strip_bom(text);
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = reader.headers().map_err(|e| csv_error(name, &e))?.clone();
    for required in ["arrival_ms", "tenant", "samples", "seq_len"] {
        if !headers.iter().any(|h| h == required) {
            return Err(Error::Parse {
                path: name.to_string(),
                line: 1,
                column: 0,
                message: format!(
                    "header lacks column {required:?}: expected arrival_ms,tenant,samples,seq_len[,deadline_ms][,model], found {:?}",
                    headers.iter().collect::<Vec<_>>().join(",")
                ),
            });
        }
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| csv_error(name, &e))?;
        let line = record.position().map_or(0, |p| p.line() as usize);
        check_rows(name, line, rows.len())?;
        let row: Row = record
            .deserialize(Some(&headers))
            .map_err(|e| Error::Parse {
                path: name.into(),
                line,
                column: 0,
                message: e.to_string(),
            })?;
        rows.push((line, row));
    }
    from_rows(rows, name, defaults, model)
}

/// Parses a JSON Lines trace (one JSON object per line; blank lines are skipped).
pub fn parse_jsonl(
    text: &str,
    name: &str,
    defaults: &RequestDefaults,
    model: &str,
) -> Result<Workload> {
    let mut rows = Vec::new();
    for (i, line) in super::strip_bom(text).lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        check_rows(name, i + 1, rows.len())?;
        let row: Row = serde_json::from_str(line).map_err(|e| Error::Parse {
            path: name.to_string(),
            line: i + 1,
            column: e.column(),
            message: crate::error::json_message(&e),
        })?;
        rows.push((i + 1, row));
    }
    from_rows(rows, name, defaults, model)
}

/// Refuses the row on `line` when `read` rows came before it and the workload is full.
fn check_rows(name: &str, line: usize, read: usize) -> Result<()> {
    if read >= MAX_REQUESTS {
        return Err(Error::Parse {
            path: name.to_string(),
            line,
            column: 0,
            message: format!("more than {MAX_REQUESTS} requests, the most a workload may have"),
        });
    }
    Ok(())
}

fn csv_error(name: &str, e: &csv::Error) -> Error {
    let line = e.position().map_or(0, |p| p.line() as usize);
    Error::Parse {
        path: name.to_string(),
        line,
        column: 0,
        message: e.to_string(),
    }
}

fn from_rows(
    rows: Vec<(usize, Row)>,
    name: &str,
    defaults: &RequestDefaults,
    model: &str,
) -> Result<Workload> {
    defaults.validate(name)?;
    if rows.is_empty() {
        return Err(Error::invalid(name, "the trace has no requests"));
    }
    let bad = |line: usize, message: String| Error::Parse {
        path: name.into(),
        line,
        column: 0,
        message,
    };
    // Tenant name → (model, first line).
    let mut tenant_models: BTreeMap<&str, (&str, usize)> = BTreeMap::new();
    // Per row: (arrival, deadline) in nanoseconds.
    let mut times = Vec::with_capacity(rows.len());
    for (line, row) in &rows {
        let arrival_ns = limits::checked_ms(row.arrival_ms).ok_or_else(|| {
            bad(
                *line,
                format!("arrival_ms {}", limits::time_message(row.arrival_ms, "ms")),
            )
        })?;
        if row.tenant.is_empty() {
            return Err(bad(*line, "tenant is empty: expected a name".into()));
        }
        if !(1..=MAX_SAMPLES).contains(&row.samples) || !(1..=MAX_SEQ_LEN).contains(&row.seq_len) {
            return Err(bad(
                *line,
                format!(
                    "samples {} and seq_len {}: expected 1 to {MAX_SAMPLES} and 1 to {MAX_SEQ_LEN}",
                    row.samples, row.seq_len
                ),
            ));
        }
        let deadline_ns = match row.deadline_ms {
            None => defaults.deadline_ns(),
            Some(d) if d > 0.0 => limits::checked_ms(d).ok_or_else(|| {
                bad(
                    *line,
                    format!("deadline_ms {}", limits::time_message(d, "ms")),
                )
            })?,
            Some(d) => {
                return Err(bad(
                    *line,
                    format!("deadline_ms {d}: expected a positive number"),
                ))
            }
        };
        times.push((arrival_ns, deadline_ns));
        let m = row.model.as_deref().unwrap_or(model);
        match tenant_models.get(row.tenant.as_str()) {
            Some((other, first)) if *other != m => {
                return Err(bad(
                    *line,
                    format!(
                        "tenant {:?} is given model {m:?} here but {other:?} on line {first}",
                        row.tenant
                    ),
                ))
            }
            Some(_) => {}
            None if tenant_models.len() >= MAX_TENANTS as usize => {
                return Err(bad(
                    *line,
                    format!(
                    "tenant {:?}: more than {MAX_TENANTS} tenants, the most a workload may have",
                    row.tenant
                ),
                ))
            }
            None => {
                tenant_models.insert(&row.tenant, (m, *line));
            }
        }
    }
    let mut names: Vec<&str> = tenant_models.keys().copied().collect();
    names.sort_by(|a, b| natural_cmp(a, b));
    let index: BTreeMap<&str, u32> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (*n, i as u32))
        .collect();
    let tenants = names
        .iter()
        .map(|n| Tenant {
            name: n.to_string(),
            model: tenant_models[n].0.to_string(),
        })
        .collect();
    let mut requests: Vec<Request> = rows
        .iter()
        .zip(times)
        .map(|((_, row), (arrival_ns, deadline_ns))| Request {
            arrival_ns,
            tenant: index[row.tenant.as_str()],
            samples: row.samples,
            seq_len: row.seq_len,
            deadline_ns,
        })
        .collect();
    requests.sort_by_key(|r| r.arrival_ns); // stable: ties keep file order
    Ok(Workload { tenants, requests })
}

/// Writes a workload as CSV. Every field is written, so the file stands on its own; the `model`
/// column appears only when some tenant's model differs from `model`.
pub fn write_csv(workload: &Workload, model: &str) -> String {
    let any_model = workload.tenants.iter().any(|t| t.model != model);
    let mut w = csv::WriterBuilder::new().from_writer(Vec::new());
    let mut header = vec!["arrival_ms", "tenant", "samples", "seq_len", "deadline_ms"];
    if any_model {
        header.push("model");
    }
    // Writing to a Vec cannot fail.
    w.write_record(&header).expect("write to memory");
    for r in &workload.requests {
        let t = &workload.tenants[r.tenant as usize];
        let mut fields = vec![
            format_ms_exact(r.arrival_ns),
            t.name.clone(),
            r.samples.to_string(),
            r.seq_len.to_string(),
            format_ms_exact(r.deadline_ns),
        ];
        if any_model {
            fields.push(t.model.clone());
        }
        w.write_record(&fields).expect("write to memory");
    }
    String::from_utf8(w.into_inner().expect("flush to memory")).expect("utf-8 in, utf-8 out")
}

/// Writes a workload as JSON Lines, one request per line, keys as in the CSV header.
pub fn write_jsonl(workload: &Workload, model: &str) -> String {
    let mut out = String::new();
    for r in &workload.requests {
        let t = &workload.tenants[r.tenant as usize];
        let model_field = if t.model != model {
            format!(",\"model\":{}", serde_json::Value::from(t.model.as_str()))
        } else {
            String::new()
        };
        out.push_str(&format!(
            "{{\"arrival_ms\":{},\"tenant\":{},\"samples\":{},\"seq_len\":{},\"deadline_ms\":{}{model_field}}}\n",
            format_ms_exact(r.arrival_ns),
            serde_json::Value::from(t.name.as_str()),
            r.samples,
            r.seq_len,
            format_ms_exact(r.deadline_ns),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: &str = "arrival_ms,tenant,samples,seq_len,deadline_ms\n\
                       10.5,t10,16,128,\n\
                       0,t2,8,64,500\n\
                       10.5,t2,1,32,\n";

    #[test]
    fn csv_is_sorted_by_arrival_and_tenants_naturally() {
        let w = parse_csv(CSV, "x.csv", &RequestDefaults::default(), "m").unwrap();
        let names: Vec<_> = w.tenants.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["t2", "t10"]);
        assert_eq!(w.requests[0].arrival_ns, 0);
        assert_eq!(w.requests[0].deadline_ns, 500_000_000);
        assert_eq!(w.requests[1].tenant, 1, "ties keep file order");
        assert_eq!(w.requests[2].samples, 1);
        assert_eq!(w.requests[1].deadline_ns, 3_000_000_000);
    }

    #[test]
    fn csv_and_jsonl_round_trip() {
        let w = parse_csv(CSV, "x.csv", &RequestDefaults::default(), "m").unwrap();
        let csv = write_csv(&w, "m");
        assert_eq!(
            parse_csv(&csv, "y.csv", &RequestDefaults::default(), "m").unwrap(),
            w
        );
        let jsonl = write_jsonl(&w, "m");
        assert_eq!(
            parse_jsonl(&jsonl, "y.jsonl", &RequestDefaults::default(), "m").unwrap(),
            w
        );
    }

    #[test]
    fn bad_rows_are_named_by_line() {
        let text = "arrival_ms,tenant,samples,seq_len\n1,a,16,128\n2,b,x,128\n";
        let err = parse_csv(text, "x.csv", &RequestDefaults::default(), "m")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("x.csv:3:"), "{err}");
        let text = "{\"arrival_ms\": 1, \"tenant\": \"a\", \"samples\": 1, \"seq_len\": 1}\n\
                    {\"arrival_ms\": -1, \"tenant\": \"a\", \"samples\": 1, \"seq_len\": 1}\n";
        let err = parse_jsonl(text, "x.jsonl", &RequestDefaults::default(), "m")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("x.jsonl:2:") && err.contains("arrival_ms -1"),
            "{err}"
        );
        let err = parse_csv(
            "arrival_ms,tenant\n1,a\n",
            "x.csv",
            &RequestDefaults::default(),
            "m",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("lacks column \"samples\""), "{err}");
    }

    #[test]
    fn a_tenant_with_two_models_is_refused() {
        let text = "arrival_ms,tenant,samples,seq_len,model\n1,a,1,1,x\n2,a,1,1,y\n";
        let err = parse_csv(text, "x.csv", &RequestDefaults::default(), "m")
            .unwrap_err()
            .to_string();
        assert!(err.contains("x.csv:3:") && err.contains("line 2"), "{err}");
    }
}
