//! Parameter-efficient tenants on the CPU: the PET zoo's determinism, mixed-tenant batches
//! against each tenant alone, LoRA and BitFit against the merged model, every kind against a
//! straightforward per-tenant reference, and refusals that name the tensor or field.

mod naive;
mod refusals;
mod slot;

use ptm_runtime::bert::{self, LayerLinear};
use ptm_runtime::pet::merge::merged;
use ptm_runtime::pet::zoo::Placement;
use ptm_runtime::pet::{make_pet_zoo, Backbone, PetSet, PetSpec, PetZoo, Segment};
use ptm_runtime::zoo::Arch;
use ptm_runtime::{Batch, DType, HeadOutput, Task};
use rand::{Rng, SeedableRng};
use std::path::Path;

/// The kinds of tenant the tests run, by name.
pub fn specs() -> Vec<(&'static str, PetSpec)> {
    vec![
        (
            "lora-qv",
            PetSpec::Lora {
                rank: 4,
                alpha: 8.0,
                targets: vec![LayerLinear::Query, LayerLinear::Value],
            },
        ),
        (
            "lora-all",
            PetSpec::Lora {
                rank: 2,
                alpha: 3.0,
                targets: LayerLinear::ALL.to_vec(),
            },
        ),
        (
            "lora-down",
            PetSpec::Lora {
                rank: 3,
                alpha: 3.0,
                targets: vec![LayerLinear::Key, LayerLinear::Down],
            },
        ),
        (
            "houlsby",
            PetSpec::Adapter {
                placement: Placement::Houlsby,
                reduction_factor: 4,
            },
        ),
        (
            "pfeiffer",
            PetSpec::Adapter {
                placement: Placement::Pfeiffer,
                reduction_factor: 4,
            },
        ),
        ("bitfit", PetSpec::Bitfit),
    ]
}

/// A tiny PET zoo of `n` tenants of `spec`, fp32 files.
pub fn zoo(spec: &PetSpec, n: usize) -> (tempfile::TempDir, PetZoo) {
    let d = tempfile::tempdir().expect("tempdir");
    let z = make_pet_zoo(Arch::Tiny, spec, n, d.path(), DType::Fp32, 7, 2).expect("zoo");
    (d, z)
}

/// The zoo's backbone in `dtype` with every tenant registered, in index order.
pub fn set(dir: &Path, z: &PetZoo, dtype: DType) -> PetSet {
    let b = Backbone::load(&dir.join(&z.backbone), dtype).expect("backbone");
    let mut s = PetSet::new(b, 1000);
    for t in &z.tenants {
        s.register(&dir.join(&t.name)).expect("tenant registers");
    }
    s
}

/// `lengths.len()` rows of seeded random ids (real tokens from 5 up) starting with [CLS] 101.
fn rows(lengths: &[usize], seed: u64) -> Vec<Vec<u32>> {
    let mut r = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
    lengths
        .iter()
        .map(|&n| {
            let mut v = vec![101];
            v.extend((1..n).map(|_| r.random_range(5..1000u32)));
            v
        })
        .collect()
}

/// The values of row `b` of a head output, for a row of `len` real tokens.
fn row_values(o: &HeadOutput, b: usize, len: usize) -> Vec<f32> {
    let r = o.row(b);
    match o.task {
        Task::TokenClassification => r[..len * o.shape[2]].to_vec(),
        _ => r.to_vec(),
    }
}

fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let num: f64 = a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum();
    let den: f64 = b.iter().map(|y| f64::from(*y).powi(2)).sum();
    (num / den.max(1e-30)).sqrt()
}

#[test]
fn zoo_is_deterministic_whatever_the_thread_count() {
    for (name, spec) in specs() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let za = make_pet_zoo(Arch::Tiny, &spec, 6, a.path(), DType::Fp16, 3, 1).unwrap();
        let zb = make_pet_zoo(Arch::Tiny, &spec, 6, b.path(), DType::Fp16, 3, 4).unwrap();
        assert_eq!(za, zb, "{name}");
        assert_eq!(PetZoo::read(a.path()).unwrap(), za);
        for t in &za.tenants {
            for f in std::fs::read_dir(a.path().join(&t.name)).unwrap() {
                let f = f.unwrap();
                let other = b.path().join(&t.name).join(f.file_name());
                assert_eq!(
                    std::fs::read(f.path()).unwrap(),
                    std::fs::read(other).unwrap(),
                    "{name}: {:?}",
                    f.path()
                );
            }
        }
        // Parameters and sizes in the index are what a reader finds.
        let s = set(a.path(), &za, DType::Fp16);
        for (i, t) in za.tenants.iter().enumerate() {
            let pt = s.tenant(i).unwrap();
            assert_eq!(pt.parameters, t.parameters, "{name} {}", t.name);
            assert_eq!((pt.task(), pt.labels()), (t.task, t.labels));
            let bytes: u64 = std::fs::read_dir(a.path().join(&t.name))
                .unwrap()
                .map(|f| f.unwrap().metadata().unwrap().len())
                .sum();
            assert_eq!(bytes, t.file_bytes);
        }
        // Tenants differ from each other through their deltas alone (two embedding tenants).
        let batch = Batch::from_rows(&rows(&[6], 1), 0, None).unwrap();
        let o2 = s.forward_one(2, &batch).unwrap();
        let o5 = s.forward_one(5, &batch).unwrap();
        assert_eq!(o2.shape, o5.shape);
        assert!(
            rel_err(&o2.values, &o5.values) > 1e-3,
            "{name}: tenants 2 and 5 agree"
        );
    }
}

/// Segments of (tenant, row lengths) covering six tenants of every head, interleaved.
fn mixed_plan() -> Vec<(usize, Vec<usize>)> {
    vec![
        (0, vec![7, 3]),
        (1, vec![12]),
        (2, vec![5, 9, 4]),
        (4, vec![6]),
        (3, vec![11, 2]),
        (5, vec![8]),
        (0, vec![10]),
    ]
}

#[test]
fn each_row_of_a_mixed_batch_equals_its_tenant_alone() {
    for (name, spec) in specs() {
        let (d, z) = zoo(&spec, 6);
        for (dtype, tol) in [
            (DType::Fp32, 1e-6),
            (DType::Bf16, 1e-3),
            (DType::Fp16, 1e-3),
        ] {
            let s = set(d.path(), &z, dtype);
            let plan = mixed_plan();
            let lengths: Vec<usize> = plan.iter().flat_map(|p| p.1.clone()).collect();
            let all = rows(&lengths, 11);
            let batch = Batch::from_rows(&all, 0, None).unwrap();
            let segs: Vec<Segment> = plan
                .iter()
                .map(|(t, l)| Segment {
                    tenant: *t,
                    rows: l.len(),
                })
                .collect();
            let out = s.forward(&batch, &segs).unwrap();
            assert_eq!(out.len(), plan.len());
            let mut row = 0;
            for ((t, lens), o) in plan.iter().zip(&out) {
                let alone_rows = &all[row..row + lens.len()];
                let alone = s
                    .forward_one(*t, &Batch::from_rows(alone_rows, 0, None).unwrap())
                    .unwrap();
                assert_eq!(o.task, s.tenant(*t).unwrap().task());
                for (b, &len) in lens.iter().enumerate() {
                    let e = rel_err(&row_values(o, b, len), &row_values(&alone, b, len));
                    assert!(
                        e <= tol,
                        "{name} {dtype}: tenant {t} row {b}: {e:e} > {tol:e}"
                    );
                }
                row += lens.len();
            }
        }
    }
}

#[test]
fn lora_and_bitfit_equal_their_merged_model() {
    let all = rows(&[9, 4, 13], 5);
    let batch = Batch::from_rows(&all, 0, None).unwrap();
    for (name, spec) in specs() {
        if matches!(spec, PetSpec::Adapter { .. }) {
            continue;
        }
        let (d, z) = zoo(&spec, 6);
        for (dtype, tol) in [(DType::Fp32, 1e-6), (DType::Bf16, 5e-3)] {
            let s = set(d.path(), &z, dtype);
            for i in 0..z.tenants.len() {
                let t = s.tenant(i).unwrap();
                let (cfg, w) = merged(&s.backbone, t).unwrap();
                let m = bert::load(&w.to_dtype(dtype), &cfg).unwrap();
                let want = m.forward(&batch).unwrap();
                let got = s.forward_one(i, &batch).unwrap();
                assert_eq!((got.task, &got.shape), (want.task, &want.shape));
                let e = rel_err(&got.values, &want.values);
                assert!(e <= tol, "{name} {dtype} tenant {i}: {e:e} > {tol:e}");
            }
        }
    }
}

#[test]
fn every_kind_equals_a_straightforward_reference() {
    let texts = rows(&[9, 3, 14], 23);
    for (name, spec) in specs() {
        let (d, z) = zoo(&spec, 6);
        let s = set(d.path(), &z, DType::Fp32);
        for (i, t) in z.tenants.iter().enumerate() {
            let reference = naive::Naive::new(&d.path().join(&z.backbone), &d.path().join(&t.name));
            let batch = Batch::from_rows(&texts, 0, None).unwrap();
            let got = s.forward_one(i, &batch).unwrap();
            for (b, ids) in texts.iter().enumerate() {
                let want = reference.run(ids);
                let e = rel_err(&row_values(&got, b, ids.len()), &want);
                assert!(e < 2e-6, "{name} {}: row {b}: {e:e}", t.name);
            }
        }
    }
}

#[test]
fn roberta_lora_tenant_equals_its_merged_model() {
    // A tiny RoBERTa backbone and a LoRA sequence classifier over it, in PEFT's RoBERTa naming
    // (`roberta.` prefix, `classifier.dense` / `classifier.out_proj`).
    let (d, z) = zoo(&specs().remove(0).1, 1);
    let mut cfg = Arch::Tiny.config(Task::Embedding, 0);
    cfg.model_type = "roberta".into();
    cfg.architectures = vec!["RobertaModel".into()];
    cfg.type_vocab_size = 1;
    cfg.pad_token_id = 1;
    cfg.max_position_embeddings = 66;
    ptm_runtime::zoo::write_model(&d.path().join("rbackbone"), &cfg, DType::Fp32, 4, 0).unwrap();
    let from = d.path().join(&z.tenants[0].name);
    let to = d.path().join("roberta-t0");
    std::fs::create_dir_all(&to).unwrap();
    let mut ac: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(from.join("adapter_config.json")).unwrap())
            .unwrap();
    ac["base_model_name_or_path"] = "rbackbone".into();
    std::fs::write(to.join("adapter_config.json"), ac.to_string()).unwrap();
    let data = std::fs::read(from.join("adapter_model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&data).unwrap();
    let mut t: Vec<(String, Vec<usize>, Vec<f32>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| {
            let n = n
                .replace("model.bert.", "model.roberta.")
                .replace("model.classifier.", "model.classifier.out_proj.");
            (n, v.shape().to_vec(), DType::Fp32.decode_f32(v.data()))
        })
        .collect();
    let path = to.join("adapter_model.safetensors");
    ptm_runtime::pet::write::safetensors(&path, DType::Fp32, &mut t.clone()).unwrap();
    // Without its dense layer the head is refused by name.
    let e = PetSet::single(&to, DType::Fp32)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("classifier.dense.weight"), "{e}");
    let mut r = rand_pcg::Pcg64Mcg::seed_from_u64(2);
    let mut dense = |n: usize| {
        (0..n)
            .map(|_| r.random_range(-0.05..0.05f32))
            .collect::<Vec<_>>()
    };
    t.push((
        "base_model.model.classifier.dense.weight".into(),
        vec![32, 32],
        dense(32 * 32),
    ));
    t.push((
        "base_model.model.classifier.dense.bias".into(),
        vec![32],
        dense(32),
    ));
    ptm_runtime::pet::write::safetensors(&path, DType::Fp32, &mut t).unwrap();
    let s = PetSet::single(&to, DType::Fp32).unwrap();
    let tenant = s.tenant(0).unwrap();
    assert_eq!(
        tenant.lora_ranks().len(),
        4,
        "query and value of two layers"
    );
    let batch = Batch::from_rows(&rows(&[9, 4], 3), 1, None).unwrap();
    let (mcfg, w) = merged(&s.backbone, tenant).unwrap();
    assert_eq!(
        mcfg.architectures,
        vec!["RobertaForSequenceClassification".to_string()]
    );
    let want = bert::load(&w, &mcfg).unwrap().forward(&batch).unwrap();
    let got = s.forward_one(0, &batch).unwrap();
    assert_eq!(got.shape, vec![2, 2]);
    let e = rel_err(&got.values, &want.values);
    assert!(e < 1e-6, "{e:e}");
}
