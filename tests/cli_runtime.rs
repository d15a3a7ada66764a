//! End-to-end tests of the runtime subcommands: `ptm zoo make`, `ptm infer` (text and JSON),
//! the clear refusal of `--device cuda` without a GPU, and the real MiniLM checkpoint through
//! `ptm infer --device cpu` against the golden reference (when `PTM_MINILM_DIR` is set).

use std::path::Path;
use std::process::Command;

fn ptm(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ptm"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("ptm runs")
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

#[test]
fn zoo_make_then_infer_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = ptm(&[
        "zoo",
        "make",
        "--arch",
        "tiny",
        "--tenants",
        "2",
        "--out",
        path(dir.path()),
        "--dtype",
        "fp16",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("zoo.ron").is_file());
    let model = dir.path().join("tiny-t001");
    let out = ptm(&[
        "infer",
        "--model",
        path(&model),
        "--dtype",
        "bf16",
        "--text",
        "hello world",
        "--text",
        "gpu",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    let rows = v.as_array().expect("one entry per text");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1]["token_ids"], serde_json::json!([101, 261, 102]));
    assert_eq!(rows[1]["task"], "token_classification");
    assert_eq!(rows[1]["shape"], serde_json::json!([3, 9]));
    let text = ptm(&["infer", "--model", path(&model), "--text", "gpu"]);
    let s = String::from_utf8_lossy(&text.stdout);
    assert!(
        s.contains("token_ids: [101, 261, 102]") && s.contains("token 2 logits"),
        "{s}"
    );
}

#[test]
fn bad_arch_and_missing_gpu_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let out = ptm(&["zoo", "make", "--arch", "gpt-2", "--out", path(dir.path())]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown architecture `gpt-2`") && err.contains("bert-base"),
        "{err}"
    );
    if std::env::var("PTM_TEST_CUDA").is_ok() {
        println!("SKIPPED the no-GPU half: PTM_TEST_CUDA says a GPU is present");
        return;
    }
    assert!(
        ptm(&["zoo", "make", "--arch", "tiny", "--out", path(dir.path())])
            .status
            .success()
    );
    let out = ptm(&[
        "infer",
        "--model",
        path(&dir.path().join("tiny-t000")),
        "--device",
        "cuda:0",
        "--text",
        "x",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no usable CUDA GPU for `cuda:0`"), "{err}");
}

#[test]
fn minilm_through_ptm_infer_matches_golden() {
    let Some(dir) = std::env::var_os("PTM_MINILM_DIR").map(std::path::PathBuf::from) else {
        println!("SKIPPED minilm_through_ptm_infer_matches_golden: PTM_MINILM_DIR is not set");
        return;
    };
    if !dir.join("model.safetensors").is_file() {
        println!("SKIPPED minilm_through_ptm_infer_matches_golden: no model.safetensors in PTM_MINILM_DIR");
        return;
    }
    let golden: serde_json::Value =
        serde_json::from_str(include_str!("../runtime/tests/golden/minilm-golden.json")).unwrap();
    let mut args = vec!["infer", "--model", path(&dir), "--device", "cpu", "--json"];
    let rows = golden["sentences"].as_array().unwrap();
    for r in rows {
        args.push("--text");
        args.push(r["text"].as_str().unwrap());
    }
    let out = ptm(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for (g, want) in got.as_array().unwrap().iter().zip(rows) {
        assert_eq!(g["token_ids"], want["token_ids"]);
        let a: Vec<f64> = serde_json::from_value(g["values"].clone()).unwrap();
        let b: Vec<f64> = serde_json::from_value(want["embedding"].clone()).unwrap();
        let dot: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        let n = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
        let cos = dot / (n(&a) * n(&b));
        assert!(cos >= 0.9999, "cosine {cos} for {}", want["text"]);
    }
}

#[test]
fn pet_zoo_make_then_infer_every_kind() {
    for kind in ["lora", "adapter", "bitfit"] {
        let dir = tempfile::tempdir().unwrap();
        let out = ptm(&[
            "zoo",
            "make",
            "--arch",
            "tiny",
            "--pet",
            kind,
            "--rank",
            "4",
            "--targets",
            "query,value,output.dense",
            "--placement",
            "pfeiffer",
            "--reduction-factor",
            "4",
            "--tenants",
            "3",
            "--out",
            path(dir.path()),
        ]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains(&format!("3 {kind} tenants")),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(dir.path().join("pet.ron").is_file());
        assert!(dir.path().join("backbone/model.safetensors").is_file());
        for (t, task, shape) in [
            ("t000", "sequence_classification", serde_json::json!([2])),
            ("t001", "token_classification", serde_json::json!([3, 9])),
            ("t002", "embedding", serde_json::json!([32])),
        ] {
            let model = dir.path().join(format!("tiny-{kind}-{t}"));
            let out = ptm(&[
                "infer",
                "--model",
                path(&model),
                "--dtype",
                "bf16",
                "--text",
                "gpu",
                "--json",
            ]);
            assert!(
                out.status.success(),
                "{kind} {t}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON output");
            assert_eq!(v[0]["task"], task, "{kind} {t}");
            assert_eq!(v[0]["shape"], shape, "{kind} {t}");
            assert_eq!(v[0]["token_ids"], serde_json::json!([101, 261, 102]));
        }
        // On a GPU a tenant runs in a PET slot (tests/pet_gpu.rs); without one (CI) the error
        // names the device and why.
        let model = dir.path().join(format!("tiny-{kind}-t000"));
        let out = ptm(&[
            "infer",
            "--model",
            path(&model),
            "--device",
            "cuda",
            "--text",
            "x",
            "--json",
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON output");
            assert_eq!(v[0]["shape"], serde_json::json!([2]), "{kind}");
        } else {
            assert!(err.contains("no usable CUDA GPU for `cuda:0`"), "{err}");
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let out = ptm(&[
        "zoo",
        "make",
        "--arch",
        "tiny",
        "--pet",
        "lora",
        "--targets",
        "query,qkv",
        "--out",
        path(dir.path()),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("LoRA target `qkv`"),
        "{err}"
    );
}

#[test]
fn bench_pet_needs_a_gpu_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let out = ptm(&[
        "zoo",
        "make",
        "--arch",
        "tiny",
        "--pet",
        "lora",
        "--tenants",
        "4",
        "--out",
        path(dir.path()),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = ptm(&["bench", "pet", "--zoo", path(dir.path()), "--device", "cpu"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--device cuda"),
        "{err}"
    );
    let out = ptm(&[
        "bench",
        "pet",
        "--zoo",
        path(dir.path()),
        "--mixed",
        "8",
        "--batch",
        "4",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--mixed"), "{err}");
    // With a GPU it runs (tests/pet_gpu.rs and the device script measure it); without one
    // (CI) the error names the device.
    let out = ptm(&[
        "bench",
        "pet",
        "--zoo",
        path(dir.path()),
        "--batch",
        "2",
        "--seq",
        "8",
        "--mixed",
        "2",
        "--iters",
        "1",
        "--warmup",
        "1",
        "--misses",
        "1",
    ]);
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("no usable CUDA GPU for `cuda:0`"), "{err}");
    }
}
