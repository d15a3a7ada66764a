//! The HTTP API's bodies: parsing and validating `POST /v1/infer`, with errors that name the
//! field and what was expected.
//!
//! Sizes are bounded before any work that grows with them: a body by [`body_limit_bytes`], a
//! text by [`max_text_bytes`] (the model reads at most `max_tokens` tokens, so longer texts
//! would be truncated anyway), both refused with 413 and the limit in the message, before the
//! tokenizer sees them.

use ptm_runtime::tokenize::TextEncoder;
use ptm_runtime::{Config, Task};
use serde::{Serialize, Serializer};
use serde_json::Value;

/// A tenant as the server knows it.
pub struct TenantInfo {
    /// Its name (the zoo model's).
    pub name: String,
    /// Its head.
    pub task: Task,
    /// Label names (classification heads).
    pub labels: Vec<String>,
    /// Its tokenizer (shared by the tenants of one backbone).
    pub encoder: std::sync::Arc<TextEncoder>,
    /// Its configuration.
    pub cfg: Config,
}

/// A refused request: the HTTP status and a message naming the field.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiError {
    /// HTTP status.
    #[serde(skip)]
    pub status: u16,
    /// What was wrong and what was expected.
    pub error: String,
    /// The offending field, if one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ApiError {
    /// A 400 about `field`.
    pub fn bad(field: &str, message: impl Into<String>) -> Self {
        ApiError {
            status: 400,
            error: message.into(),
            field: Some(field.to_string()),
        }
    }
}

/// A validated inference request.
#[derive(Debug, Clone, PartialEq)]
pub struct InferRequest {
    /// The tenant's index.
    pub tenant: u32,
    /// Token ids per text (special tokens included).
    pub rows: Vec<Vec<u32>>,
    /// Deadline after arrival, milliseconds.
    pub deadline_ms: f64,
}

/// A `/v1/infer` answer, written straight from the outputs (no intermediate JSON tree). Its
/// keys are in alphabetical order, as the `serde_json` map it was first built as wrote them,
/// and its values are written as that map wrote them: `values` as 64-bit floats (`null` for
/// a non-finite one).
#[derive(Debug, Serialize)]
pub struct InferAnswer<'a> {
    /// Whether its instance loaded cold first.
    pub cold_load: bool,
    /// Its deadline, ms.
    pub deadline_ms: f64,
    /// The instance that ran it.
    pub instance: usize,
    /// The tenant's label names.
    pub labels: &'a [String],
    /// Arrival to completion, ms.
    pub latency_ms: f64,
    /// One per text.
    pub outputs: Vec<RowAnswer<'a>>,
    /// Whether its instance switched first.
    pub switched: bool,
    /// The tenant's head.
    pub task: Task,
    /// The tenant's name.
    pub tenant: &'a str,
    /// Arrival to start, ms.
    pub wait_ms: f64,
}

/// One text's answer: its token ids and the head's output.
#[derive(Debug, Serialize)]
pub struct RowAnswer<'a> {
    /// Shape of `values`.
    pub shape: &'a [usize],
    /// The text's token ids.
    pub token_ids: &'a [u32],
    /// The output, row-major.
    #[serde(serialize_with = "f32s_as_f64s")]
    pub values: &'a [f32],
}

fn f32s_as_f64s<S: Serializer>(values: &&[f32], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(values.iter().map(|&v| f64::from(v)))
}

/// Most texts in one request.
pub const MAX_TEXTS: usize = 256;

/// Bytes of text allowed per token the model reads. English WordPiece tokens average about 4–5
/// bytes; 32 leaves room for long words and multi-byte scripts, and bounds tokenizing work.
pub const TEXT_BYTES_PER_TOKEN: usize = 32;

/// Longest deadline a request may ask for (and `--deadline-ms` may set): one day.
pub const MAX_DEADLINE_MS: f64 = 86_400_000.0;

/// Longest text, in bytes, for a model that reads `max_tokens` tokens.
pub fn max_text_bytes(max_tokens: usize) -> usize {
    max_tokens.max(1) * TEXT_BYTES_PER_TOKEN
}

/// Largest `/v1/infer` body for models that read at most `max_tokens` tokens: `MAX_TEXTS`
/// texts of [`max_text_bytes`] each (or as many token ids), twice over for JSON escapes, plus
/// 64 KiB for the rest.
pub fn body_limit_bytes(max_tokens: usize) -> usize {
    MAX_TEXTS * max_text_bytes(max_tokens) * 2 + 64 * 1024
}

/// Whether `ms` is a deadline the server takes: finite, positive, at most [`MAX_DEADLINE_MS`].
pub fn valid_deadline_ms(ms: f64) -> bool {
    ms.is_finite() && ms > 0.0 && ms <= MAX_DEADLINE_MS
}

/// Parses a `POST /v1/infer` body: `{tenant, texts | token_ids, deadline_ms?}`.
pub fn parse_infer(
    body: &[u8],
    tenants: &[TenantInfo],
    find: impl Fn(&str) -> Option<u32>,
    default_deadline_ms: f64,
) -> Result<InferRequest, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| ApiError {
        status: 400,
        error: format!("the body is not JSON: {e}"),
        field: None,
    })?;
    let Value::Object(map) = value else {
        return Err(ApiError {
            status: 400,
            error: "expected a JSON object {tenant, texts | token_ids, deadline_ms?}".into(),
            field: None,
        });
    };
    if let Some(k) = map
        .keys()
        .find(|k| !matches!(k.as_str(), "tenant" | "texts" | "token_ids" | "deadline_ms"))
    {
        return Err(ApiError::bad(
            k,
            format!("unknown field `{k}`: expected tenant, texts or token_ids, deadline_ms"),
        ));
    }
    let name = match map.get("tenant") {
        Some(Value::String(s)) => s,
        Some(_) => {
            return Err(ApiError::bad(
                "tenant",
                "`tenant` must be a string (a name from GET /v1/tenants)",
            ))
        }
        None => return Err(ApiError::bad("tenant", "`tenant` is missing")),
    };
    let tenant = find(name).ok_or_else(|| ApiError {
        status: 404,
        error: format!("unknown tenant {name:?} (GET /v1/tenants lists them)"),
        field: Some("tenant".into()),
    })?;
    let info = &tenants[tenant as usize];
    let rows = match (map.get("texts"), map.get("token_ids")) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad(
                "texts",
                "give `texts` or `token_ids`, not both",
            ))
        }
        (None, None) => {
            return Err(ApiError::bad(
                "texts",
                "`texts` (or `token_ids`) is missing",
            ))
        }
        (Some(t), None) => {
            let shape_error = || {
                ApiError::bad(
                    "texts",
                    format!("`texts` must be an array of 1–{MAX_TEXTS} strings"),
                )
            };
            let items = t
                .as_array()
                .filter(|a| !a.is_empty() && a.len() <= MAX_TEXTS)
                .ok_or_else(shape_error)?;
            let limit = max_text_bytes(info.cfg.max_tokens());
            let mut texts = Vec::with_capacity(items.len());
            for (i, x) in items.iter().enumerate() {
                let text = x.as_str().ok_or_else(shape_error)?;
                if text.len() > limit {
                    return Err(ApiError {
                        status: 413,
                        error: format!(
                            "text {i} has {} bytes: tenant {name:?} reads at most {} tokens, so a \
                             text may have at most {limit} bytes ({TEXT_BYTES_PER_TOKEN} a token)",
                            text.len(),
                            info.cfg.max_tokens()
                        ),
                        field: Some("texts".into()),
                    });
                }
                texts.push(text);
            }
            info.encoder
                .encode_rows(&texts)
                .map_err(|e| ApiError::bad("texts", format!("cannot tokenize: {e}")))?
        }
        (None, Some(ids)) => {
            let max = info.cfg.max_tokens();
            let vocab = info.cfg.vocab_size as u64;
            let rows: Option<Vec<Vec<u32>>> = ids
                .as_array()
                .filter(|a| !a.is_empty() && a.len() <= MAX_TEXTS)
                .and_then(|a| {
                    a.iter()
                        .map(|row| {
                            row.as_array()
                                .filter(|r| !r.is_empty() && r.len() <= max)
                                .and_then(|r| {
                                    r.iter()
                                        .map(|x| {
                                            x.as_u64().filter(|&v| v < vocab).map(|v| v as u32)
                                        })
                                        .collect()
                                })
                        })
                        .collect()
                });
            rows.ok_or_else(|| {
                ApiError::bad(
                    "token_ids",
                    format!("`token_ids` must be 1–{MAX_TEXTS} arrays of 1–{max} integers below the vocabulary size {vocab}"),
                )
            })?
        }
    };
    let deadline_ms = match map.get("deadline_ms") {
        None => default_deadline_ms,
        Some(v) => v
            .as_f64()
            .filter(|&d| valid_deadline_ms(d))
            .ok_or_else(|| {
                ApiError::bad(
                    "deadline_ms",
                    format!(
                        "`deadline_ms` must be a positive number of milliseconds, at most \
                         {MAX_DEADLINE_MS} (a day)"
                    ),
                )
            })?,
    };
    Ok(InferRequest {
        tenant,
        rows,
        deadline_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_answer_is_written_as_its_json_tree_was() {
        let labels = vec!["NEG".to_string(), "POS".to_string()];
        let ids = [vec![101u32, 7, 102], vec![101, 102]];
        let shapes = [vec![2usize], vec![3, 2]];
        let values = [
            vec![0.1f32, -3.5e-8],
            vec![
                f32::NAN,
                f32::INFINITY,
                1.0,
                f32::MIN_POSITIVE / 4.0,
                f32::MAX,
                -0.0,
            ],
        ];
        let answer = InferAnswer {
            cold_load: false,
            deadline_ms: 3000.0,
            instance: 3,
            labels: &labels,
            latency_ms: 12.345678,
            outputs: (0..2)
                .map(|i| RowAnswer {
                    shape: &shapes[i],
                    token_ids: &ids[i],
                    values: &values[i],
                })
                .collect(),
            switched: true,
            task: Task::TokenClassification,
            tenant: "bert-base-t001",
            wait_ms: 0.1 + 0.2,
        };
        let outputs: Vec<_> = (0..2)
            .map(|i| json!({"token_ids": ids[i], "shape": shapes[i], "values": values[i]}))
            .collect();
        let tree = json!({
            "tenant": "bert-base-t001",
            "task": Task::TokenClassification,
            "labels": labels,
            "instance": 3usize,
            "switched": true,
            "cold_load": false,
            "wait_ms": 0.1 + 0.2,
            "latency_ms": 12.345678,
            "deadline_ms": 3000.0,
            "outputs": outputs,
        });
        assert_eq!(
            serde_json::to_string(&answer).unwrap(),
            serde_json::to_string(&tree).unwrap()
        );
    }
}
