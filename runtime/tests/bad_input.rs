//! Hostile and mistyped models (issue 13): a `config.json` asking for absurd sizes is refused
//! before anything is allocated; a configuration that does not use every tensor of its
//! checkpoint, and NaN or infinite weights, are refused naming the tensors — by the plain loader
//! (`PackedWeights`, `Model::load`) and by the host cache's parallel reader alike.

use ptm_runtime::switch::read::read_into_pieces;
use ptm_runtime::zoo::{write_model, Arch};
use ptm_runtime::{ArchLayout, Config, DType, Device, Error, Model, PackedWeights, Task};
use safetensors::tensor::{serialize, Dtype, TensorView};
use std::path::Path;

type Tensors = Vec<(String, Dtype, Vec<usize>, Vec<u8>)>;

fn tiny(dir: &Path) -> Config {
    let cfg = Arch::Tiny.config(Task::SequenceClassification, 3);
    write_model(dir, &cfg, DType::Fp32, 7, 0).expect("tiny model writes");
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(&cfg).unwrap(),
    )
    .unwrap();
    cfg
}

/// Rewrites the checkpoint through `edit`.
fn rewrite(dir: &Path, edit: impl Fn(&mut Tensors)) {
    let path = dir.join("model.safetensors");
    let data = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&data).unwrap();
    let mut ts: Tensors = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    edit(&mut ts);
    let views: Vec<(String, TensorView)> = ts
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    std::fs::write(&path, serialize(views, None).unwrap()).unwrap();
}

/// Edits `config.json` as JSON.
fn edit_config(dir: &Path, edit: impl Fn(&mut serde_json::Value)) {
    let p = dir.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).expect("config.json is JSON");
    edit(&mut v);
    std::fs::write(&p, v.to_string()).unwrap();
}

/// Both loaders' errors for the model in `dir` loaded in `dtype`.
fn both_errors(dir: &Path, dtype: DType) -> [String; 2] {
    let cfg = Config::from_file(&dir.join("config.json")).unwrap();
    let file = dir.join("model.safetensors");
    let plain = PackedWeights::from_file(&file, &cfg, dtype).unwrap_err();
    let arch = ArchLayout::new(&cfg, cfg.labels(), dtype).unwrap();
    let mut dst = vec![0u8; arch.bytes()];
    let parallel = read_into_pieces(&file, &cfg, &arch, &mut dst, 3, 1000).unwrap_err();
    [plain.to_string(), parallel.to_string()]
}

#[test]
fn absurd_sizes_are_refused_before_allocating() {
    let d = tempfile::tempdir().unwrap();
    tiny(d.path());
    for (field, value) in [
        ("vocab_size", serde_json::json!(1_000_000_000_000u64)),
        ("hidden_size", serde_json::json!(1_000_000)),
        ("num_hidden_layers", serde_json::json!(0)),
        ("num_hidden_layers", serde_json::json!(100_000)),
        ("intermediate_size", serde_json::json!(1u64 << 40)),
        ("max_position_embeddings", serde_json::json!(1u64 << 33)),
        ("num_attention_heads", serde_json::json!(0)),
        ("layer_norm_eps", serde_json::json!(-1.0)),
    ] {
        edit_config(d.path(), |v| {
            *v = serde_json::to_value(Arch::Tiny.config(Task::SequenceClassification, 3)).unwrap();
            v[field] = value.clone();
        });
        let e = Model::load(d.path(), Device::Cpu, DType::Fp32)
            .err()
            .expect("refused")
            .to_string();
        assert!(
            e.contains("config.json") && e.contains(field) && e.contains("expected"),
            "{field} = {value}: {e}"
        );
    }
    // Each size within its bound, the product beyond the parameter bound.
    edit_config(d.path(), |v| {
        *v = serde_json::to_value(Arch::Tiny.config(Task::SequenceClassification, 3)).unwrap();
        v["vocab_size"] = 1_000_000.into();
        v["hidden_size"] = 16_384.into();
        v["num_attention_heads"] = 16.into();
    });
    let e = Config::from_file(&d.path().join("config.json"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("parameters") && e.contains("expected at most"),
        "{e}"
    );
}

#[test]
fn fewer_layers_than_the_checkpoint_name_the_unused_tensors() {
    let d = tempfile::tempdir().unwrap();
    tiny(d.path());
    edit_config(d.path(), |v| v["num_hidden_layers"] = 1.into());
    for e in both_errors(d.path(), DType::Fp32) {
        assert!(
            e.contains("model.safetensors")
                && e.contains("16 tensors are not used")
                && e.contains("encoder.layer.1.attention")
                && e.contains("num_hidden_layers 1"),
            "{e}"
        );
    }
    let e = Model::load(d.path(), Device::Cpu, DType::Fp32)
        .err()
        .expect("refused");
    assert!(matches!(e, Error::UnusedTensors { .. }), "{e}");
}

#[test]
fn a_head_the_configuration_does_not_have_is_named() {
    let d = tempfile::tempdir().unwrap();
    tiny(d.path());
    // The checkpoint has a pooler and a classifier; the configuration says a bare encoder.
    edit_config(d.path(), |v| {
        v["architectures"] = serde_json::json!(["BertModel"])
    });
    for e in both_errors(d.path(), DType::Fp32) {
        assert!(
            e.contains("classifier.bias") && e.contains("classifier.weight"),
            "{e}"
        );
        assert!(!e.contains("pooler"), "an unused pooler is allowed: {e}");
    }
}

#[test]
fn other_heads_and_position_ids_are_allowed() {
    let d = tempfile::tempdir().unwrap();
    let cfg = tiny(d.path());
    let before =
        PackedWeights::from_file(&d.path().join("model.safetensors"), &cfg, DType::Fp32).unwrap();
    rewrite(d.path(), |ts| {
        ts.push((
            "cls.predictions.bias".into(),
            Dtype::F32,
            vec![2],
            vec![0; 8],
        ));
        ts.push((
            "bert.embeddings.position_ids".into(),
            Dtype::I64,
            vec![1, 2],
            vec![0; 16],
        ));
        ts.push(("lm_head.bias".into(), Dtype::F32, vec![1], vec![0; 4]));
    });
    let after =
        PackedWeights::from_file(&d.path().join("model.safetensors"), &cfg, DType::Fp32).unwrap();
    assert_eq!(before.bytes, after.bytes);
}

#[test]
fn nan_weights_are_refused_naming_the_tensor() {
    let d = tempfile::tempdir().unwrap();
    tiny(d.path());
    rewrite(d.path(), |ts| {
        let t = ts
            .iter_mut()
            .find(|t| t.0 == "bert.encoder.layer.1.output.dense.weight")
            .unwrap();
        t.3[40..44].copy_from_slice(&f32::NAN.to_le_bytes());
    });
    for dtype in [DType::Fp32, DType::Fp16, DType::Bf16] {
        for e in both_errors(d.path(), dtype) {
            assert!(
                e.contains("model.safetensors")
                    && e.contains("bert.encoder.layer.1.output.dense.weight")
                    && e.contains("not finite")
                    && e.contains("element 10"),
                "{dtype}: {e}"
            );
        }
    }
    let e = Model::load(d.path(), Device::Cpu, DType::Fp32)
        .err()
        .expect("refused");
    assert!(matches!(e, Error::NonFinite { .. }), "{e}");
}

#[test]
fn weights_beyond_half_precision_are_refused_in_fp16_only() {
    let d = tempfile::tempdir().unwrap();
    let cfg = tiny(d.path());
    rewrite(d.path(), |ts| {
        let t = ts.iter_mut().find(|t| t.0 == "classifier.bias").unwrap();
        t.3[0..4].copy_from_slice(&1e6f32.to_le_bytes());
    });
    let file = d.path().join("model.safetensors");
    PackedWeights::from_file(&file, &cfg, DType::Fp32).unwrap();
    PackedWeights::from_file(&file, &cfg, DType::Bf16).unwrap();
    let e = PackedWeights::from_file(&file, &cfg, DType::Fp16)
        .unwrap_err()
        .to_string();
    assert!(e.contains("classifier.bias") && e.contains("fp16"), "{e}");
}
