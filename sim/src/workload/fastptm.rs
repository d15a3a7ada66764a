//! FastPTM's workload files: a JSON array of `[type_letter, gap_seconds]`.
//!
//! The sender creates request i, submits it, then sleeps `gap_seconds`; so request i arrives at
//! the sum of the gaps before it and the last gap is never waited on. Letters are task types:
//! `A` is tenant 0. The tenants of a trace are the letters from `A` to the highest one used.
//! Every request gets the [`RequestDefaults`] shape (FastPTM: 16 samples × 128 tokens, 3 s).
//!
//! Malformed entries are refused with the entry's index and its line and column, and so are
//! gaps and arrivals beyond 10 years and more than [`MAX_REQUESTS`] entries
//! ([`crate::limits`]). A leading UTF-8 byte-order mark is skipped.

use super::{Request, RequestDefaults, Tenant, Workload};
use crate::error::{Error, Result};
use crate::limits::{self, MAX_REQUESTS};
use crate::time::{ns_to_secs, secs_to_ns, Nanos};
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use std::fmt::{self, Write as _};

/// One parsed entry: type index and arrival.
#[derive(Debug, Clone, Copy)]
struct Entry {
    letter: u8,
    arrival_ns: Nanos,
}

/// The whole array, validated entry by entry so that errors carry positions: at most
/// [`MAX_REQUESTS`] entries, every gap and arrival within [`limits::MAX_TIME_MS`].
struct Entries(Vec<Entry>);

impl<'de> de::Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct ArrayVisitor;
        impl<'de> Visitor<'de> for ArrayVisitor {
            type Value = Entries;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON array of [type_letter, gap_seconds] pairs")
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<Entries, A::Error> {
                let hint = seq.size_hint().unwrap_or(0).min(MAX_REQUESTS);
                let mut out = Vec::with_capacity(hint);
                let mut arrival_ns: Nanos = 0;
                loop {
                    let index = out.len();
                    let seed = EntrySeed { index, arrival_ns };
                    match seq.next_element_seed(seed)? {
                        Some((e, gap_ns)) if index < MAX_REQUESTS => {
                            out.push(e);
                            // Both are at most MAX_TIME: the sum cannot overflow.
                            arrival_ns = e.arrival_ns + gap_ns;
                        }
                        Some(_) => {
                            return Err(de::Error::custom(format!(
                                "entry {index}: more than {MAX_REQUESTS} requests, the most a workload may have"
                            )))
                        }
                        None => return Ok(Entries(out)),
                    }
                }
            }
        }
        d.deserialize_seq(ArrayVisitor)
    }
}

struct EntrySeed {
    index: usize,
    arrival_ns: Nanos,
}

impl<'de> de::DeserializeSeed<'de> for EntrySeed {
    /// The entry and its gap.
    type Value = (Entry, Nanos);
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for EntrySeed {
    type Value = (Entry, Nanos);
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "entry {}: a pair [type_letter, gap_seconds]", self.index)
    }
    fn visit_seq<A: SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> std::result::Result<Self::Value, A::Error> {
        let i = self.index;
        if self.arrival_ns > limits::MAX_TIME_NS {
            return Err(de::Error::custom(format!(
                "entry {i}: arrives at {} s (the sum of the gaps before it), after the bound of 10 years ({} s)",
                ns_to_secs(self.arrival_ns),
                limits::MAX_TIME_MS / 1e3
            )));
        }
        let letter: String = seq
            .next_element()
            .map_err(|e| de::Error::custom(format!("entry {i}: type letter: {e}")))?
            .ok_or_else(|| de::Error::custom(format!("entry {i}: missing type letter")))?;
        let bytes = letter.as_bytes();
        if bytes.len() != 1 || !bytes[0].is_ascii_uppercase() {
            return Err(de::Error::custom(format!(
                "entry {i}: unknown type letter {letter:?}: expected one uppercase letter A–Z"
            )));
        }
        let gap_s: f64 = seq
            .next_element()
            .map_err(|e| de::Error::custom(format!("entry {i}: gap seconds: {e}")))?
            .ok_or_else(|| de::Error::custom(format!("entry {i}: missing gap seconds")))?;
        if !(gap_s.is_finite() && gap_s >= 0.0 && gap_s * 1e3 <= limits::MAX_TIME_MS) {
            return Err(de::Error::custom(format!(
                "entry {i}: gap {}",
                limits::time_message(gap_s, "s")
            )));
        }
        if seq.next_element::<de::IgnoredAny>()?.is_some() {
            return Err(de::Error::custom(format!(
                "entry {i}: expected exactly two fields [type_letter, gap_seconds]"
            )));
        }
        let entry = Entry {
            letter: bytes[0] - b'A',
            arrival_ns: self.arrival_ns,
        };
        Ok((entry, secs_to_ns(gap_s)))
    }
}

/// Parses a FastPTM trace. `name` is used in error messages.
pub fn parse(text: &str, name: &str, defaults: &RequestDefaults, model: &str) -> Result<Workload> {
    defaults.validate(name)?;
    let text = super::strip_bom(text);
    let Entries(entries) = serde_json::from_str(text).map_err(|e| Error::from_json(name, &e))?;
    if entries.is_empty() {
        return Err(Error::invalid(name, "the trace has no requests"));
    }
    let types = entries
        .iter()
        .map(|e| e.letter)
        .max()
        .map_or(0, |m| m as u32 + 1);
    let requests = entries
        .iter()
        .map(|e| Request {
            arrival_ns: e.arrival_ns,
            tenant: e.letter as u32,
            samples: defaults.samples,
            seq_len: defaults.seq_len,
            deadline_ns: defaults.deadline_ns(),
        })
        .collect();
    let tenants = (0..types)
        .map(|i| Tenant {
            name: char::from(b'A' + i as u8).to_string(),
            model: model.to_string(),
        })
        .collect();
    Ok(Workload { tenants, requests })
}

/// Writes a workload as a FastPTM trace. Only workloads whose tenants are letters and whose
/// requests all have the default shape can be written this way; the last gap is written as 0.
pub fn write(workload: &Workload, defaults: &RequestDefaults) -> Result<String> {
    for t in &workload.tenants {
        let b = t.name.as_bytes();
        if b.len() != 1 || !b[0].is_ascii_uppercase() {
            return Err(Error::invalid(
                format!("tenant {:?}", t.name),
                "FastPTM traces name tenants by one letter A–Z; write CSV or JSONL instead",
            ));
        }
    }
    let mut out = String::from("[");
    for (i, r) in workload.requests.iter().enumerate() {
        if (r.samples, r.seq_len, r.deadline_ns)
            != (defaults.samples, defaults.seq_len, defaults.deadline_ns())
        {
            return Err(Error::invalid(
                format!("request {i}"),
                "FastPTM traces cannot carry samples, seq_len or deadline; write CSV or JSONL",
            ));
        }
        let next = workload
            .requests
            .get(i + 1)
            .map_or(r.arrival_ns, |n| n.arrival_ns);
        let gap_s = (next - r.arrival_ns) as f64 / 1e9;
        if i > 0 {
            out.push_str(", ");
        }
        let letter = &workload.tenants[r.tenant as usize].name;
        let _ = write!(out, "[\"{letter}\", {gap_s:?}]");
    }
    out.push(']');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<Workload> {
        parse(text, "t.json", &RequestDefaults::default(), "m")
    }

    #[test]
    fn arrivals_are_sums_of_earlier_gaps() {
        let w = parse_str(r#"[["B", 0.5], ["A", 0.25], ["C", 1.0]]"#).unwrap();
        let arrivals: Vec<_> = w.requests.iter().map(|r| r.arrival_ns).collect();
        assert_eq!(arrivals, vec![0, 500_000_000, 750_000_000]);
        assert_eq!(w.tenants.len(), 3);
        assert_eq!(w.requests[0].tenant, 1);
        assert_eq!(w.requests[0].deadline_ns, 3_000_000_000);
    }

    #[test]
    fn unknown_letter_is_refused_with_its_position() {
        let err = parse_str("[[\"A\", 0.1],\n [\"a\", 0.2]]")
            .unwrap_err()
            .to_string();
        assert!(err.contains("t.json:2:"), "{err}");
        assert!(
            err.contains("entry 1") && err.contains("unknown type letter \"a\""),
            "{err}"
        );
    }

    #[test]
    fn negative_gap_is_refused_with_its_position() {
        let err = parse_str("[[\"A\", 0.1], [\"B\", -0.2]]")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("t.json:1:") && err.contains("entry 1: gap -0.2"),
            "{err}"
        );
    }

    #[test]
    fn non_numeric_gap_is_refused_with_its_position() {
        let err = parse_str("[[\"A\", 0.1],\n\n [\"B\", \"x\"]]")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("t.json:3:") && err.contains("entry 1: gap seconds"),
            "{err}"
        );
    }

    #[test]
    fn written_trace_reads_back() {
        let text = r#"[["B", 0.5], ["A", 0.25], ["C", 0.0]]"#;
        let w = parse_str(text).unwrap();
        let again = parse_str(&write(&w, &RequestDefaults::default()).unwrap()).unwrap();
        assert_eq!(w, again);
    }
}
