//! Whether a profile describes a run: the profile's identity (device kind and name, driver,
//! each model's architecture and dtype, the runtime version, build and kernel options it was
//! measured with) against what the run will be ([`Expected`]: this build; the zoo, device and
//! dtype when known). A different device kind, GPU, model architecture or dtype is refused:
//! the simulator would answer for another machine or model. A different driver, runtime
//! version, build or kernel options is a warning: the same hardware and model, measured by
//! other code. `ptm profile check` prints every field side by side; `ptm run --live --compare`
//! and `ptm serve --profile` refuse through [`Check::enforce`].

use crate::identity::Expected;
use crate::{Error, Result};
use ptm_sim::profile::{DeviceKind, EncoderShape, Profile, Provenance};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// How a field of the profile compares with the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The same.
    Same,
    /// Different or not recorded, and it matters less: a warning.
    Warning,
    /// Different or not recorded, and the profile would describe another machine or model.
    Refused,
    /// The run's side is not known (not given, or not askable here).
    NotChecked,
}

impl Verdict {
    fn label(self) -> &'static str {
        match self {
            Verdict::Same => "same",
            Verdict::Warning => "differs (warning)",
            Verdict::Refused => "REFUSED",
            Verdict::NotChecked => "not checked",
        }
    }
}

/// One field side by side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// What is compared.
    pub field: String,
    /// The profile's value.
    pub profile: String,
    /// The run's value.
    pub run: String,
    /// How they compare.
    pub verdict: Verdict,
}

/// A profile's fields against a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The profile's name (its file).
    pub profile: String,
    /// Every field compared.
    pub rows: Vec<Row>,
}

const NOT_RECORDED: &str = "not recorded";
const NOT_GIVEN: &str = "not given";

fn inferred(value: String, how: Provenance) -> String {
    match how {
        Provenance::Recorded => value,
        Provenance::Inferred => format!("{value} (inferred)"),
    }
}

/// A GPU profile's kernel options with every option of `run` it does not record added as off:
/// options are added off, meaning the kernels that ran before them (`KernelOptions`), so a
/// build without one ran what "off" selects. A CPU profile (none recorded) stays empty.
fn recorded_options(
    recorded: &BTreeMap<String, bool>,
    run: &ptm_sim::profile::RuntimeBuild,
) -> BTreeMap<String, bool> {
    let mut o = recorded.clone();
    if !o.is_empty() {
        for k in run.kernel_options.keys() {
            o.entry(k.clone()).or_insert(false);
        }
    }
    o
}

fn options_text(o: &BTreeMap<String, bool>) -> String {
    if o.is_empty() {
        return "none (cpu)".into();
    }
    o.iter()
        .map(|(k, v)| format!("{k}={}", if *v { "on" } else { "off" }))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A field whose difference is refused (`hard`) or warned about; `profile` `None`: not
/// recorded; `run` `None`: not known.
fn row(field: String, profile: Option<String>, run: Option<String>, hard: bool) -> Row {
    let bad = if hard {
        Verdict::Refused
    } else {
        Verdict::Warning
    };
    let verdict = match (&profile, &run) {
        (_, None) => Verdict::NotChecked,
        (None, Some(_)) => bad,
        (Some(p), Some(r)) if strip(p) == strip(r) => Verdict::Same,
        _ => bad,
    };
    Row {
        field,
        profile: profile.unwrap_or_else(|| NOT_RECORDED.into()),
        run: run.unwrap_or_else(|| NOT_GIVEN.into()),
        verdict,
    }
}

/// A value without its " (inferred)" note.
fn strip(v: &str) -> &str {
    v.strip_suffix(" (inferred)").unwrap_or(v)
}

impl Check {
    /// Compares `profile` (named `name`) with `run`: its device and build, and the model
    /// `model` (every model of the profile when `None`).
    pub fn new(profile: &Profile, name: &str, model: Option<&str>, run: &Expected) -> Result<Self> {
        let mut rows = Vec::new();
        let kind = profile.device_kind();
        let dev = run.device.as_ref();
        rows.push(row(
            "device kind".into(),
            kind.map(|(k, how)| inferred(k.to_string(), how)),
            dev.map(|d| d.kind.to_string()),
            true,
        ));
        // A GPU is refused by name (another GPU model); a CPU's name (its thread count) warns.
        let gpu = kind.is_some_and(|(k, _)| k == DeviceKind::Cuda)
            || dev.is_some_and(|d| d.kind == DeviceKind::Cuda);
        let mut device = row(
            "device".into(),
            Some(profile.gpu.name.clone()),
            dev.and_then(|d| d.name.clone().ok()),
            gpu,
        );
        if let Some(Err(why)) = dev.map(|d| &d.name) {
            device.run = format!("unknown ({why})");
        }
        rows.push(device);
        rows.push(row(
            "driver".into(),
            profile.calibration.as_ref().map(|c| c.driver.clone()),
            dev.map(|d| d.driver.clone()),
            false,
        ));
        let models: Vec<&String> = match model {
            Some(m) => {
                let found = profile.models.get_key_value(m).ok_or_else(|| {
                    Error::Invalid(format!(
                        "{name} has no model `{m}` (it has: {})",
                        profile
                            .models
                            .keys()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?;
                vec![found.0]
            }
            None => profile.models.keys().collect(),
        };
        for m in models {
            let id = profile.models[m].identity_or_inferred(m);
            let theirs = run.model.as_ref();
            let field = |f: &str| format!("model {m}: {f}");
            rows.push(row(
                field("architecture"),
                id.as_ref().map(|(i, how)| inferred(i.arch.clone(), *how)),
                theirs.map(|t| t.arch.clone()),
                true,
            ));
            rows.push(row(
                field("dtype"),
                id.as_ref().map(|(i, how)| inferred(i.dtype.clone(), *how)),
                theirs.map(|t| t.dtype.clone()),
                true,
            ));
            if let Some(shape) = id.as_ref().and_then(|(i, _)| i.encoder.as_ref()) {
                let text = |s: &EncoderShape| {
                    format!(
                        "{} L{} H{} A{} I{} V{}",
                        s.model_type,
                        s.layers,
                        s.hidden_size,
                        s.heads,
                        s.intermediate_size,
                        s.vocab_size
                    )
                };
                rows.push(row(
                    field("encoder"),
                    Some(text(shape)),
                    theirs.and_then(|t| t.encoder.as_ref()).map(text),
                    true,
                ));
            }
        }
        let build = profile.runtime_build();
        rows.push(row(
            "runtime version".into(),
            build.map(|b| b.version.clone()),
            Some(run.build.version.clone()),
            false,
        ));
        rows.push(row(
            "runtime build".into(),
            build.map(|b| b.build.clone()),
            Some(run.build.build.clone()),
            false,
        ));
        rows.push(row(
            "kernel options".into(),
            build.map(|b| options_text(&recorded_options(&b.kernel_options, &run.build))),
            Some(options_text(&run.build.kernel_options)),
            false,
        ));
        Ok(Check {
            profile: name.to_string(),
            rows,
        })
    }

    /// The refused fields.
    pub fn refused(&self) -> Vec<&Row> {
        self.rows
            .iter()
            .filter(|r| r.verdict == Verdict::Refused)
            .collect()
    }

    /// One line per warning.
    pub fn warnings(&self) -> Vec<String> {
        self.rows
            .iter()
            .filter(|r| r.verdict == Verdict::Warning)
            .map(|r| {
                format!(
                    "{}: {}: profile {}, this run {}",
                    self.profile, r.field, r.profile, r.run
                )
            })
            .collect()
    }

    /// Refuses a profile with refused fields (unless `allow_mismatch`, when they become
    /// warnings); returns the warnings to show.
    pub fn enforce(&self, allow_mismatch: bool) -> Result<Vec<String>> {
        let refused = self.refused();
        let describe = |r: &&Row| format!("{}: profile {}, this run {}", r.field, r.profile, r.run);
        if !refused.is_empty() && !allow_mismatch {
            return Err(Error::ProfileMismatch {
                profile: self.profile.clone(),
                fields: refused.iter().map(describe).collect::<Vec<_>>().join("; "),
            });
        }
        let mut out: Vec<String> = refused
            .iter()
            .map(|r| {
                format!(
                    "{} (allowed by --allow-profile-mismatch): {}",
                    self.profile,
                    describe(r)
                )
            })
            .collect();
        out.extend(self.warnings());
        Ok(out)
    }

    /// The fields side by side, one per line, with a verdict.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let w = |rows: &[Row], f: fn(&Row) -> &str, min: usize| {
            rows.iter()
                .map(|r| f(r).chars().count())
                .max()
                .unwrap_or(0)
                .max(min)
        };
        let (a, b, c) = (
            w(&self.rows, |r| &r.field, 5),
            w(&self.rows, |r| &r.profile, 7),
            w(&self.rows, |r| &r.run, 8),
        );
        let _ = writeln!(
            out,
            "{:<a$}  {:<b$}  {:<c$}  verdict",
            "field", "profile", "this run"
        );
        for r in &self.rows {
            let _ = writeln!(
                out,
                "{:<a$}  {:<b$}  {:<c$}  {}",
                r.field,
                r.profile,
                r.run,
                r.verdict.label()
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{model_identity, this_build, DeviceFacts};
    use ptm_runtime::zoo::Arch;
    use ptm_runtime::{DType, Device, KernelOptions, Task};

    fn h200() -> Profile {
        let text = include_str!("../../scenarios/profiles/h200.ron");
        Profile::from_ron(text, "h200.ron").unwrap()
    }

    fn gpu_run(name: &str, arch: Arch, dtype: DType) -> Expected {
        Expected {
            device: Some(DeviceFacts {
                kind: DeviceKind::Cuda,
                name: Ok(name.into()),
                driver: "580.159.04".into(),
            }),
            model: Some(model_identity(
                arch,
                dtype,
                &arch.config(Task::Embedding, 0),
            )),
            build: this_build(Some(KernelOptions::default())),
        }
    }

    fn h100() -> Profile {
        let text = include_str!("../../scenarios/profiles/h100.ron");
        Profile::from_ron(text, "h100.ron").unwrap()
    }

    #[test]
    fn the_shipped_h200_profile_matches_an_h200_bert_base_fp16_run() {
        let run = gpu_run("NVIDIA H200", Arch::BertBase, DType::Fp16);
        let c = Check::new(&h200(), "h200.ron", Some("bert-base-fp16"), &run).unwrap();
        assert!(c.refused().is_empty(), "{}", c.table());
        let warnings = c.enforce(false).unwrap();
        // It records the device, driver, model and kernel options it was measured with.
        assert!(!c.table().contains("(inferred)"), "{}", c.table());
        for field in ["driver", "kernel options", "device kind"] {
            assert!(!warnings.iter().any(|w| w.contains(field)), "{warnings:?}");
        }
    }

    #[test]
    fn an_a_b_run_with_other_kernel_options_is_warned_about_and_a_cpu_run_has_none() {
        let ab = KernelOptions {
            pinned_uploads: true,
            ..KernelOptions::default()
        };
        let run = gpu_run("NVIDIA H200", Arch::BertBase, DType::Fp16).with_options(ab);
        let c = Check::new(&h200(), "h200.ron", Some("bert-base-fp16"), &run).unwrap();
        assert!(c.refused().is_empty(), "{}", c.table());
        assert!(c.table().contains("pinned_uploads=on"), "{}", c.table());
        let warnings = c.enforce(false).unwrap();
        assert!(
            warnings.iter().any(|w| w.contains("kernel options")),
            "{warnings:?}"
        );
        // The defaults: the shipped profile's own options, nothing to warn about.
        let same = gpu_run("NVIDIA H200", Arch::BertBase, DType::Fp16)
            .with_options(KernelOptions::default());
        let c = Check::new(&h200(), "h200.ron", Some("bert-base-fp16"), &same).unwrap();
        let warnings = c.enforce(false).unwrap();
        assert!(
            !warnings.iter().any(|w| w.contains("kernel options")),
            "{warnings:?}"
        );
        // The CPU runs no kernel option: an A/B flag changes nothing there.
        let cpu = Expected::run(None, Some(Device::Cpu), None).unwrap();
        assert!(cpu.build.kernel_options.is_empty());
        assert!(cpu.with_options(ab).build.kernel_options.is_empty());
    }

    #[test]
    fn an_option_the_profile_does_not_record_is_read_as_off() {
        // h200.ron as a profile written before `pet_tiled` existed (the line removed): a run
        // with it off matches, the default run (on) warns.
        let text = include_str!("../../scenarios/profiles/h200.ron");
        let line = "                \"pet_tiled\": true,\n";
        assert!(text.contains(line), "h200.ron records pet_tiled");
        let old = Profile::from_ron(&text.replace(line, ""), "old.ron").unwrap();
        let mut run = gpu_run("NVIDIA H200", Arch::BertBase, DType::Fp16);
        run.build = this_build(Some(KernelOptions {
            pet_tiled: false,
            ..KernelOptions::default()
        }));
        let c = Check::new(&old, "old.ron", Some("bert-base-fp16"), &run).unwrap();
        assert!(c.table().contains("pet_tiled=off"), "{}", c.table());
        let warnings = c.enforce(false).unwrap();
        assert!(
            !warnings.iter().any(|w| w.contains("kernel options")),
            "{warnings:?}"
        );
        run.build = this_build(Some(KernelOptions::default()));
        let c = Check::new(&old, "old.ron", Some("bert-base-fp16"), &run).unwrap();
        let warnings = c.enforce(false).unwrap();
        assert!(
            warnings.iter().any(|w| w.contains("kernel options")),
            "{warnings:?}"
        );
    }

    #[test]
    fn a_profile_written_before_identities_matches_with_warnings() {
        let run = gpu_run("NVIDIA H100 80GB HBM3", Arch::BertBase, DType::Fp16);
        let c = Check::new(&h100(), "h100.ron", Some("bert-base-fp16"), &run).unwrap();
        assert!(c.refused().is_empty(), "{}", c.table());
        let warnings = c.enforce(false).unwrap();
        // Written before builds were recorded: the build is a warning, what it describes is
        // inferred from its names.
        assert!(
            warnings.iter().any(|w| w.contains("runtime build")),
            "{warnings:?}"
        );
        assert!(c.table().contains("cuda (inferred)"), "{}", c.table());
    }

    #[test]
    fn another_gpu_model_or_dtype_is_refused_and_can_be_allowed() {
        let p = h200();
        for run in [
            gpu_run("NVIDIA H100 80GB HBM3", Arch::BertBase, DType::Fp16),
            gpu_run("NVIDIA H200", Arch::BertLarge, DType::Fp16),
            gpu_run("NVIDIA H200", Arch::BertBase, DType::Bf16),
        ] {
            let c = Check::new(&p, "h200.ron", Some("bert-base-fp16"), &run).unwrap();
            // One fact differs: the device, or the model (its architecture and encoder shape),
            // or the dtype.
            assert!((1..=2).contains(&c.refused().len()), "{}", c.table());
            let e = c.enforce(false).unwrap_err().to_string();
            assert!(
                e.contains("h200.ron") && e.contains("--allow-profile-mismatch"),
                "{e}"
            );
            let allowed = c.enforce(true).unwrap();
            assert!(allowed.iter().any(|w| w.contains("allowed")), "{allowed:?}");
        }
    }

    #[test]
    fn a_cpu_zoo_against_the_h200_profile_is_refused_naming_each_field() {
        let tmp = tempfile::tempdir().unwrap();
        ptm_runtime::make_zoo(Arch::Tiny, 2, tmp.path(), DType::Fp32, 1).unwrap();
        let run = Expected::run(Some(tmp.path()), Some(Device::Cpu), None).unwrap();
        let c = Check::new(&h200(), "h200.ron", Some("bert-base-fp16"), &run).unwrap();
        let refused: Vec<&str> = c.refused().iter().map(|r| r.field.as_str()).collect();
        assert_eq!(
            refused,
            [
                "device kind",
                "device",
                "model bert-base-fp16: architecture",
                "model bert-base-fp16: dtype",
                "model bert-base-fp16: encoder"
            ],
            "{}",
            c.table()
        );
        let e = c.enforce(false).unwrap_err().to_string();
        assert!(
            e.contains("device kind: profile cuda, this run cpu")
                && e.contains("architecture: profile bert-base, this run tiny"),
            "{e}"
        );
    }

    #[test]
    fn a_profile_of_this_build_matches_and_an_unknown_model_is_named() {
        let mut p = h200();
        let run = gpu_run("NVIDIA H200", Arch::BertBase, DType::Fp16);
        p.calibration.as_mut().unwrap().runtime = Some(run.build.clone());
        p.calibration.as_mut().unwrap().driver = "580.159.04".into();
        let m = p.models.get_mut("bert-base-fp16").unwrap();
        m.identity = run.model.clone();
        let c = Check::new(&p, "p.ron", None, &run).unwrap();
        assert!(
            c.rows.iter().all(|r| r.verdict == Verdict::Same),
            "{}",
            c.table()
        );
        assert!(c.enforce(false).unwrap().is_empty());
        let e = Check::new(&p, "p.ron", Some("bert-large-fp16"), &run)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("bert-large-fp16") && e.contains("bert-base-fp16"),
            "{e}"
        );
        // Without a run's device or zoo, only the build is checked.
        let bare = Expected::run(None, None, None).unwrap();
        let c = Check::new(&p, "p.ron", None, &bare).unwrap();
        assert!(c.refused().is_empty());
        assert!(c.rows.iter().any(|r| r.verdict == Verdict::NotChecked));
    }
}
