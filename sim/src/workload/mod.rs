//! Workloads: the requests a run replays, and where they come from.
//!
//! A [`Workload`] is a list of [`Request`]s sorted by arrival time (ties keep file order; a
//! request's id is its index), plus the tenant table. Three sources build one:
//! - [`fastptm`]: FastPTM's trace files, `[[type_letter, gap_s], …]`;
//! - [`trace`]: our CSV / JSONL format for users' real logs (import and export);
//! - [`generate`]: seeded generators (FastPTM's, Poisson, Gamma bursts, fixed sequences) with
//!   uniform or Zipf tenant popularity.
//!
//! Every source refuses what [`crate::limits`] bounds (requests, tenants, samples, tokens,
//! arrival times, deadlines), naming the file and line or the field, so a workload that builds
//! can always be simulated.

pub mod fastptm;
pub mod generate;
pub mod import;
pub mod trace;

use crate::error::{Error, Result};
use crate::limits::{self, MAX_REQUESTS, MAX_SAMPLES, MAX_SEQ_LEN};
use crate::time::{ms_to_ns, Nanos};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub use generate::{Arrivals, Popularity};

/// Index of a tenant (one fine-tuned model) in [`Workload::tenants`].
pub type TenantId = u32;
/// Index of a request in [`Workload::requests`].
pub type RequestId = u32;

/// One inference job for one tenant's model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// When it arrives.
    pub arrival_ns: Nanos,
    /// Whose model it needs.
    pub tenant: TenantId,
    /// Samples (sequences) to run.
    pub samples: u32,
    /// Tokens per sample (padded).
    pub seq_len: u32,
    /// Deadline relative to arrival: overtime when the response time exceeds it.
    pub deadline_ns: Nanos,
}

impl Request {
    /// Absolute deadline.
    pub fn due_ns(&self) -> Nanos {
        self.arrival_ns.saturating_add(self.deadline_ns)
    }
}

/// One tenant: a fine-tuned variant of a base model described by the profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// Its name in traces and reports.
    pub name: String,
    /// The profile model (architecture and dtype) it is a fine-tune of.
    pub model: String,
}

/// The requests of a run and the tenants they address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// Tenants in their canonical order (letters, then natural order of names).
    pub tenants: Vec<Tenant>,
    /// Requests sorted by arrival; the id of a request is its index.
    pub requests: Vec<Request>,
}

impl Workload {
    /// Checks the invariants every source must uphold.
    pub fn assert_valid(&self) {
        assert!(self.tenants.len() <= TenantId::MAX as usize);
        assert!(self.requests.len() <= RequestId::MAX as usize);
        for pair in self.requests.windows(2) {
            assert!(
                pair[0].arrival_ns <= pair[1].arrival_ns,
                "requests must be sorted by arrival"
            );
        }
        for r in &self.requests {
            assert!(
                (r.tenant as usize) < self.tenants.len(),
                "request for unknown tenant"
            );
            assert!(r.samples > 0 && r.seq_len > 0, "empty request");
        }
    }

    /// The distinct models the tenants use, sorted.
    pub fn models(&self) -> Vec<String> {
        let set: std::collections::BTreeSet<&str> =
            self.tenants.iter().map(|t| t.model.as_str()).collect();
        set.into_iter().map(str::to_string).collect()
    }
}

/// What a request is when its source does not say: FastPTM's 16 samples × 128 tokens, batch-1
/// forwards and a 3 s deadline.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RequestDefaults {
    /// Samples per request.
    pub samples: u32,
    /// Tokens per sample.
    pub seq_len: u32,
    /// Deadline after arrival, in milliseconds.
    pub deadline_ms: f64,
}

impl Default for RequestDefaults {
    fn default() -> Self {
        RequestDefaults {
            samples: 16,
            seq_len: 128,
            deadline_ms: 3000.0,
        }
    }
}

impl RequestDefaults {
    /// The deadline in nanoseconds.
    pub fn deadline_ns(&self) -> Nanos {
        ms_to_ns(self.deadline_ms)
    }

    /// Refuses zero-sized or oversized requests and deadlines that are not positive or exceed
    /// the bounds of [`crate::limits`].
    pub fn validate(&self, context: &str) -> Result<()> {
        if !(1..=MAX_SAMPLES).contains(&self.samples) {
            return Err(Error::invalid(
                context,
                format!(
                    "request.samples {}: expected 1 to {MAX_SAMPLES}",
                    self.samples
                ),
            ));
        }
        if !(1..=MAX_SEQ_LEN).contains(&self.seq_len) {
            return Err(Error::invalid(
                context,
                format!(
                    "request.seq_len {}: expected 1 to {MAX_SEQ_LEN}",
                    self.seq_len
                ),
            ));
        }
        if !(self.deadline_ms > 0.0 && self.deadline_ms <= limits::MAX_TIME_MS) {
            return Err(Error::invalid(
                context,
                format!(
                    "request.deadline_ms must be a positive number of at most 10 years ({} ms), got {}",
                    limits::MAX_TIME_MS,
                    self.deadline_ms
                ),
            ));
        }
        Ok(())
    }
}

/// Where a workload comes from, as a scenario file writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum WorkloadSpec {
    /// A trace file: FastPTM's JSON or ours (CSV / JSONL), told apart by content. The path is
    /// relative to the scenario file.
    Trace(PathBuf),
    /// A seeded generator.
    Generate {
        /// How many requests.
        requests: usize,
        /// The arrival process.
        arrivals: Arrivals,
        /// How many tenants (≤ 26 are named by letters A…, more are named t0, t1, …).
        tenants: u32,
        /// How requests spread over tenants.
        #[serde(default)]
        popularity: Popularity,
    },
    /// FastPTM's fixed sequences: the first `types` letters repeated `repeat` times, each group
    /// optionally shuffled, one request every `gap_ms`.
    Sequence {
        /// Number of groups.
        repeat: usize,
        /// Letters per group (1–26).
        types: u32,
        /// Shuffle each group.
        #[serde(default)]
        shuffle: bool,
        /// Gap between consecutive requests, milliseconds.
        gap_ms: f64,
    },
}

impl WorkloadSpec {
    /// Checks a generator's parameters without generating (traces are checked when read).
    pub fn validate(&self) -> Result<()> {
        match self {
            WorkloadSpec::Trace(_) => Ok(()),
            WorkloadSpec::Generate {
                requests,
                arrivals,
                tenants,
                popularity,
            } => generate::check_generate(*requests, arrivals, *tenants, popularity).map(|_| ()),
            WorkloadSpec::Sequence {
                repeat,
                types,
                gap_ms,
                ..
            } => generate::check_sequence(*repeat, *types, *gap_ms).map(|_| ()),
        }
    }
}

/// Reads the files a workload names. The simulator never touches the file system directly, so
/// that scenarios can be embedded in a binary.
pub trait FileSource: Send + Sync {
    /// The file's text and the name to use for it in messages.
    fn read(&self, path: &Path) -> Result<(String, String)>;
}

/// Reads files from disk, relative to a base directory.
#[derive(Debug, Clone)]
pub struct DiskFiles {
    /// Paths are relative to this directory.
    pub base: PathBuf,
}

impl FileSource for DiskFiles {
    /// Reads the file, refusing one larger than [`limits::MAX_FILE_BYTES`] without reading
    /// more than that (a device such as `/dev/zero` included).
    fn read(&self, path: &Path) -> Result<(String, String)> {
        let full = self.base.join(path);
        let text = read_bounded(&full, limits::MAX_FILE_BYTES)?;
        Ok((text, full.display().to_string()))
    }
}

/// The UTF-8 text of the file at `path`, refused (naming it and `max_bytes`) when it holds more
/// than `max_bytes` bytes; never reads more than `max_bytes + 1`.
pub fn read_bounded(path: &Path, max_bytes: u64) -> Result<String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let too_big = || {
        Error::invalid(
            path.display().to_string(),
            format!(
                "more than {max_bytes} bytes: files of at most {max_bytes} bytes (1 GiB) are read"
            ),
        )
    };
    // A regular file says its size; a device or pipe is read up to the bound.
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    if len > max_bytes {
        return Err(too_big());
    }
    let mut bytes = Vec::new();
    file.take(max_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > max_bytes {
        return Err(Error::invalid(
            path.display().to_string(),
            format!(
                "more than {max_bytes} bytes: files of at most {max_bytes} bytes (1 GiB) are read"
            ),
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        Error::invalid(
            path.display().to_string(),
            format!(
                "not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

/// A source with no files (for workloads that are generated).
#[derive(Debug, Clone, Copy)]
pub struct NoFiles;

impl FileSource for NoFiles {
    fn read(&self, path: &Path) -> Result<(String, String)> {
        Err(Error::invalid(
            path.display().to_string(),
            "no files are available here",
        ))
    }
}

/// Builds the workload a spec describes. `model` is the profile model every tenant uses unless
/// its trace says otherwise; `seed` drives the generators.
pub fn build(
    spec: &WorkloadSpec,
    defaults: &RequestDefaults,
    model: &str,
    seed: u64,
    files: &dyn FileSource,
) -> Result<Workload> {
    let workload = match spec {
        WorkloadSpec::Trace(path) => {
            let (text, name) = files.read(path)?;
            parse_trace(&text, &name, defaults, model)?
        }
        WorkloadSpec::Generate {
            requests,
            arrivals,
            tenants,
            popularity,
        } => generate::generate(
            *requests, arrivals, *tenants, popularity, defaults, model, seed,
        )?,
        WorkloadSpec::Sequence {
            repeat,
            types,
            shuffle,
            gap_ms,
        } => generate::sequence(*repeat, *types, *shuffle, *gap_ms, defaults, model, seed)?,
    };
    workload.assert_valid();
    Ok(workload)
}

/// Parses a trace, telling FastPTM's JSON (`[` first) from our JSONL (`{` first) and CSV. A
/// leading UTF-8 byte-order mark is skipped.
pub fn parse_trace(
    text: &str,
    name: &str,
    defaults: &RequestDefaults,
    model: &str,
) -> Result<Workload> {
    let text = strip_bom(text);
    match text.trim_start().chars().next() {
        Some('[') => fastptm::parse(text, name, defaults, model),
        Some('{') => trace::parse_jsonl(text, name, defaults, model),
        Some(_) => trace::parse_csv(text, name, defaults, model),
        None => Err(Error::Parse {
            path: name.to_string(),
            line: 1,
            column: 0,
            message: "the trace is empty: expected FastPTM JSON, JSONL or CSV".into(),
        }),
    }
}

/// `text` without a leading UTF-8 byte-order mark (editors on Windows write one).
pub fn strip_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// Refuses more than [`MAX_REQUESTS`] requests; `context` names the file or field.
pub(crate) fn check_request_count(context: &str, requests: usize) -> Result<()> {
    if requests > MAX_REQUESTS {
        return Err(Error::invalid(
            context,
            limits::too_many("requests", requests, MAX_REQUESTS),
        ));
    }
    Ok(())
}

/// The name of tenant `index` out of `count`: letters A–Z when there are at most 26, else
/// `t0`, `t1`, …
pub fn tenant_name(index: u32, count: u32) -> String {
    if count <= 26 {
        char::from(b'A' + index as u8).to_string()
    } else {
        format!("t{index}")
    }
}

/// Tenants named for `count` generated types, all of `model`.
pub fn numbered_tenants(count: u32, model: &str) -> Vec<Tenant> {
    (0..count)
        .map(|i| Tenant {
            name: tenant_name(i, count),
            model: model.to_string(),
        })
        .collect()
}

/// Orders names the way people expect: digit runs compare as numbers (`t2` < `t10`).
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return std::cmp::Ordering::Equal,
            (None, Some(_)) => return std::cmp::Ordering::Less,
            (Some(_), None) => return std::cmp::Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let da = a.iter().take_while(|c| c.is_ascii_digit()).count();
                let db = b.iter().take_while(|c| c.is_ascii_digit()).count();
                let (na, nb) = (trim_zeros(&a[..da]), trim_zeros(&b[..db]));
                let ord = na
                    .len()
                    .cmp(&nb.len())
                    .then_with(|| na.cmp(nb))
                    .then(da.cmp(&db));
                if ord != std::cmp::Ordering::Equal {
                    return ord;
                }
                a = &a[da..];
                b = &b[db..];
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                a = &a[1..];
                b = &b[1..];
            }
        }
    }
}

fn trim_zeros(digits: &[u8]) -> &[u8] {
    let n = digits.iter().take_while(|&&c| c == b'0').count();
    &digits[n..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order_compares_numbers() {
        let mut v = vec!["t10", "t2", "B", "A", "t1", "t01"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, vec!["A", "B", "t1", "t01", "t2", "t10"]);
    }

    #[test]
    fn tenant_names() {
        assert_eq!(tenant_name(0, 12), "A");
        assert_eq!(tenant_name(11, 12), "L");
        assert_eq!(tenant_name(11, 1000), "t11");
    }
}
