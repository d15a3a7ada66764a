//! Where a 16-bit model's error comes from, on the CPU reference alone.
//!
//! For fp16 and bf16 the same (rounded) weights are evaluated with every rounding point of the
//! precision recipe (`ptm_runtime::bert::Rounding`) on, with none on (all-f32), with each point
//! alone, and with all but one; the table gives the worst per-row relative error of the logits
//! against the all-f32 evaluation. The GPU follows the same recipe, so this is also the error
//! its 16-bit models show against an f32 evaluation of their weights.
//!
//! The 12-layer case is slow on a small CPU, so it is ignored by default:
//! `cargo test --release -p ptm-runtime --test half_error_budget -- --ignored --nocapture`.
//! The 2-layer case runs in CI and checks the bounds the recipe keeps there.

use ptm_runtime::bert::{self, Rounding};
use ptm_runtime::zoo::{write_model, Arch};
use ptm_runtime::{Batch, Config, DType, PackedWeights, Task};
mod common;
use common::{batch, rel_err};

/// Flips one rounding point.
type Flip = fn(&mut Rounding);

/// (name, rounding) variants: all, none, each alone, all but each.
fn variants() -> Vec<(String, Rounding)> {
    let points: [(&str, Flip); 6] = [
        ("ln", |r| r.ln = !r.ln),
        ("qkv", |r| r.qkv = !r.qkv),
        ("probs", |r| r.probs = !r.probs),
        ("ctx", |r| r.ctx = !r.ctx),
        ("pre_act", |r| r.pre_act = !r.pre_act),
        ("act", |r| r.act = !r.act),
    ];
    let mut v = vec![("all (the recipe)".to_string(), Rounding::ALL)];
    for (name, flip) in points {
        let mut only = Rounding::NONE;
        flip(&mut only);
        v.push((format!("{name} alone"), only));
    }
    for (name, flip) in points {
        let mut but = Rounding::ALL;
        flip(&mut but);
        v.push((format!("all but {name}"), but));
    }
    v
}

/// Prints the table for `cfg` and returns the recipe's worst error per dtype.
fn budget(cfg: &Config, shapes: &[Vec<usize>]) -> Vec<(DType, f64)> {
    let dir = tempfile::tempdir().expect("tempdir");
    write_model(dir.path(), cfg, DType::Fp32, 11, 1).expect("model writes");
    let file = dir.path().join("model.safetensors");
    let batches: Vec<Batch> = shapes
        .iter()
        .enumerate()
        .map(|(i, l)| batch(cfg, l, i as u64))
        .collect();
    let mut out = Vec::new();
    for dtype in [DType::Fp16, DType::Bf16] {
        let w = PackedWeights::from_file(&file, cfg, dtype).expect("weights");
        let m = bert::load(&w, cfg).expect("model");
        let refs: Vec<_> = batches
            .iter()
            .map(|b| m.forward_rounding(b, Rounding::NONE).expect("forward"))
            .collect();
        println!(
            "{dtype}, {} layers: worst row relative error vs all-f32",
            cfg.num_hidden_layers
        );
        for (name, r) in variants() {
            let mut worst = 0f64;
            for (b, reference) in batches.iter().zip(&refs) {
                let o = m.forward_rounding(b, r).expect("forward");
                for row in 0..b.batch {
                    worst = worst.max(rel_err(o.row(row), reference.row(row)));
                }
            }
            println!("  {name:<22} {worst:.2e}");
            if r == Rounding::ALL {
                out.push((dtype, worst));
            }
        }
    }
    out
}

#[test]
fn two_layer_recipe_error_is_small() {
    let cfg = Arch::Tiny.config(Task::SequenceClassification, 3);
    for (dtype, e) in budget(&cfg, &[vec![7], vec![5, 16, 9], vec![64, 64]]) {
        let tol = if dtype == DType::Fp16 { 2e-3 } else { 1e-2 };
        assert!(e <= tol, "{dtype}: {e} > {tol}");
    }
}

#[test]
#[ignore = "12 layers: a minute or more on a small CPU"]
fn bert_base_error_budget() {
    let cfg = Arch::BertBase.config(Task::SequenceClassification, 2);
    budget(&cfg, &[vec![1], vec![128, 100, 37, 128], vec![20; 8]]);
}
