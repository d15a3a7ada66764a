//! The scenarios, profiles and traces shipped in `scenarios/`, built into the binary so that
//! `ptm run` works from any directory on a fresh machine.
//!
//! Paths inside embedded scenarios are relative, as on disk; they resolve against the embedded
//! tree. Absolute paths (from command-line flags) are read from disk.

use anyhow::Context as _;
use ptm_sim::error::Error;
use ptm_sim::scenario::Scenario;
use ptm_sim::workload::{DiskFiles, FileSource};
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

fn lookup(path: &Path) -> Option<&'static str> {
    let key = path.to_str()?;
    FILES
        .iter()
        .find(|(name, _)| *name == key)
        .map(|(_, text)| *text)
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

/// Reads relative paths from the embedded tree (relative to `base`) and absolute ones from disk.
#[derive(Debug, Clone)]
pub struct EmbeddedFiles {
    base: PathBuf,
}

impl EmbeddedFiles {
    /// Paths relative to `scenarios/`.
    pub fn at_root() -> Self {
        EmbeddedFiles {
            base: PathBuf::new(),
        }
    }
}

impl FileSource for EmbeddedFiles {
    fn read(&self, path: &Path) -> Result<(String, String), Error> {
        if path.is_absolute() {
            return DiskFiles {
                base: PathBuf::new(),
            }
            .read(path);
        }
        let key = normalize(&self.base.join(path));
        match lookup(&key) {
            Some(text) => Ok((
                text.to_string(),
                format!("<embedded>/scenarios/{}", key.display()),
            )),
            None => Err(Error::invalid(
                format!("<embedded>/scenarios/{}", key.display()),
                "no such embedded file (`ptm list` shows them)",
            )),
        }
    }
}

/// A scenario and where its relative paths resolve.
pub struct Loaded {
    /// The parsed scenario.
    pub scenario: Scenario,
    /// Reads the files it names.
    pub files: Box<dyn FileSource>,
}

/// Loads the scenario at `path` on disk or, failing that, the embedded one of that name
/// (`fastptm/overall`, `fastptm/overall.ron` or `scenarios/fastptm/overall.ron`); `None` means
/// the default.
pub fn load_scenario(path: Option<&Path>) -> anyhow::Result<Loaded> {
    if let Some(path) = path.filter(|p| p.exists()) {
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
            files: Box::new(DiskFiles { base }),
        });
    }
    let wanted = path.map_or(PathBuf::from(DEFAULT_SCENARIO), |p| {
        let p = p.strip_prefix("scenarios").unwrap_or(p);
        if p.extension().is_some() {
            p.to_path_buf()
        } else {
            p.with_extension("ron")
        }
    });
    let text = lookup(&wanted).with_context(|| {
        format!(
            "no scenario file {} on disk, and no embedded scenario of that name (`ptm list` shows them)",
            path.map_or(String::new(), |p| p.display().to_string())
        )
    })?;
    let name = format!("<embedded>/scenarios/{}", wanted.display());
    let scenario = Scenario::from_ron(text, &name)?;
    let base = wanted.parent().map(Path::to_path_buf).unwrap_or_default();
    Ok(Loaded {
        scenario,
        files: Box::new(EmbeddedFiles { base }),
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
    fn embedded_paths_resolve_relative_to_their_scenario() {
        let files = EmbeddedFiles {
            base: PathBuf::from("fastptm"),
        };
        let (text, name) = files
            .read(Path::new("../profiles/rtx3090-fastptm.ron"))
            .unwrap();
        assert!(text.contains("Profile("));
        assert_eq!(name, "<embedded>/scenarios/profiles/rtx3090-fastptm.ron");
        assert!(files.read(Path::new("nope.ron")).is_err());
    }
}
