//! Profile identity end to end: a profile records what it describes, `ptm profile check`
//! prints it side by side with this build and a zoo/device/dtype, and `ptm run --live
//! --compare` and `ptm serve --profile` refuse a profile of another device kind, model
//! architecture or dtype (the shipped H200 BERT-base fp16 profile against a CPU tiny zoo)
//! unless `--allow-profile-mismatch` is given.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn ptm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ptm"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("ptm runs")
}

fn ok(args: &[&str]) -> (String, String) {
    let out = ptm(args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "ptm {args:?} failed: {err}");
    (String::from_utf8(out.stdout).unwrap(), err)
}

fn fails(args: &[&str]) -> (String, String) {
    let out = ptm(args);
    assert_eq!(
        out.status.code(),
        Some(2),
        "ptm {args:?} should fail with code 2"
    );
    (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn repo(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(path)
        .display()
        .to_string()
}

/// A 3-tenant tiny fp32 zoo and a trace of 12 requests over its tenants.
fn zoo_and_trace(dir: &Path) -> (String, String) {
    let zoo = dir.join("zoo").display().to_string();
    ok(&[
        "zoo",
        "make",
        "--arch",
        "tiny",
        "--tenants",
        "3",
        "--out",
        &zoo,
    ]);
    let mut trace = String::from("arrival_ms,tenant,samples,seq_len\n");
    for i in 0..12 {
        trace += &format!("{},t{},2,16\n", i * 10, i % 3);
    }
    let t = dir.join("t.csv");
    std::fs::write(&t, trace).unwrap();
    (zoo, t.display().to_string())
}

#[test]
fn the_shipped_h200_profile_is_refused_for_a_cpu_zoo_by_check_compare_and_serve() {
    let dir = temp_dir("identity-refused");
    let (zoo, trace) = zoo_and_trace(&dir);
    let h200 = repo("scenarios/profiles/h200.ron");

    // `profile check`: every field side by side, the refused ones marked, exit code 2.
    let (table, err) = fails(&["profile", "check", &h200, "--zoo", &zoo, "--device", "cpu"]);
    for field in [
        "device kind",
        // The shipped profile records what it describes (no field inferred from names).
        "cuda",
        "model bert-base-fp16: architecture",
        "bert-base",
        "encoder",
        "tiny",
        "runtime build",
        "REFUSED",
    ] {
        assert!(table.contains(field), "{field} missing from:\n{table}");
    }
    assert!(err.contains("refused"), "{err}");

    // `run --live --compare`: refused before anything is replayed, naming the fields.
    let live = |extra: &[&str]| {
        let mut args = vec![
            "run",
            "--live",
            "--zoo",
            &zoo,
            "--device",
            "cpu",
            "--trace",
            &trace,
            "--profile",
            &h200,
            "--model",
            "bert-base-fp16",
            "--policy",
            "fcfs-rr",
            "--instances",
            "1",
            "--compare",
            "--json",
        ];
        args.extend_from_slice(extra);
        args.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let args = live(&[]);
    let (_, err) = fails(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        err.contains("does not describe this run")
            && err.contains("device kind: profile cuda, this run cpu")
            && err.contains("architecture: profile bert-base, this run tiny")
            && err.contains("dtype: profile fp16, this run fp32")
            && err.contains("--allow-profile-mismatch"),
        "{err}"
    );
    // …and compared all the same when the user insists, with the mismatch warned about.
    let args = live(&["--allow-profile-mismatch"]);
    let (out, err) = ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(err.contains("warning") && err.contains("allowed"), "{err}");
    let cells: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(cells[0]["live"]["completed"], 12);
    assert_eq!(cells[0]["simulated"]["completed"], 12);

    // `serve --profile`: refused at start-up, before listening.
    let (_, err) = fails(&[
        "serve",
        "--zoo",
        &zoo,
        "--listen",
        "127.0.0.1:0",
        "--profile",
        &h200,
        "--model",
        "bert-base-fp16",
    ]);
    assert!(
        err.contains("does not describe this run") && err.contains("device kind"),
        "{err}"
    );
}

#[test]
fn a_calibrated_profile_records_its_identity_and_matches_its_own_zoo() {
    let dir = temp_dir("identity-matches");
    let (zoo, trace) = zoo_and_trace(&dir);
    let profile = dir.join("cpu.ron").display().to_string();
    ok(&[
        "calibrate",
        "--device",
        "cpu",
        "--zoo",
        &zoo,
        "--quick",
        "--out",
        &profile,
    ]);
    let text = std::fs::read_to_string(&profile).unwrap();
    for field in [
        "kind: Some(cpu)",
        "runtime: Some(",
        "build: \"",
        "identity: Some(",
        "arch: \"tiny\"",
        "dtype: \"fp32\"",
    ] {
        assert!(text.contains(field), "{field} missing from the profile");
    }
    let (table, _) = ok(&[
        "profile", "check", &profile, "--zoo", &zoo, "--device", "cpu",
    ]);
    assert!(table.contains("matches: nothing refused"), "{table}");
    assert!(!table.contains("REFUSED"), "{table}");
    // The same profile for the zoo in another dtype is refused.
    let (table, _) = fails(&[
        "profile", "check", &profile, "--zoo", &zoo, "--device", "cpu", "--dtype", "bf16",
    ]);
    assert!(
        table.contains("dtype") && table.contains("REFUSED"),
        "{table}"
    );
    // The live comparison accepts it without a word about the profile.
    let (out, err) = ok(&[
        "run",
        "--live",
        "--zoo",
        &zoo,
        "--device",
        "cpu",
        "--trace",
        &trace,
        "--profile",
        &profile,
        "--model",
        "tiny-fp32",
        "--policy",
        "fcfs-rr",
        "--instances",
        "1",
        "--compare",
        "--json",
    ]);
    assert!(!err.contains("warning"), "{err}");
    let cells: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(cells[0]["live"]["completed"], 12);
}
