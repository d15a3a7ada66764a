//! End to end, parameter-efficient tenants through every flow on the CPU: a LoRA zoo over a
//! tiny backbone, `ptm calibrate --pet-zoo` measuring its costs, a scenario of PET tenants
//! simulated and replayed live (`--live --compare`: the same delta loads and batches in both
//! worlds), and a zoo of the wrong kind refused.

use std::path::Path;
use std::process::Command;

fn ptm(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ptm"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("ptm runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

fn ok(args: &[&str]) -> String {
    let (ok, out, err) = ptm(args);
    assert!(ok, "ptm {args:?}: {err}");
    out
}

#[test]
fn pet_tenants_calibrate_simulate_and_replay_live() {
    let dir = tempfile::tempdir().unwrap();
    let (full, pet) = (dir.path().join("full"), dir.path().join("pet"));
    ok(&[
        "zoo",
        "make",
        "--arch",
        "tiny",
        "--tenants",
        "2",
        "--out",
        p(&full),
    ]);
    ok(&[
        "zoo",
        "make",
        "--arch",
        "tiny",
        "--pet",
        "lora",
        "--rank",
        "4",
        "--targets",
        "query,value",
        "--tenants",
        "30",
        "--out",
        p(&pet),
    ]);
    let profile = dir.path().join("cpu.ron");
    ok(&[
        "calibrate",
        "--device",
        "cpu",
        "--zoo",
        p(&full),
        "--pet-zoo",
        p(&pet),
        "--quick",
        "--out",
        p(&profile),
    ]);
    let text = std::fs::read_to_string(&profile).unwrap();
    assert!(
        text.contains("\"lora-r4\"") && text.contains("segment_ms"),
        "{text}"
    );
    let scenario = dir.path().join("pet.ron");
    std::fs::write(
        &scenario,
        r#"Scenario(
            name: "pet",
            profile: "cpu.ron",
            model: "tiny-fp32",
            instances: 2,
            forward_batch: 8,
            preload: Empty,
            batching: Some((max_wait_ms: 0.0)),
            pet: Some((kind: Lora(rank: 4), delta_pool: Tenants(16))),
            workload: Generate(requests: 60, arrivals: Poisson(rate_rps: 60.0), tenants: 30, popularity: Zipf(s: 1.0)),
            request: (samples: 2, seq_len: 16, deadline_ms: 3000.0),
            policies: ["pets", "deadline-mixed"],
        )"#,
    )
    .unwrap();
    let sim = ok(&["run", p(&scenario), "--json"]);
    let reports: serde_json::Value = serde_json::from_str(&sim).unwrap();
    assert_eq!(reports.as_array().unwrap().len(), 2);
    let live = ok(&[
        "run",
        p(&scenario),
        "--live",
        "--zoo",
        p(&pet),
        "--compare",
        "--json",
    ]);
    let cells: serde_json::Value = serde_json::from_str(&live).unwrap();
    for cell in cells.as_array().unwrap() {
        let (l, s) = (&cell["live"], &cell["simulated"]);
        assert_eq!(l["completed"], 60, "{cell}");
        // Delta loads are the ledger's decisions; live timing may form other batches, so the
        // counts agree closely rather than exactly.
        let (ls, ss) = (
            l["switches"].as_f64().unwrap(),
            s["switches"].as_f64().unwrap(),
        );
        assert!(ss > 0.0 && (ls - ss).abs() <= (0.2 * ss).max(3.0), "{cell}");
        assert_eq!(l["cold_loads"], 0);
    }
    // A zoo of full fine-tunes for PET tenants is refused, naming both kinds.
    let (ok_full, _, err) = ptm(&["run", p(&scenario), "--live", "--zoo", p(&full)]);
    assert!(
        !ok_full && err.contains("full fine-tunes") && err.contains("pet"),
        "{err}"
    );
}
