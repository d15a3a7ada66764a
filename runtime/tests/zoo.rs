//! The zoo: round trip through the HF layout, determinism of the bytes, inference on tiny
//! models of every head, RoBERTa naming, dtypes and padding invariance.

use ptm_runtime::zoo::{tenant_task, write_model, Arch};
use ptm_runtime::{
    make_zoo, Batch, Config, DType, Device, Layout, Model, PackedWeights, Task, Zoo,
};
use std::path::Path;

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn zoo_bytes_are_deterministic_and_seeded() {
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    make_zoo(Arch::Tiny, 4, a.path(), DType::Fp16, 1).unwrap();
    make_zoo(Arch::Tiny, 4, b.path(), DType::Fp16, 1).unwrap();
    make_zoo(Arch::Tiny, 4, c.path(), DType::Fp16, 2).unwrap();
    let (fa, fb, fc) = (files(a.path()), files(b.path()), files(c.path()));
    assert_eq!(fa.len(), 1 + 4 * 4);
    assert_eq!(fa, fb, "same seed, same bytes");
    let st = |f: &[(String, Vec<u8>)]| {
        f.iter()
            .find(|x| x.0.ends_with("t000/model.safetensors"))
            .unwrap()
            .1
            .clone()
    };
    assert_ne!(st(&fa), st(&fc), "another seed, other weights");
}

#[test]
fn zoo_round_trips_and_tenants_differ() {
    let d = tempfile::tempdir().unwrap();
    let zoo = make_zoo(Arch::Tiny, 6, d.path(), DType::Fp32, 0).unwrap();
    assert_eq!(Zoo::read(d.path()).unwrap(), zoo);
    let labels: Vec<(Task, usize)> = zoo.models.iter().map(|m| (m.task, m.labels)).collect();
    assert_eq!(labels, (0..6).map(tenant_task).collect::<Vec<_>>());
    assert_ne!(
        labels[0].1, labels[3].1,
        "label counts differ between tenants of one task"
    );
    let mut word = Vec::new();
    for m in &zoo.models {
        let dir = d.path().join(&m.name);
        let cfg = Config::from_file(&dir.join("config.json")).unwrap();
        assert_eq!((cfg.task(), cfg.labels()), (m.task, m.labels));
        assert_eq!(Layout::for_config(&cfg).unwrap().parameters(), m.parameters);
        assert_eq!(
            std::fs::metadata(dir.join("model.safetensors"))
                .unwrap()
                .len(),
            m.file_bytes
        );
        let w =
            PackedWeights::from_file(&dir.join("model.safetensors"), &cfg, DType::Fp32).unwrap();
        word.push(w.tensor_f32("embeddings.word_embeddings.weight").unwrap());
    }
    // Fine-tunes of one backbone: close to each other, not equal.
    let diff = word[0]
        .iter()
        .zip(&word[1])
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(diff > 0.0 && diff < 0.05, "max |Δ| between tenants {diff}");
}

#[test]
fn infer_on_every_head() {
    let d = tempfile::tempdir().unwrap();
    let zoo = make_zoo(Arch::Tiny, 3, d.path(), DType::Fp32, 0).unwrap();
    let texts = vec![
        "Hello world, the quick brown fox.".to_string(),
        "gpu".to_string(),
    ];
    for m in &zoo.models {
        let mut model = Model::load(&d.path().join(&m.name), Device::Cpu, DType::Fp32).unwrap();
        let outs = model.infer(&texts).unwrap();
        assert_eq!(outs.len(), 2);
        assert_eq!(outs[1].token_ids, vec![101, 261, 102]);
        for o in &outs {
            assert!(o.values.iter().all(|v| v.is_finite()));
            match m.task {
                Task::SequenceClassification => assert_eq!(o.shape, vec![m.labels]),
                Task::TokenClassification => assert_eq!(o.shape, vec![o.token_ids.len(), m.labels]),
                Task::Embedding => {
                    assert_eq!(o.shape, vec![32]);
                    let n: f32 = o.values.iter().map(|v| v * v).sum();
                    assert!((n - 1.0).abs() < 1e-5);
                }
            }
        }
        // Padding does not change a row: the short text alone equals it inside the batch.
        let alone = model.infer(&texts[1..]).unwrap();
        let err = alone[0]
            .values
            .iter()
            .zip(&outs[1].values)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(err < 1e-5, "{:?}: padded vs alone differ by {err}", m.task);
    }
}

#[test]
fn half_precision_tracks_fp32() {
    let d = tempfile::tempdir().unwrap();
    let zoo = make_zoo(Arch::Tiny, 1, d.path(), DType::Fp32, 0).unwrap();
    let dir = d.path().join(&zoo.models[0].name);
    let texts = vec!["the quick brown fox jumps over the lazy dog".to_string()];
    let r = Model::load(&dir, Device::Cpu, DType::Fp32)
        .unwrap()
        .infer(&texts)
        .unwrap();
    for dt in [DType::Fp16, DType::Bf16] {
        let o = Model::load(&dir, Device::Cpu, dt)
            .unwrap()
            .infer(&texts)
            .unwrap();
        let num: f32 = o[0]
            .values
            .iter()
            .zip(&r[0].values)
            .map(|(a, b)| (a - b).powi(2))
            .sum();
        let den: f32 = r[0].values.iter().map(|b| b * b).sum();
        let rel = (num / den).sqrt();
        assert!(rel < 5e-2, "{dt}: relative error {rel}");
    }
}

#[test]
fn roberta_layout_loads_and_rejects_long_input() {
    let d = tempfile::tempdir().unwrap();
    let mut cfg = Arch::Tiny.config(Task::SequenceClassification, 4);
    cfg.model_type = "roberta".into();
    cfg.architectures = vec!["RobertaForSequenceClassification".into()];
    cfg.type_vocab_size = 1;
    cfg.pad_token_id = 1;
    cfg.max_position_embeddings = 66;
    write_model(d.path(), &cfg, DType::Bf16, 3, 0).unwrap();
    let st = std::fs::read(d.path().join("model.safetensors")).unwrap();
    let names = safetensors::SafeTensors::deserialize(&st)
        .unwrap()
        .names()
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
    assert!(names.iter().any(|n| n == "classifier.out_proj.weight"));
    assert!(names
        .iter()
        .any(|n| n == "roberta.encoder.layer.0.attention.self.query.weight"));
    let mut m = Model::load(d.path(), Device::Cpu, DType::Fp32).unwrap();
    let o = m.infer(&["hello world".to_string()]).unwrap();
    assert_eq!(o[0].token_ids.first(), Some(&0));
    assert_eq!(o[0].shape, vec![4]);
    let long = Batch::from_rows(&[vec![5; 65]], 1, None).unwrap();
    let e = m.forward(&long).unwrap_err().to_string();
    assert!(e.contains("65") && e.contains("64"), "{e}");
    // Truncation keeps real texts within the positions.
    let o = m.infer(&["word ".repeat(200)]).unwrap();
    assert_eq!(o[0].token_ids.len(), 64);
}
