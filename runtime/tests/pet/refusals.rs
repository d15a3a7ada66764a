//! Tenants that do not fit their backbone, or ask for what is not supported, are refused with
//! the file and the tensor or field named; no input panics (property test over edits of a
//! valid config).

use super::{specs, zoo};
use proptest::prelude::*;
use ptm_runtime::pet::write::safetensors as write_st;
use ptm_runtime::pet::{Backbone, PetSpec, PetTenant, PetZoo};
use ptm_runtime::DType;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Copies tenant `i` of the zoo to a sibling folder `name` (so its backbone still resolves).
fn copy(dir: &Path, z: &PetZoo, i: usize, name: &str) -> PathBuf {
    let from = dir.join(&z.tenants[i].name);
    let to = dir.join(name);
    std::fs::create_dir_all(&to).unwrap();
    for f in std::fs::read_dir(&from).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), to.join(f.file_name())).unwrap();
    }
    to
}

fn edit_json(path: &Path, f: impl FnOnce(&mut Value)) {
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

type Tensors = Vec<(String, Vec<usize>, Vec<f32>)>;

fn edit_st(path: &Path, f: impl FnOnce(&mut Tensors)) {
    let data = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&data).unwrap();
    let mut t: Tensors = st
        .tensors()
        .into_iter()
        .map(|(n, v)| {
            let vals = DType::from_safetensors(v.dtype())
                .unwrap()
                .decode_f32(v.data());
            (n, v.shape().to_vec(), vals)
        })
        .collect();
    f(&mut t);
    write_st(path, DType::Fp32, &mut t).unwrap();
}

fn load_err(dir: &Path, backbone: &Backbone) -> String {
    PetTenant::load(dir, backbone)
        .map(|t| format!("loaded {}", t.name))
        .unwrap_or_else(|e| e.to_string())
}

fn lora() -> PetSpec {
    specs().remove(0).1
}

#[test]
fn lora_that_does_not_fit_is_refused_naming_the_tensor() {
    let (d, z) = zoo(&lora(), 3);
    let b = Backbone::load(&d.path().join("backbone"), DType::Fp32).unwrap();
    let cfg = |t: &Path| t.join("adapter_config.json");
    let st = |t: &Path| t.join("adapter_model.safetensors");
    let q0 = "base_model.model.bert.encoder.layer.0.attention.self.query";

    // The rank in the config is not the tensors' rank.
    let t = copy(d.path(), &z, 0, "rank");
    edit_json(&cfg(&t), |v| v["r"] = 5.into());
    let e = load_err(&t, &b);
    assert!(
        e.contains("lora_A.weight") && e.contains("[5, 32]") && e.contains("rank"),
        "{e}"
    );

    // A missing half of a pair.
    let t = copy(d.path(), &z, 0, "half");
    edit_st(&st(&t), |v| {
        v.retain(|x| x.0 != format!("{q0}.lora_B.weight"))
    });
    let e = load_err(&t, &b);
    assert!(
        e.contains(&format!("{q0}.lora_B.weight")) && e.contains("missing"),
        "{e}"
    );

    // target_modules does not select a module the file has a pair for.
    let t = copy(d.path(), &z, 0, "targets");
    edit_json(&cfg(&t), |v| {
        v["target_modules"] = serde_json::json!(["query"])
    });
    let e = load_err(&t, &b);
    assert!(
        e.contains("attention.self.value.lora_A.weight") && e.contains("target_modules"),
        "{e}"
    );

    // A layer the backbone does not have.
    let t = copy(d.path(), &z, 0, "layer");
    edit_st(&st(&t), |v| {
        v.push((
            "base_model.model.bert.encoder.layer.7.attention.self.query.lora_A.weight".into(),
            vec![4, 32],
            vec![0.0; 128],
        ))
    });
    let e = load_err(&t, &b);
    assert!(e.contains("layer.7") && e.contains("2 layers"), "{e}");

    // A parameter that is not read (DoRA magnitudes), and a bias under `bias: none`.
    let t = copy(d.path(), &z, 0, "dora-tensor");
    edit_st(&st(&t), |v| {
        v.push((
            format!("{q0}.lora_magnitude_vector"),
            vec![32],
            vec![1.0; 32],
        ))
    });
    let e = load_err(&t, &b);
    assert!(e.contains("lora_magnitude_vector"), "{e}");
    let t = copy(d.path(), &z, 0, "bias");
    edit_st(&st(&t), |v| {
        v.push((format!("{q0}.bias"), vec![32], vec![0.0; 32]))
    });
    let e = load_err(&t, &b);
    assert!(
        e.contains(&format!("{q0}.bias")) && e.contains("bias: none"),
        "{e}"
    );

    // `bias: all` as PEFT saves it: a wrapped module's bias under `base_layer`, others plain.
    let t = copy(d.path(), &z, 0, "bias-all");
    edit_json(&cfg(&t), |v| v["bias"] = "all".into());
    let k0 = "base_model.model.bert.encoder.layer.0.attention.self.key";
    edit_st(&st(&t), |v| {
        v.push((format!("{q0}.base_layer.bias"), vec![32], vec![0.5; 32]));
        v.push((format!("{k0}.bias"), vec![32], vec![0.25; 32]));
    });
    let read = PetTenant::load(&t, &b).unwrap();
    use ptm_runtime::bert::LayerLinear::{Key, Query};
    use ptm_runtime::pet::Module::Linear;
    assert_eq!(read.bias_modules(), vec![Linear(0, Query), Linear(0, Key)]);

    // Fields that are refused.
    for (field, val) in [
        ("use_dora", Value::Bool(true)),
        ("peft_type", Value::from("IA3")),
        ("task_type", Value::from("CAUSAL_LM")),
        ("bias", Value::from("some")),
        ("layer_replication", serde_json::json!([[0, 1]])),
        ("exclude_modules", serde_json::json!(["key"])),
        ("lora_bias", Value::Bool(true)),
        ("target_modules", Value::from("(unclosed")),
        ("r", Value::from(100000)),
    ] {
        let t = copy(d.path(), &z, 0, &format!("field-{field}"));
        edit_json(&cfg(&t), |v| v[field] = val.clone());
        let e = load_err(&t, &b);
        assert!(
            e.contains(field) && e.contains("adapter_config.json"),
            "{field}: {e}"
        );
    }

    // A classifier in a feature-extraction tenant; a classifier missing in a classifier.
    let t = copy(d.path(), &z, 0, "task");
    edit_json(&cfg(&t), |v| v["task_type"] = "FEATURE_EXTRACTION".into());
    let e = load_err(&t, &b);
    assert!(
        e.contains("classifier.weight") && e.contains("feature extraction"),
        "{e}"
    );
    let t = copy(d.path(), &z, 2, "nohead");
    edit_json(&cfg(&t), |v| v["task_type"] = "SEQ_CLS".into());
    let e = load_err(&t, &b);
    assert!(
        e.contains("classifier.weight") && e.contains("missing"),
        "{e}"
    );

    // Pickles are not read; an unknown backbone is named.
    let t = copy(d.path(), &z, 0, "pickle");
    std::fs::rename(st(&t), t.join("adapter_model.bin")).unwrap();
    let e = load_err(&t, &b);
    assert!(
        e.contains("adapter_model.bin") && e.contains("safetensors"),
        "{e}"
    );
    let t = copy(d.path(), &z, 0, "nobackbone");
    edit_json(&cfg(&t), |v| {
        v["base_model_name_or_path"] = "no-such-model".into()
    });
    let e = ptm_runtime::pet::backbone_of(&t).unwrap_err().to_string();
    assert!(
        e.contains("base_model_name_or_path") && e.contains("no-such-model"),
        "{e}"
    );
}

#[test]
fn a_tenant_of_another_backbone_is_refused() {
    // The same tenant against a backbone of another width: every LoRA tensor's shape differs.
    let (d, z) = zoo(&lora(), 1);
    let other = tempfile::tempdir().unwrap();
    let mut cfg = ptm_runtime::zoo::Arch::Tiny.config(ptm_runtime::Task::Embedding, 0);
    cfg.hidden_size = 48;
    cfg.num_attention_heads = 4;
    ptm_runtime::zoo::write_model(other.path(), &cfg, DType::Fp32, 1, 0).unwrap();
    let b = Backbone::load(other.path(), DType::Fp32).unwrap();
    let e = load_err(&d.path().join(&z.tenants[0].name), &b);
    assert!(
        e.contains("lora_A.weight") && e.contains("[4, 32]") && e.contains("[4, 48]"),
        "{e}"
    );
}

#[test]
fn adapters_that_do_not_fit_are_refused_naming_the_tensor_or_field() {
    let houlsby = specs().into_iter().find(|s| s.0 == "houlsby").unwrap().1;
    let (d, z) = zoo(&houlsby, 2);
    let b = Backbone::load(&d.path().join("backbone"), DType::Fp32).unwrap();
    let cfg = |t: &Path| t.join("adapter_config.json");
    // Another reduction factor: the bottleneck width differs from the tensors'.
    let t = copy(d.path(), &z, 0, "rf");
    edit_json(&cfg(&t), |v| v["config"]["reduction_factor"] = 2.into());
    let e = load_err(&t, &b);
    assert!(
        e.contains("adapter_down.0.weight") && e.contains("[16, 32]"),
        "{e}"
    );
    // Pfeiffer placement: the attention adapters are not expected.
    let t = copy(d.path(), &z, 0, "placement");
    edit_json(&cfg(&t), |v| v["config"]["mh_adapter"] = false.into());
    let e = load_err(&t, &b);
    assert!(
        e.contains("attention.output.adapters") && e.contains("mh_adapter"),
        "{e}"
    );
    // Unsupported settings.
    for (field, val) in [
        ("is_parallel", Value::Bool(true)),
        ("use_gating", Value::Bool(true)),
        ("ln_after", Value::Bool(true)),
        ("scaling", Value::from("learned")),
        ("non_linearity", Value::from("mish")),
        ("original_ln_after", Value::Bool(false)),
    ] {
        let t = copy(d.path(), &z, 0, &format!("field-{field}"));
        edit_json(&cfg(&t), |v| v["config"][field] = val.clone());
        let e = load_err(&t, &b);
        assert!(e.contains(field), "{field}: {e}");
    }
    // Another adapter's name in the tensors; a head whose labels disagree with its config.
    let t = copy(d.path(), &z, 0, "name");
    edit_json(&cfg(&t), |v| v["name"] = "other".into());
    let e = load_err(&t, &b);
    assert!(
        e.contains("adapters.tiny-adapter-t000") && e.contains("`other`"),
        "{e}"
    );
    let t = copy(d.path(), &z, 0, "labels");
    edit_json(&t.join("head_config.json"), |v| {
        v["config"]["num_labels"] = 7.into()
    });
    let e = load_err(&t, &b);
    assert!(
        e.contains("heads.tiny-adapter-t000.1.weight") && e.contains("num_labels is 7"),
        "{e}"
    );
    let t = copy(d.path(), &z, 0, "model-type");
    edit_json(&cfg(&t), |v| v["model_type"] = "roberta".into());
    let e = load_err(&t, &b);
    assert!(e.contains("model_type") && e.contains("roberta"), "{e}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Any edit of a valid `adapter_config.json` (a byte replaced, a span cut) loads or is
    /// refused; nothing panics.
    #[test]
    fn edited_configs_never_panic(
        kind in 0usize..3,
        at in 0usize..4096,
        cut in 0usize..64,
        byte in any::<u8>(),
    ) {
        thread_local! {
            static ZOOS: Vec<(tempfile::TempDir, PetZoo, Backbone)> = {
                ["lora-all", "pfeiffer", "bitfit"].iter().map(|n| {
                    let spec = specs().into_iter().find(|s| s.0 == *n).unwrap().1;
                    let (d, z) = zoo(&spec, 1);
                    let b = Backbone::load(&d.path().join("backbone"), DType::Fp32).unwrap();
                    (d, z, b)
                }).collect()
            };
        }
        ZOOS.with(|zs| {
            let (d, z, b) = &zs[kind];
            let t = copy(d.path(), z, 0, "fuzz");
            let p = t.join("adapter_config.json");
            let mut text = std::fs::read(&p).unwrap();
            let i = at % text.len();
            text[i] = byte;
            let j = (i + cut).min(text.len());
            text.drain(i..j);
            std::fs::write(&p, &text).unwrap();
            let _ = PetTenant::load(&t, b).map(|t| t.parameters);
        });
    }
}
