//! Property tests of the runtime's parsers (issue 13): random and mutated `config.json` files
//! and safetensors checkpoints (headers, length prefixes, truncated data, NaN weights). For
//! every input:
//! - nothing panics;
//! - an error names the input (the file, or the tensor it concerns);
//! - the parser's peak allocation is bounded by the input's size (see each test);
//! - what is accepted is within [`Bounds`] and holds only finite weights.

#[path = "../../sim/tests/support/counting_alloc.rs"]
mod counting_alloc;
#[path = "../../sim/tests/support/mutate.rs"]
mod mutate;

use counting_alloc::{peak_bytes, Counting};
use mutate::mutated;
use proptest::prelude::*;
use proptest::test_runner::Config as RunnerConfig;
use ptm_runtime::config::Bounds;
use ptm_runtime::switch::read::read_into_pieces;
use ptm_runtime::zoo::{write_model, Arch};
use ptm_runtime::{ArchLayout, Config, DType, Layout, PackedWeights, Task};
use std::path::Path;
use std::sync::OnceLock;

#[global_allocator]
static ALLOC: Counting = Counting;

fn cases() -> RunnerConfig {
    RunnerConfig {
        cases: 256,
        failure_persistence: None,
        ..RunnerConfig::default()
    }
}

/// The tiny model's configuration and checkpoint bytes, made once.
fn tiny() -> &'static (Config, Vec<u8>) {
    static TINY: OnceLock<(Config, Vec<u8>)> = OnceLock::new();
    TINY.get_or_init(|| {
        let d = tempfile::tempdir().unwrap();
        let cfg = Arch::Tiny.config(Task::SequenceClassification, 3);
        write_model(d.path(), &cfg, DType::Fp32, 7, 0).unwrap();
        let bytes = std::fs::read(d.path().join("model.safetensors")).unwrap();
        (cfg, bytes)
    })
}

fn number() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        4 => (0u64..100).prop_map(serde_json::Value::from),
        1 => any::<u64>().prop_map(serde_json::Value::from),
        1 => any::<i64>().prop_map(serde_json::Value::from),
        1 => any::<f64>().prop_map(serde_json::Value::from),
        1 => prop::sample::select(vec![
            serde_json::json!(1_000_000_000_000u64),
            serde_json::json!(1u64 << 33),
            serde_json::json!(usize::MAX),
            serde_json::json!(null),
            serde_json::json!("x"),
            serde_json::json!([1, 2]),
            serde_json::json!(-1),
            serde_json::json!(0),
            serde_json::json!(1e300),
        ]),
    ]
}

/// A `config.json`: the tiny model's with some fields replaced, removed or added.
fn config_json() -> impl Strategy<Value = String> {
    let field = prop::sample::select(vec![
        "vocab_size",
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "intermediate_size",
        "max_position_embeddings",
        "type_vocab_size",
        "layer_norm_eps",
        "pad_token_id",
        "num_labels",
        "model_type",
        "hidden_act",
        "architectures",
        "id2label",
        "x",
    ]);
    let edit = (field, prop::option::weighted(0.9, number()));
    prop::collection::vec(edit, 0..4).prop_map(|edits| {
        let mut v = serde_json::to_value(tiny().0.clone()).unwrap();
        for (field, value) in edits {
            match value {
                Some(x) => v[field] = x,
                None => {
                    v.as_object_mut().unwrap().remove(field);
                }
            }
        }
        v.to_string()
    })
}

fn check_config(dir: &Path, text: &str) {
    let path = dir.join("config.json");
    std::fs::write(&path, text).unwrap();
    let (result, peak) = peak_bytes(|| Config::from_file(&path));
    assert!(peak <= (1 << 20) + 64 * text.len(), "{peak} bytes");
    let cfg = match result {
        Err(e) => {
            let e = e.to_string();
            assert!(
                e.contains("config.json") || e.contains("architecture"),
                "error names neither the file nor the architecture: {e}"
            );
            return;
        }
        Ok(cfg) => cfg,
    };
    assert!(cfg.vocab_size <= Bounds::VOCAB && cfg.hidden_size <= Bounds::HIDDEN);
    assert!(cfg.num_hidden_layers <= Bounds::LAYERS && cfg.labels() <= Bounds::LABELS);
    let layout = Layout::for_config(&cfg).unwrap();
    let params: usize = layout.entries().iter().map(|e| e.elements()).sum();
    assert!(params <= Bounds::PARAMETERS, "{params}");
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn random_configs(text in config_json()) {
        let d = tempfile::tempdir().unwrap();
        check_config(d.path(), &text);
    }

    #[test]
    fn mutated_configs(
        text in mutated(serde_json::to_string_pretty(&tiny().0).unwrap())
    ) {
        let d = tempfile::tempdir().unwrap();
        check_config(d.path(), &text);
    }
}

/// The header and data of a checkpoint.
fn split(bytes: &[u8]) -> (String, &[u8]) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    (
        String::from_utf8(bytes[8..8 + n].to_vec()).unwrap(),
        &bytes[8 + n..],
    )
}

fn assemble(prefix: u64, header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = prefix.to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// A header entry: a name the layout reads (or not) with random dtype, shape and offsets.
fn entry() -> impl Strategy<Value = String> {
    let names: Vec<String> = Layout::for_config(&tiny().0)
        .unwrap()
        .entries()
        .iter()
        .flat_map(|e| e.candidates.iter().take(2).cloned())
        .chain(["cls.x".into(), "junk".into(), "__metadata__".into()])
        .collect();
    let dtype = prop::sample::select(vec!["F32", "F16", "BF16", "I64", "U8", "F64", "bogus"]);
    let dim = prop_oneof![4 => 0u64..70, 1 => any::<u64>()];
    let offset = prop_oneof![4 => 0u64..300_000, 1 => any::<u64>()];
    (
        prop::sample::select(names),
        dtype,
        prop::collection::vec(dim, 0..3),
        offset.clone(),
        offset,
    )
        .prop_map(|(name, dtype, shape, a, b)| {
            format!(
                "{name:?}: {{\"dtype\": \"{dtype}\", \"shape\": {shape:?}, \"data_offsets\": [{a}, {b}]}}"
            )
        })
}

/// Checkpoints: the tiny one as it is, with a mutated header, a wrong length prefix, cut data,
/// one weight replaced (NaN, infinite, beyond fp16, ordinary), or a random header.
fn checkpoint() -> impl Strategy<Value = Vec<u8>> {
    let (header, data) = split(&tiny().1);
    let (header, data) = (header.to_string(), data.to_vec());
    let n = header.len() as u64;
    let words = data.len() / 4;
    prop_oneof![
        (mutated(header.clone()), any::<bool>()).prop_map({
            let data = data.clone();
            move |(h, fix)| assemble(if fix { h.len() as u64 } else { n }, &h, &data)
        }),
        prop_oneof![
            Just(0u64),
            Just(1),
            Just(n - 1),
            Just(n + 1),
            Just(u64::MAX),
            Just(1 << 40),
            any::<u64>()
        ]
        .prop_map({
            let (header, data) = (header.clone(), data.clone());
            move |p| assemble(p, &header, &data)
        }),
        (0..data.len()).prop_map({
            let (header, data) = (header.clone(), data.clone());
            move |cut| assemble(n, &header, &data[..cut])
        }),
        Just(tiny().1.clone()),
        (
            0..words,
            prop::sample::select(vec![
                f32::NAN,
                f32::INFINITY,
                -f32::INFINITY,
                1e6,
                0.5,
                -3.0,
                65504.0,
                1e-30
            ])
        )
            .prop_map({
                let (header, data) = (header.clone(), data.clone());
                move |(i, x)| {
                    let mut d = data.clone();
                    d[4 * i..4 * i + 4].copy_from_slice(&x.to_le_bytes());
                    assemble(n, &header, &d)
                }
            }),
        (prop::collection::vec(entry(), 0..12), 0usize..4096).prop_map(|(entries, len)| {
            let h = format!("{{{}}}", entries.join(", "));
            assemble(h.len() as u64, &h, &vec![0u8; len])
        }),
    ]
}

/// Whether `e` names the file or a tensor.
fn names_input(e: &str, file: &str) -> bool {
    e.contains(file) || e.contains("tensor `") || e.contains("<memory>")
}

fn check_checkpoint(dir: &Path, bytes: &[u8]) {
    let cfg = &tiny().0;
    for dtype in [DType::Fp32, DType::Fp16] {
        // At most the packed buffer (fp32: up to twice the file's half-precision data), the
        // parsed header and alignment padding (128 elements per tensor).
        let (result, peak) = peak_bytes(|| PackedWeights::from_bytes(bytes, cfg, dtype));
        assert!(
            peak <= (1 << 20) + 4 * bytes.len(),
            "{peak} bytes for a {}-byte checkpoint",
            bytes.len()
        );
        match result {
            Err(e) => {
                let e = e.to_string();
                assert!(names_input(&e, "<memory>"), "{e}");
            }
            Ok(w) => {
                assert_eq!(
                    w.bytes.len(),
                    w.layout.total_elements() * dtype.size_bytes()
                );
                let values = dtype.decode_f32(&w.bytes);
                assert!(values.iter().all(|v| v.is_finite()));
            }
        }
    }
    // The host cache's parallel reader, on a file.
    let file = dir.join("model.safetensors");
    std::fs::write(&file, bytes).unwrap();
    let arch = ArchLayout::new(cfg, cfg.labels(), DType::Fp16).unwrap();
    let mut dst = vec![0u8; arch.bytes()];
    if let Err(e) = read_into_pieces(&file, cfg, &arch, &mut dst, 2, 4096) {
        let e = e.to_string();
        assert!(names_input(&e, &file.display().to_string()), "{e}");
    }
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn hostile_checkpoints(bytes in checkpoint()) {
        let d = tempfile::tempdir().unwrap();
        check_checkpoint(d.path(), &bytes);
    }
}
