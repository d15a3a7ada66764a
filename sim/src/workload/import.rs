//! Importing real request logs: a CSV (with a header) or JSON Lines file whose columns are
//! named by a mapping, turned into a [`Workload`] (and, by `ptm trace import`, into our trace
//! format).
//!
//! - **Columns**: `--columns arrival=TIMESTAMP,seq_len=ContextTokens` maps our fields (`arrival`
//!   required; `tenant`, `samples`, `seq_len`, `deadline_ms`, `model` optional) to the log's
//!   column names (or JSON keys).
//! - **Timestamps**: ISO-8601 / RFC 3339 (`2023-11-16 18:17:03.9799600`, `…T…Z`, `…+01:00`;
//!   no offset means UTC, up to nine fractional digits) or epoch numbers in a chosen unit
//!   (seconds by default; decimals allowed). Arrivals are taken relative to the earliest one, then
//!   divided by `speedup` (2 = twice as fast). Rows need not be sorted; ties keep file order.
//! - **Tenants**: from the mapped column, or — when the log has none — drawn per request from a
//!   popularity law (uniform or Zipf over `count` tenants) with the seed's tenant-mix stream.
//! - **Shapes**: `seq_len` from its column, clipped to `max_seq_len` (a model's maximum), or a
//!   constant; `samples` and `deadline_ms` likewise.
//!
//! Every row's problem is reported with the file, the line and the column name.

use super::{natural_cmp, numbered_tenants, Popularity, Request, Tenant, Workload};
use crate::error::{Error, Result};
use crate::rng::{stream, Stream};
use crate::time::ms_to_ns;
use rand::Rng as _;
use rand_distr::{Distribution as _, Zipf};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Most rows an import reads.
pub const MAX_ROWS: usize = 50_000_000;
/// Most tenants a popularity law draws over.
pub const MAX_TENANTS: u32 = super::generate::MAX_TENANTS;

/// Which log column holds which of our fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Columns {
    /// Arrival timestamps (required).
    pub arrival: String,
    /// Tenant names.
    pub tenant: Option<String>,
    /// Samples per request.
    pub samples: Option<String>,
    /// Tokens per sample.
    pub seq_len: Option<String>,
    /// Deadlines after arrival, ms.
    pub deadline_ms: Option<String>,
    /// Profile models.
    pub model: Option<String>,
}

impl Columns {
    /// Parses `arrival=TIMESTAMP,seq_len=ContextTokens`.
    pub fn parse(text: &str) -> Result<Columns> {
        let mut c = Columns::default();
        let mut arrival = None;
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (ours, theirs) = part.split_once('=').ok_or_else(|| {
                Error::invalid("--columns", format!("expected FIELD=COLUMN, got {part:?}"))
            })?;
            let theirs = theirs.trim().to_string();
            let slot = match ours.trim() {
                "arrival" => &mut arrival,
                "tenant" => &mut c.tenant,
                "samples" => &mut c.samples,
                "seq_len" => &mut c.seq_len,
                "deadline_ms" => &mut c.deadline_ms,
                "model" => &mut c.model,
                other => {
                    return Err(Error::invalid(
                        "--columns",
                        format!(
                            "unknown field {other:?}; expected arrival, tenant, samples, seq_len, deadline_ms or model"
                        ),
                    ))
                }
            };
            *slot = Some(theirs);
        }
        c.arrival = arrival.ok_or_else(|| {
            Error::invalid(
                "--columns",
                "expected arrival=COLUMN (the column with the arrival timestamps)",
            )
        })?;
        Ok(c)
    }
}

/// The unit of numeric (epoch) timestamps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum EpochUnit {
    /// Seconds.
    #[default]
    S,
    /// Milliseconds.
    Ms,
    /// Microseconds.
    Us,
    /// Nanoseconds.
    Ns,
}

impl EpochUnit {
    fn ns(self) -> f64 {
        match self {
            EpochUnit::S => 1e9,
            EpochUnit::Ms => 1e6,
            EpochUnit::Us => 1e3,
            EpochUnit::Ns => 1.0,
        }
    }
}

/// How to import a log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Import {
    /// The column mapping.
    pub columns: Columns,
    /// Unit of numeric timestamps.
    pub epoch_unit: EpochUnit,
    /// Time compression: arrivals are divided by it (> 0).
    pub speedup: f64,
    /// Tenants drawn when the log has no tenant column: how many.
    pub tenants: u32,
    /// … and how popular each is.
    pub popularity: Popularity,
    /// Seed of the tenant draw.
    pub seed: u64,
    /// Samples per request when there is no samples column.
    pub samples: u32,
    /// Tokens per sample when there is no seq_len column.
    pub seq_len: u32,
    /// Longest sequence a model takes: longer ones are clipped to it.
    pub max_seq_len: u32,
    /// Deadline when there is no deadline column, ms.
    pub deadline_ms: f64,
    /// Profile model of every tenant when there is no model column.
    pub model: String,
}

impl Import {
    /// Defaults for `columns`: epoch seconds, no speed-up, 100 Zipf(1.1) tenants, seed 1, one
    /// sample of 128 tokens, clip at 512, a 3 s deadline, model `bert-base-fp16`.
    pub fn new(columns: Columns) -> Import {
        Import {
            columns,
            epoch_unit: EpochUnit::S,
            speedup: 1.0,
            tenants: 100,
            popularity: Popularity::Zipf { s: 1.1 },
            seed: 1,
            samples: 1,
            seq_len: 128,
            max_seq_len: 512,
            deadline_ms: 3000.0,
            model: "bert-base-fp16".into(),
        }
    }

    fn validate(&self) -> Result<()> {
        let bad = |field: &str, msg: String| Err(Error::invalid(format!("import: {field}"), msg));
        if !(self.speedup.is_finite() && self.speedup > 0.0) {
            return bad(
                "speedup",
                format!("expected a positive factor, got {}", self.speedup),
            );
        }
        if self.tenants == 0 || self.tenants > MAX_TENANTS {
            return bad(
                "tenants",
                format!("expected 1 to {MAX_TENANTS}, got {}", self.tenants),
            );
        }
        if self.samples == 0 || self.seq_len == 0 || self.max_seq_len == 0 {
            return bad("samples/seq_len", "expected ≥ 1".into());
        }
        if !(self.deadline_ms.is_finite() && self.deadline_ms > 0.0) {
            return bad(
                "deadline_ms",
                format!("expected a positive number, got {}", self.deadline_ms),
            );
        }
        Ok(())
    }
}

/// Parses an ISO-8601 / RFC 3339 timestamp to nanoseconds since the Unix epoch.
pub fn parse_iso8601_ns(text: &str) -> Option<i128> {
    let t = text.trim();
    // A trailing ±hh:mm offset (after the seconds) is applied here; humantime reads the rest
    // as UTC.
    let (body, offset_s) = match t.get(19..).and_then(|rest| rest.rfind(['+', '-'])) {
        Some(i) if t.len() - (19 + i) == 6 && t.as_bytes()[t.len() - 3] == b':' => {
            let at = 19 + i;
            let sign: i64 = if t.as_bytes()[at] == b'-' { -1 } else { 1 };
            let h: i64 = t.get(at + 1..at + 3)?.parse().ok()?;
            let m: i64 = t.get(at + 4..at + 6)?.parse().ok()?;
            (&t[..at], sign * (h * 3600 + m * 60))
        }
        _ => (t, 0),
    };
    let st = humantime::parse_rfc3339_weak(body).ok()?;
    let d = st.duration_since(std::time::UNIX_EPOCH).ok()?;
    Some(d.as_nanos() as i128 - i128::from(offset_s) * 1_000_000_000)
}

/// One field of a row, as text.
type Fields = BTreeMap<String, String>;

/// Reads the rows of a CSV (header first) or JSON Lines log: (line, fields).
fn rows(text: &str, name: &str) -> Result<Vec<(usize, Fields)>> {
    let mut out = Vec::new();
    let too_many = || {
        Error::invalid(
            name,
            format!("more than {MAX_ROWS} rows: split the log or raise the bound"),
        )
    };
    if text.trim_start().starts_with('{') {
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(line)
                .map_err(|e| Error::Parse {
                    path: name.into(),
                    line: i + 1,
                    column: e.column(),
                    message: format!("expected a JSON object per line: {e}"),
                })?;
            let fields = v
                .into_iter()
                .map(|(k, v)| {
                    let s = match v {
                        serde_json::Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (k, s)
                })
                .collect();
            out.push((i + 1, fields));
            if out.len() > MAX_ROWS {
                return Err(too_many());
            }
        }
        return Ok(out);
    }
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| Error::invalid(name, format!("cannot read the CSV header: {e}")))?
        .clone();
    for record in reader.records() {
        // Lines are counted from the record's byte offset, including the byte there: with CRLF
        // line ends the reader places a record at the '\n' of the line before it.
        let line_at = |byte: u64| {
            let end = (byte as usize + 1).min(text.len());
            text.as_bytes()[..end]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1
        };
        let record = record.map_err(|e| Error::Parse {
            path: name.into(),
            line: e.position().map_or(0, |p| line_at(p.byte())),
            column: 0,
            message: e.to_string(),
        })?;
        let line = record.position().map_or(0, |p| line_at(p.byte()));
        let fields = headers
            .iter()
            .zip(record.iter())
            .map(|(h, v)| (h.to_string(), v.to_string()))
            .collect();
        out.push((line, fields));
        if out.len() > MAX_ROWS {
            return Err(too_many());
        }
    }
    Ok(out)
}

/// Imports the log `text` (named `name` in errors) as `spec` says.
pub fn import(text: &str, name: &str, spec: &Import) -> Result<Workload> {
    spec.validate()?;
    let rows = rows(text, name)?;
    if rows.is_empty() {
        return Err(Error::invalid(name, "the log has no rows"));
    }
    let c = &spec.columns;
    let at = |line: usize, column: &str, message: String| Error::Parse {
        path: name.into(),
        line,
        column: 0,
        message: format!("column {column:?}: {message}"),
    };
    let get = |line: usize, fields: &Fields, column: &str| -> Result<String> {
        fields.get(column).cloned().ok_or_else(|| {
            let known: Vec<&str> = fields.keys().map(String::as_str).collect();
            at(
                line,
                column,
                format!("missing; the row has {}", known.join(", ")),
            )
        })
    };
    let number = |line: usize, column: &str, v: &str| -> Result<f64> {
        v.trim()
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite() && *x >= 0.0)
            .ok_or_else(|| at(line, column, format!("expected a number ≥ 0, got {v:?}")))
    };
    let count = |line: usize, column: &str, v: &str| -> Result<u32> {
        let x = number(line, column, v)?;
        if x.fract() != 0.0 || x > f64::from(u32::MAX) {
            return Err(at(
                line,
                column,
                format!("expected a whole count, got {v:?}"),
            ));
        }
        Ok(x as u32)
    };
    // Timestamps first: numbers in the epoch unit, else ISO-8601.
    let mut times: Vec<i128> = Vec::with_capacity(rows.len());
    for (line, f) in &rows {
        let v = get(*line, f, &c.arrival)?;
        let t = match v.trim().parse::<f64>() {
            Ok(x) if x.is_finite() => (x * spec.epoch_unit.ns()).round() as i128,
            _ => parse_iso8601_ns(&v).ok_or_else(|| {
                at(
                    *line,
                    &c.arrival,
                    format!(
                        "expected an ISO-8601 timestamp (2023-11-16 18:17:03.97, …T…Z, …+01:00) or an epoch number, got {v:?}"
                    ),
                )
            })?,
        };
        times.push(t);
    }
    let t0 = *times.iter().min().expect("at least one row");
    let mut tenant_names: Vec<(String, String)> = Vec::new(); // (name, model)
    let mut requests: Vec<(i128, usize, Request)> = Vec::with_capacity(rows.len());
    let mut tenant_of: BTreeMap<String, u32> = BTreeMap::new();
    for (k, ((line, f), t)) in rows.iter().zip(&times).enumerate() {
        let arrival_ns = ((t - t0) as f64 / spec.speedup).round();
        if arrival_ns >= (u64::MAX / 2) as f64 {
            return Err(at(
                *line,
                &c.arrival,
                "arrival past the range of time".into(),
            ));
        }
        let seq_len = match &c.seq_len {
            Some(col) => count(*line, col, &get(*line, f, col)?)?.clamp(1, spec.max_seq_len),
            None => spec.seq_len.min(spec.max_seq_len),
        };
        let samples = match &c.samples {
            Some(col) => count(*line, col, &get(*line, f, col)?)?.max(1),
            None => spec.samples,
        };
        let deadline_ns = match &c.deadline_ms {
            Some(col) => {
                let ms = number(*line, col, &get(*line, f, col)?)?;
                if ms <= 0.0 {
                    return Err(at(*line, col, "expected a positive deadline".into()));
                }
                ms_to_ns(ms)
            }
            None => ms_to_ns(spec.deadline_ms),
        };
        let tenant = match &c.tenant {
            Some(col) => {
                let name = get(*line, f, col)?;
                let model = match &c.model {
                    Some(mc) => get(*line, f, mc)?,
                    None => spec.model.clone(),
                };
                let next = tenant_of.len() as u32;
                let id = *tenant_of.entry(name.clone()).or_insert(next);
                if id == next {
                    tenant_names.push((name, model));
                } else if tenant_names[id as usize].1 != model {
                    return Err(at(
                        *line,
                        c.model.as_deref().unwrap_or("model"),
                        format!("tenant {name:?} has two models"),
                    ));
                }
                id
            }
            None => 0, // drawn below
        };
        requests.push((
            *t,
            k,
            Request {
                arrival_ns: arrival_ns as u64,
                tenant,
                samples,
                seq_len,
                deadline_ns,
            },
        ));
    }
    // Sort by arrival (stable: file order for ties).
    requests.sort_by_key(|(t, k, _)| (*t, *k));
    let mut requests: Vec<Request> = requests.into_iter().map(|(_, _, r)| r).collect();
    let tenants: Vec<Tenant> = if c.tenant.is_some() {
        // Natural order of names, as our trace format does.
        let mut order: Vec<u32> = (0..tenant_names.len() as u32).collect();
        order.sort_by(|&a, &b| {
            natural_cmp(&tenant_names[a as usize].0, &tenant_names[b as usize].0)
        });
        let mut rank = vec![0u32; order.len()];
        for (new, &old) in order.iter().enumerate() {
            rank[old as usize] = new as u32;
        }
        for r in &mut requests {
            r.tenant = rank[r.tenant as usize];
        }
        order
            .iter()
            .map(|&i| Tenant {
                name: tenant_names[i as usize].0.clone(),
                model: tenant_names[i as usize].1.clone(),
            })
            .collect()
    } else {
        draw_tenants(&mut requests, spec)?;
        numbered_tenants(spec.tenants, &spec.model)
    };
    let w = Workload { tenants, requests };
    w.assert_valid();
    Ok(w)
}

/// Draws each request's tenant (in arrival order) from the popularity law.
fn draw_tenants(requests: &mut [Request], spec: &Import) -> Result<()> {
    let mut rng = stream(spec.seed, Stream::Mix);
    let n = spec.tenants;
    let zipf = match spec.popularity {
        Popularity::Uniform => None,
        Popularity::Zipf { s } => Some(Zipf::new(f64::from(n), s).map_err(|e| {
            Error::invalid(
                "import: popularity",
                format!("expected a positive exponent: {e}"),
            )
        })?),
    };
    for r in requests {
        r.tenant = match &zipf {
            None => rng.random_range(0..n),
            Some(z) => (z.sample(&mut rng) as u32).saturating_sub(1).min(n - 1),
        };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_in_every_form() {
        let base = parse_iso8601_ns("2023-11-16 18:17:03.9799600").unwrap();
        assert_eq!(
            parse_iso8601_ns("2023-11-16 18:17:04.0319600").unwrap() - base,
            52_000_000
        );
        assert_eq!(parse_iso8601_ns("2023-11-16T18:17:03.97996Z"), Some(base));
        assert_eq!(
            parse_iso8601_ns("2023-11-16T19:17:03.97996+01:00"),
            Some(base)
        );
        assert_eq!(
            parse_iso8601_ns("2023-11-16T13:17:03.97996-05:00"),
            Some(base)
        );
        assert_eq!(parse_iso8601_ns("yesterday"), None);
        assert_eq!(parse_iso8601_ns("2023-13-16 18:17:03"), None);
    }

    #[test]
    fn columns_map_and_refuse_unknown_fields() {
        let c = Columns::parse("arrival=TIMESTAMP, seq_len=ContextTokens").unwrap();
        assert_eq!(c.arrival, "TIMESTAMP");
        assert_eq!(c.seq_len.as_deref(), Some("ContextTokens"));
        assert!(Columns::parse("seq_len=X").is_err());
        assert!(Columns::parse("arrival=T,colour=C").is_err());
        assert!(Columns::parse("arrival").is_err());
    }

    #[test]
    fn epoch_jsonl_with_tenants_and_speedup() {
        let text = "{\"t\": 1700000000.5, \"who\": \"b\", \"n\": 700}\n\
                    {\"t\": 1700000000.0, \"who\": \"a10\", \"n\": 3}\n\
                    {\"t\": 1700000001.0, \"who\": \"a2\", \"n\": 30}\n";
        let mut spec = Import::new(Columns::parse("arrival=t,tenant=who,seq_len=n").unwrap());
        spec.speedup = 2.0;
        let w = import(text, "log.jsonl", &spec).unwrap();
        let names: Vec<&str> = w.tenants.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, vec!["a2", "a10", "b"]);
        let got: Vec<(u64, &str, u32)> = w
            .requests
            .iter()
            .map(|r| (r.arrival_ns, names[r.tenant as usize], r.seq_len))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, "a10", 3),
                (250_000_000, "b", 512),
                (500_000_000, "a2", 30)
            ]
        );
        let err = import("{\"t\": \"soon\"}\n", "log.jsonl", &spec)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("log.jsonl:1:") && err.contains("\"t\""),
            "{err}"
        );
    }
}
