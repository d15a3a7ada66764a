//! End-to-end: what the `ptm` binary answers to the hostile inputs of issue 13 — an error
//! naming the flag, file, line or field and the bound, exit code 2, never a panic (101) or an
//! abort.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `ptm`; returns (exit code, stdout, stderr).
fn ptm(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ptm"))
        .args(args)
        .output()
        .expect("ptm runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn refused(args: &[&str], wanted: &[&str]) {
    let (code, _, err) = ptm(args);
    assert_eq!(code, Some(2), "ptm {args:?} should be refused: {err}");
    for w in wanted {
        assert!(err.contains(w), "ptm {args:?}: {w:?} not in: {err}");
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[test]
fn run_refuses_what_used_to_panic() {
    let dir = temp_dir("bad-run");
    refused(
        &["run", "--instances", "18446744073709551615"],
        &["instances", "1024"],
    );
    let big = write(&dir, "big.json", "[[\"A\", 0.1],\n [\"B\", 1e308]]");
    refused(&["run", "--trace", &big], &["big.json:2:", "10 years"]);
    let big = write(
        &dir,
        "big.csv",
        "arrival_ms,tenant,samples,seq_len\n1e15,A,16,128\n",
    );
    refused(&["run", "--trace", &big], &["big.csv:2:", "arrival_ms"]);
    let huge = write(
        &dir,
        "huge.csv",
        "arrival_ms,tenant,samples,seq_len\n0,A,4294967295,4294967295\n",
    );
    refused(
        &["run", "--trace", &huge],
        &["huge.csv:2:", "samples 4294967295"],
    );
    let profile = write(
        &dir,
        "p.ron",
        r#"(gpu: (name: "g", memory_bytes: 100000000000), models: {"bert-base-fp16": (
            memory_per_instance_bytes: 1000, cold_load: (ms: Constant(1.0)),
            switch: (split: (ms: Constant(1e300)), full: (ms: Constant(10.0))),
            forward: (points: [(batch: 1, seq_len: 128, ms: Constant(1.0))]))})"#,
    );
    refused(
        &["run", "--profile", &profile],
        &["p.ron", "switch.split.ms", "one hour"],
    );
    let tick = write(
        &dir,
        "tick.ron",
        r#"Scenario(name: "t", profile: "p.ron", model: "m", instances: 1,
           workload: Sequence(repeat: 1, types: 2, gap_ms: 1e300),
           policy_options: (omls: (tick_ms: 0.0000001)))"#,
    );
    refused(
        &["run", &tick],
        &["tick.ron", "policy_options.omls.tick_ms"],
    );
}

#[test]
fn traces_with_a_byte_order_mark_read_and_export_round_trips() {
    let dir = temp_dir("bad-bom");
    let json = write(&dir, "bom.json", "\u{feff}[[\"A\", 0.25], [\"B\", 0.0]]");
    let out = dir.join("out.jsonl").display().to_string();
    let (code, _, err) = ptm(&["trace", "export", "--trace", &json, "--out", &out]);
    assert_eq!(code, Some(0), "{err}");
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        text.starts_with("{\"arrival_ms\":0.000000,\"tenant\":\"A\""),
        "{text}"
    );
    assert!(!text.contains("18446744073709"), "{text}");
    let jsonl = write(&dir, "bom.jsonl", &format!("\u{feff}{text}"));
    let (code, stdout, err) = ptm(&["run", "--trace", &jsonl, "--policy", "fcfs"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(stdout.contains("fcfs"), "{stdout}");
}

#[test]
fn zoo_make_refuses_zero_tenants() {
    let dir = temp_dir("bad-zoo");
    let out = dir.join("z").display().to_string();
    refused(
        &[
            "zoo",
            "make",
            "--arch",
            "tiny",
            "--tenants",
            "0",
            "--out",
            &out,
        ],
        &["--tenants", "1..=100000"],
    );
    assert!(!dir.join("z").exists(), "nothing is written");
}

#[test]
fn infer_refuses_unused_tensors_and_nan_weights() {
    let dir = temp_dir("bad-infer");
    let zoo = dir.join("zoo").display().to_string();
    let (code, _, err) = ptm(&["zoo", "make", "--arch", "tiny", "--out", &zoo]);
    assert_eq!(code, Some(0), "{err}");
    let model = dir.join("zoo").join("tiny-t000");
    let cfg = model.join("config.json");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let m = model.display().to_string();
    std::fs::write(
        &cfg,
        text.replace("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 1"),
    )
    .unwrap();
    refused(
        &["infer", "--model", &m, "--text", "hi"],
        &["model.safetensors", "not used", "encoder.layer.1."],
    );
    std::fs::write(
        &cfg,
        text.replace("\"vocab_size\": 1000", "\"vocab_size\": 1000000000000"),
    )
    .unwrap();
    refused(
        &["infer", "--model", &m, "--text", "hi"],
        &["config.json", "vocab_size 1000000000000", "1000000"],
    );
    std::fs::write(&cfg, &text).unwrap();
    // NaN in the first weight of the word embeddings (the file's data starts after the
    // 8-byte length and the header; tensors are sorted by name, embeddings' LayerNorm first,
    // so find the word embeddings' offset in the header).
    let st = model.join("model.safetensors");
    let mut bytes = std::fs::read(&st).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let at = header["bert.embeddings.word_embeddings.weight"]["data_offsets"][0]
        .as_u64()
        .unwrap() as usize
        + 8
        + n;
    bytes[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(&st, bytes).unwrap();
    refused(
        &["infer", "--model", &m, "--text", "hi"],
        &[
            "bert.embeddings.word_embeddings.weight",
            "not finite",
            "element 0",
        ],
    );
}
