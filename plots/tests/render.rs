//! Renders each kind of figure from a small sweep and checks the files are real images.

use ptm_sim::scenario::Scenario;
use ptm_sim::sweep::{self, Inputs};
use ptm_sim::workload::{FileSource, NoFiles};
use std::path::{Path, PathBuf};

/// Serves the example profile as `p.ron`.
struct ExampleProfile;

impl FileSource for ExampleProfile {
    fn read(&self, path: &Path) -> ptm_sim::Result<(String, String)> {
        if path == Path::new("p.ron") {
            let p = ptm_sim::profile::Profile::example();
            Ok((ron::ser::to_string(&p).unwrap(), "p.ron".into()))
        } else {
            NoFiles.read(path)
        }
    }
}

fn sweep_cells(grid: &str) -> Vec<sweep::CellReport> {
    let text = format!(
        r#"Scenario(name: "tiny", profile: "p.ron", model: "bert-base", instances: 2,
           workload: Generate(requests: 300, arrivals: Poisson(rate_rps: 10.0), tenants: 20,
                              popularity: Zipf(s: 1.0)),
           policies: ["fcfs-rr", "omls", "affinity"], seeds: [1, 2],
           sweep: Some(({grid})))"#
    );
    let s = Scenario::from_ron(&text, "tiny.ron").unwrap();
    let cells = sweep::cells(&s);
    let inputs = Inputs::load(&s, &cells, &ExampleProfile).unwrap();
    sweep::run(&s, &cells, &inputs, &|| ()).unwrap()
}

fn out_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn assert_images(files: &[PathBuf], title: &str) {
    assert!(!files.is_empty());
    for f in files {
        let bytes = std::fs::read(f).unwrap();
        match f.extension().and_then(|e| e.to_str()) {
            Some("png") => {
                assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{}", f.display());
                assert!(
                    bytes.len() > 15_000,
                    "{}: {} bytes is too small for a chart",
                    f.display(),
                    bytes.len()
                );
            }
            Some("svg") => {
                let text = String::from_utf8(bytes).unwrap();
                assert!(
                    text.starts_with("<svg") && text.contains(title),
                    "{}",
                    f.display()
                );
                assert!(
                    text.matches("<text").count() > 10,
                    "{}: axis labels and legend missing",
                    f.display()
                );
            }
            other => panic!("unexpected file {other:?}"),
        }
    }
}

#[test]
fn lines_against_load_with_seed_bands_and_cdfs() {
    let cells = sweep_cells("offered_rps: [5.0, 10.0, 20.0]");
    let out = out_dir("plots-lines");
    let files = ptm_plots::render_sweep(&cells, "tiny", &out).unwrap();
    assert_images(&files, "tiny");
    for stem in [
        "throughput",
        "overtimes",
        "switches",
        "latency-p99",
        "latency-cdf",
    ] {
        assert!(
            out.join(format!("{stem}.png")).exists() && out.join(format!("{stem}.svg")).exists(),
            "{stem}"
        );
    }
}

#[test]
fn bars_when_only_categories_vary_and_facets_when_lines_would_crowd() {
    let cells = sweep_cells("loading: [Split, Full]");
    let out = out_dir("plots-bars");
    assert_images(
        &ptm_plots::render_sweep(&cells, "tiny", &out).unwrap(),
        "tiny",
    );
    assert!(out.join("latency-cdf-full.png").exists());
    let cells =
        sweep_cells("offered_rps: [5.0, 10.0], popularity: [Uniform, Zipf(s: 0.8), Zipf(s: 1.2)]");
    let out = out_dir("plots-facets");
    assert_images(
        &ptm_plots::render_sweep(&cells, "tiny", &out).unwrap(),
        "tiny",
    );
    for facet in ["uniform", "zipf-0_8", "zipf-1_2"] {
        assert!(
            out.join(format!("throughput-{facet}.png")).exists(),
            "{facet}"
        );
    }
}

#[test]
fn timelines_render_and_bad_ones_are_named() {
    let out = out_dir("plots-timeline");
    std::fs::create_dir_all(&out).unwrap();
    let csv = out.join("t.csv");
    std::fs::write(
        &csv,
        "instance,kind,start_ms,end_ms,request,tenant\n0,cold_load,0.0,900.0,0,A\n0,inference,900.0,950.0,0,A\n\
         1,idle,0.0,100.0,,\n1,switch,100.0,200.0,1,B\n1,inference,200.0,260.0,1,B\n",
    )
    .unwrap();
    let rows = ptm_plots::read_timeline_csv(&csv).unwrap();
    assert_eq!(rows.len(), 5);
    assert_images(
        &ptm_plots::render_timeline(&rows, "t", &out).unwrap(),
        "per-instance timeline",
    );
    std::fs::write(
        &csv,
        "instance,kind,start_ms,end_ms,request,tenant\n0,nap,0,1,,\n",
    )
    .unwrap();
    let err = ptm_plots::read_timeline_csv(&csv).unwrap_err().to_string();
    assert!(err.contains("t.csv:2"), "{err}");
}
