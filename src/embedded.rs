//! The scenarios, profiles and traces shipped in `scenarios/`, built into the binary so that
//! `ptm run` works from any directory on a fresh machine, and how a path names a file.
//!
//! One rule everywhere (flags, a user's scenario file, an embedded scenario, a sweep's saved
//! `scenario.ron`): a relative path is looked up next to the scenario that names it (on disk for
//! a scenario file, in the embedded tree for an embedded one), then among the embedded files by
//! name (`profiles/h200.ron`, also written `scenarios/profiles/h200.ron`). A path given on the
//! command line is looked up on disk (relative to the working directory), then by embedded
//! name. Absolute paths are read from disk.

use anyhow::Context as _;
use ptm_sim::error::Error;
use ptm_sim::profile::Profile;
use ptm_sim::scenario::Scenario;
use ptm_sim::workload::{FileSource, WorkloadSpec};
use std::path::{Component, Path, PathBuf};

/// The scenario `ptm run` uses when none is named.
pub const DEFAULT_SCENARIO: &str = "fastptm/overall.ron";

macro_rules! embed {
    ($($path:literal),* $(,)?) => {
        &[$(($path, include_str!(concat!("../scenarios/", $path)))),*]
    };
}

/// Every shipped file, by its path under `scenarios/`.
static FILES: &[(&str, &str)] = embed![
    "fastptm/overall.ron",
    "fastptm/overall-rtx3090.ron",
    "fastptm/instances.ron",
    "fastptm/loading.ron",
    "fastptm/omls-vs-fcfs.ron",
    "fastptm/sequence.ron",
    "synthetic/zipf-tenants.ron",
    "synthetic/zipf-live.ron",
    "synthetic/tiers.ron",
    "synthetic/pet.ron",
    "bench/sweep-10k.ron",
    "profiles/rtx3090-fastptm.ron",
    "profiles/h200.ron",
    "profiles/h100.ron",
    "traces/fastptm/167281324864_dat_T240_L12_M0.20.json",
    "traces/fastptm/167281324903_dat_T480_L12_M0.20.json",
    "traces/fastptm/167281892426_dat_T240_L12_M0.10.json",
    "traces/fastptm/167281892465_dat_T480_L12_M0.10.json",
    "traces/fastptm/gen-s8_dat_T240_L12_M0.08.json",
    "traces/fastptm/gen-s8_dat_T480_L12_M0.08.json",
    "traces/fastptm/gen-s5_dat_T240_L12_M0.05.json",
    "traces/fastptm/gen-s5_dat_T480_L12_M0.05.json",
];

/// The names of every embedded file.
pub fn names() -> impl Iterator<Item = &'static str> {
    FILES.iter().map(|(name, _)| *name)
}

/// The embedded file `name` (`profiles/h200.ron`, `scenarios/profiles/h200.ron`,
/// `./profiles/../profiles/h200.ron`), if there is one.
pub fn lookup(name: &Path) -> Option<(&'static str, &'static str)> {
    let key = normalize(name);
    let key = key.strip_prefix("scenarios").unwrap_or(&key);
    let key = key.to_str()?;
    FILES.iter().find(|(n, _)| *n == key).copied()
}

/// The embedded file's text, named as `ptm show` and `ptm list` name it.
pub fn show(name: &str) -> anyhow::Result<&'static str> {
    let p = Path::new(name);
    lookup(p)
        .or_else(|| {
            (p.extension().is_none())
                .then(|| lookup(&p.with_extension("ron")))
                .flatten()
        })
        .map(|(_, text)| text)
        .with_context(|| format!("no embedded file {name:?} (`ptm list` shows them)"))
}

/// One line describing an embedded file: a scenario's description, a profile's GPU and models,
/// a trace's shape.
pub fn describe(name: &str) -> String {
    let Some((_, text)) = lookup(Path::new(name)) else {
        return String::new();
    };
    let first_sentence = |s: &str| {
        let s = s.split(". ").next().unwrap_or(s).trim();
        let mut s = s.replace('\n', " ");
        if s.chars().count() > 100 {
            s = s.chars().take(97).collect::<String>() + "…";
        }
        s
    };
    if name.starts_with("profiles/") {
        return match Profile::from_ron(text, name) {
            Ok(p) => {
                let models: Vec<&str> = p.models.keys().map(String::as_str).collect();
                let how = if p.calibration.is_some() {
                    "measured by ptm calibrate"
                } else {
                    "published costs"
                };
                format!(
                    "profile: {} ({how}), models {}",
                    p.gpu.name,
                    models.join(", ")
                )
            }
            Err(e) => format!("profile (does not parse: {e})"),
        };
    }
    if name.starts_with("traces/") {
        // FastPTM's file names: <id>_dat_T<count>_L<types>_M<mu>.json
        let stem = Path::new(name)
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("");
        let field = |tag: char| {
            stem.split('_')
                .find_map(|p| p.strip_prefix(tag).filter(|v| v.parse::<f64>().is_ok()))
                .unwrap_or("?")
        };
        let origin = if stem.starts_with("gen-") {
            "generated like FastPTM's"
        } else {
            "FastPTM's own"
        };
        return format!(
            "trace ({origin}): {} requests over {} types, mean gap {} s",
            field('T'),
            field('L'),
            field('M')
        );
    }
    match Scenario::from_ron(text, name) {
        Ok(s) => format!("scenario: {}", first_sentence(&s.description)),
        Err(e) => format!("scenario (does not parse: {e})"),
    }
}

/// Resolves `.` and `..` without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Where relative paths resolve first.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Base {
    /// A folder on disk (a scenario file's).
    Disk(PathBuf),
    /// A folder of the embedded tree (an embedded scenario's).
    Embedded(PathBuf),
}

/// Reads files by the module's rule.
#[derive(Debug, Clone)]
pub struct Files {
    base: Base,
}

impl Files {
    /// Paths relative to `scenarios/` of the embedded tree.
    pub fn at_root() -> Self {
        Files {
            base: Base::Embedded(PathBuf::new()),
        }
    }

    /// The name under which `path` (as a scenario loaded by `self` writes it) is found again
    /// from anywhere: an absolute path on disk, or an embedded file's name.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            return path.to_path_buf();
        }
        match &self.base {
            Base::Disk(base) => {
                let full = base.join(path);
                if full.exists() {
                    normalize(&full)
                } else if let Some((name, _)) = lookup(path) {
                    PathBuf::from(name)
                } else {
                    normalize(&full)
                }
            }
            Base::Embedded(base) => {
                let key = normalize(&base.join(path));
                match lookup(&key).or_else(|| lookup(path)) {
                    Some((name, _)) => PathBuf::from(name),
                    None => key,
                }
            }
        }
    }
}

fn not_found(shown: &Path) -> Error {
    Error::invalid(
        shown.display().to_string(),
        "no such file on disk, and no embedded file of that name (`ptm list` shows them)",
    )
}

impl FileSource for Files {
    fn read(&self, path: &Path) -> Result<(String, String), Error> {
        let from_disk = |full: &Path| {
            std::fs::read_to_string(full)
                .map(|text| (text, full.display().to_string()))
                .map_err(|e| Error::io(full, e))
        };
        let embedded = |key: &Path| {
            lookup(key)
                .map(|(name, text)| (text.to_string(), format!("<embedded>/scenarios/{name}")))
        };
        if path.is_absolute() {
            return from_disk(path);
        }
        match &self.base {
            Base::Disk(base) => {
                let full = base.join(path);
                if full.exists() {
                    return from_disk(&full);
                }
                embedded(path).ok_or_else(|| not_found(&full))
            }
            Base::Embedded(base) => embedded(&base.join(path))
                .or_else(|| embedded(path))
                .ok_or_else(|| {
                    not_found(&Path::new("<embedded>/scenarios").join(normalize(&base.join(path))))
                }),
        }
    }
}

/// A path given on the command line: the file on disk (made absolute, so it means the same
/// whatever scenario it is used with), else the embedded file of that name; refused when
/// neither exists.
pub fn flag_path(path: &Path) -> anyhow::Result<PathBuf> {
    if path.exists() {
        return Ok(std::path::absolute(path)?);
    }
    match lookup(path) {
        Some((name, _)) => Ok(PathBuf::from(name)),
        None => Err(not_found(path).into()),
    }
}

/// A scenario and where its relative paths resolve.
pub struct Loaded {
    /// The parsed scenario.
    pub scenario: Scenario,
    /// Reads the files it names.
    pub files: Box<Files>,
}

impl Loaded {
    /// The scenario with every path it names resolved ([`Files::resolve`]): what a sweep saves,
    /// so that the saved file runs again from any folder.
    pub fn resolved_scenario(&self) -> Scenario {
        let f = &self.files;
        let mut s = self.scenario.clone();
        s.profile = f.resolve(&s.profile);
        let trace = |w: &mut WorkloadSpec| {
            if let WorkloadSpec::Trace(p) = w {
                *p = f.resolve(p);
            }
        };
        trace(&mut s.workload);
        if let Some(sweep) = &mut s.sweep {
            for (_, w) in &mut sweep.workloads {
                trace(w);
            }
            for p in &mut sweep.profiles {
                *p = f.resolve(p);
            }
        }
        s
    }
}

/// Loads the scenario at `path` on disk or, failing that, the embedded one of that name
/// (`fastptm/overall`, `fastptm/overall.ron` or `scenarios/fastptm/overall.ron`); `None` means
/// the default.
pub fn load_scenario(path: Option<&Path>) -> anyhow::Result<Loaded> {
    if let Some(path) = path.filter(|p| p.is_file()) {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let name = path.display().to_string();
        let scenario = Scenario::from_ron(&text, &name)?;
        let base = std::path::absolute(path)?
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        return Ok(Loaded {
            scenario,
            files: Box::new(Files {
                base: Base::Disk(base),
            }),
        });
    }
    let wanted = path.map_or(PathBuf::from(DEFAULT_SCENARIO), |p| {
        if p.extension().is_some() {
            p.to_path_buf()
        } else {
            p.with_extension("ron")
        }
    });
    let (key, text) = lookup(&wanted).with_context(|| {
        format!(
            "no scenario file {} on disk, and no embedded scenario of that name (`ptm list` shows them)",
            path.map_or(String::new(), |p| p.display().to_string())
        )
    })?;
    let name = format!("<embedded>/scenarios/{key}");
    let scenario = Scenario::from_ron(text, &name)?;
    let base = Path::new(key)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    Ok(Loaded {
        scenario,
        files: Box::new(Files {
            base: Base::Embedded(base),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_file_is_embedded() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let mut on_disk = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let p = entry.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("ron" | "json" | "csv" | "jsonl")
                ) {
                    on_disk.push(p.strip_prefix(&root).unwrap().to_str().unwrap().to_string());
                }
            }
        }
        on_disk.sort();
        let mut embedded: Vec<String> = names().map(str::to_string).collect();
        embedded.sort();
        assert_eq!(
            on_disk, embedded,
            "scenarios/ and the embedded list must agree"
        );
    }

    #[test]
    fn embedded_paths_resolve_relative_to_their_scenario_then_by_name() {
        let files = Files {
            base: Base::Embedded(PathBuf::from("fastptm")),
        };
        let (text, name) = files
            .read(Path::new("../profiles/rtx3090-fastptm.ron"))
            .unwrap();
        assert!(text.contains("Profile("));
        assert_eq!(name, "<embedded>/scenarios/profiles/rtx3090-fastptm.ron");
        // By name from anywhere, with or without `scenarios/`.
        for p in ["profiles/h200.ron", "scenarios/profiles/h200.ron"] {
            let (_, name) = files.read(Path::new(p)).unwrap();
            assert_eq!(name, "<embedded>/scenarios/profiles/h200.ron");
        }
        let err = files.read(Path::new("nope.ron")).unwrap_err().to_string();
        assert!(
            err.contains("fastptm/nope.ron") && err.contains("ptm list"),
            "{err}"
        );
        // A folder on disk with no such file falls back to the embedded name.
        let disk = Files {
            base: Base::Disk(std::env::temp_dir()),
        };
        let (_, name) = disk.read(Path::new("profiles/h100.ron")).unwrap();
        assert_eq!(name, "<embedded>/scenarios/profiles/h100.ron");
        assert_eq!(
            disk.resolve(Path::new("profiles/h100.ron")),
            PathBuf::from("profiles/h100.ron")
        );
        assert_eq!(
            files.resolve(Path::new(
                "../traces/fastptm/gen-s5_dat_T240_L12_M0.05.json"
            )),
            PathBuf::from("traces/fastptm/gen-s5_dat_T240_L12_M0.05.json")
        );
    }

    #[test]
    fn every_embedded_file_has_a_description() {
        for name in names() {
            let d = describe(name);
            assert!(
                !d.is_empty() && !d.contains("does not parse") && !d.contains('?'),
                "{name}: {d}"
            );
        }
        assert!(describe("profiles/h200.ron").contains("H200"));
        assert!(show("profiles/h200")
            .unwrap()
            .contains("memory_per_instance_bytes"));
        assert!(show("nope").is_err());
    }
}
