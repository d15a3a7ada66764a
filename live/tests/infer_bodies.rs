//! Property-based tests of `POST /v1/infer` bodies (issue 13): random bytes, random JSON and
//! mutations of valid bodies never panic the parser; a refusal is 400, 404 or 413 with a
//! message, naming the field whenever the body is a JSON object; what is accepted is within
//! the stated bounds (1–`MAX_TEXTS` rows of 1–`max_tokens` ids below the vocabulary, a
//! deadline of at most a day) and converts to a coordinator request without panicking.

use proptest::prelude::*;
use ptm_live::serve::{
    max_text_bytes, parse_infer, to_request, valid_deadline_ms, ApiError, InferRequest, TenantInfo,
    MAX_TEXTS,
};
use ptm_runtime::tokenize::TextEncoder;
use ptm_runtime::zoo::{make_zoo, model_dir, Arch};
use ptm_runtime::{Config, DType};
use serde_json::{json, Value};
use std::sync::OnceLock;

/// Two tiny tenants, made once.
fn tenants() -> &'static Vec<TenantInfo> {
    static TENANTS: OnceLock<Vec<TenantInfo>> = OnceLock::new();
    TENANTS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let zoo = make_zoo(Arch::Tiny, 2, &dir, DType::Fp32, 5).unwrap();
        zoo.models
            .iter()
            .map(|m| {
                let d = model_dir(&dir, &m.name);
                let cfg = Config::from_file(&d.join("config.json")).unwrap();
                TenantInfo {
                    name: m.name.clone(),
                    task: m.task,
                    labels: cfg.label_names(),
                    encoder: TextEncoder::from_file(&d.join("tokenizer.json"), &cfg)
                        .unwrap()
                        .into(),
                    cfg,
                }
            })
            .collect()
    })
}

fn parse(body: &[u8]) -> Result<InferRequest, ApiError> {
    let t = tenants();
    parse_infer(
        body,
        t,
        |name| t.iter().position(|x| x.name == name).map(|i| i as u32),
        3000.0,
    )
}

/// What every outcome must satisfy.
fn check(body: &[u8], outcome: &Result<InferRequest, ApiError>) -> Result<(), TestCaseError> {
    match outcome {
        Ok(r) => {
            let info = &tenants()[r.tenant as usize];
            prop_assert!(!r.rows.is_empty() && r.rows.len() <= MAX_TEXTS);
            for row in &r.rows {
                prop_assert!(!row.is_empty() && row.len() <= info.cfg.max_tokens());
                prop_assert!(row.iter().all(|&id| (id as usize) < info.cfg.vocab_size));
            }
            prop_assert!(valid_deadline_ms(r.deadline_ms));
            let req = to_request(r);
            prop_assert_eq!(req.samples as usize, r.rows.len());
        }
        Err(e) => {
            prop_assert!([400, 404, 413].contains(&e.status), "{e:?}");
            prop_assert!(!e.error.is_empty());
            let is_object = matches!(serde_json::from_slice::<Value>(body), Ok(Value::Object(_)));
            prop_assert_eq!(e.field.is_some(), is_object, "{:?}", e);
        }
    }
    Ok(())
}

/// Any JSON value, nested a few levels, with numbers from every corner.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        prop::num::f64::NORMAL.prop_map(|x| json!(x)),
        prop_oneof![
            Just(1e300),
            Just(-1.0),
            Just(0.0),
            Just(86_400_001.0),
            Just(0.5)
        ]
        .prop_map(|x| json!(x)),
        "[a-z ]{0,20}".prop_map(Value::String),
        prop_oneof![Just("tiny-t000"), Just("tiny-t001"), Just("ghost")].prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(3, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("tenant".to_string()),
                    Just("texts".to_string()),
                    Just("token_ids".to_string()),
                    Just("deadline_ms".to_string()),
                    "[a-z]{1,6}",
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A body that is mostly valid: a tenant, texts or token ids, maybe a deadline.
fn plausible() -> impl Strategy<Value = Value> {
    let texts = prop::collection::vec("[a-zA-Z ,.é]{0,40}", 0..6).prop_map(|t| json!(t));
    let ids =
        prop::collection::vec(prop::collection::vec(0u64..2000, 0..8), 0..5).prop_map(|t| json!(t));
    (
        prop_oneof![Just("tiny-t000"), Just("tiny-t001"), Just("ghost")],
        prop_oneof![
            texts.prop_map(|t| ("texts", t)),
            ids.prop_map(|i| ("token_ids", i))
        ],
        prop::option::of(prop_oneof![
            (0.001f64..1e5).prop_map(|d| json!(d)),
            Just(json!(-3)),
            Just(json!(1e300)),
            Just(json!("soon")),
        ]),
    )
        .prop_map(|(tenant, (key, rows), deadline)| {
            let mut v = json!({"tenant": tenant});
            v[key] = rows;
            if let Some(d) = deadline {
                v["deadline_ms"] = d;
            }
            v
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..200)) {
        check(&body, &parse(&body))?;
    }

    #[test]
    fn random_json_never_panics_and_errors_name_the_field(v in any_json()) {
        let body = v.to_string();
        check(body.as_bytes(), &parse(body.as_bytes()))?;
    }

    #[test]
    fn plausible_bodies_are_accepted_or_refused_within_bounds(v in plausible()) {
        let body = v.to_string();
        check(body.as_bytes(), &parse(body.as_bytes()))?;
    }

    #[test]
    fn mutated_valid_bodies_never_panic(
        v in plausible(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6),
    ) {
        let mut body = v.to_string().into_bytes();
        for (at, byte, kind) in edits {
            if body.is_empty() {
                body.push(byte);
                continue;
            }
            let i = at.index(body.len());
            match kind {
                0 => body[i] = byte,
                1 => body.insert(i, byte),
                _ => {
                    body.remove(i);
                }
            }
        }
        check(&body, &parse(&body))?;
    }
}

#[test]
fn regressions_long_texts_and_bad_deadlines() {
    let info = &tenants()[0];
    let limit = max_text_bytes(info.cfg.max_tokens());
    // A 1.8 MB text is refused before the tokenizer sees it, with the limit named.
    let huge = json!({"tenant": "tiny-t000", "texts": ["ok", "x".repeat(1_800_000)]}).to_string();
    let e = parse(huge.as_bytes()).unwrap_err();
    assert_eq!((e.status, e.field.as_deref()), (413, Some("texts")));
    assert!(
        e.error.contains(&format!("at most {limit} bytes")),
        "{}",
        e.error
    );
    assert!(e.error.contains("text 1"), "{}", e.error);
    // A text at the limit is taken (and truncated by the tokenizer to the model's length).
    let edge = json!({"tenant": "tiny-t000", "texts": ["ab ".repeat(limit / 3)]}).to_string();
    let r = parse(edge.as_bytes()).unwrap();
    assert_eq!(r.rows[0].len(), info.cfg.max_tokens());
    for d in ["-1", "0", "1e300", "86400001", "\"3\"", "null"] {
        let body = format!(r#"{{"tenant": "tiny-t000", "texts": ["a"], "deadline_ms": {d}}}"#);
        let e = parse(body.as_bytes()).unwrap_err();
        assert_eq!(
            (e.status, e.field.as_deref()),
            (400, Some("deadline_ms")),
            "{d}"
        );
    }
    let ok = parse(br#"{"tenant": "tiny-t001", "texts": ["a"], "deadline_ms": 86400000}"#);
    assert_eq!(ok.unwrap().deadline_ms, 86_400_000.0);
}
