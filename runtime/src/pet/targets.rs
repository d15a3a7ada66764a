//! PEFT's selection of modules: `target_modules` (a list of names, each matching a module key
//! it equals or ends after a `.`; a regular expression matching the whole key; or
//! `all-linear`), restricted by `layers_to_transform`; and the per-module `rank_pattern` /
//! `alpha_pattern` (a pattern selects the keys that end with it). Patterns are bounded in size.

use super::peft::{Layers, PeftConfig, Targets, MAX_LIST, MAX_NAME_CHARS};
use crate::error::{Error, Result};
use regex::{Regex, RegexBuilder};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn regex(pattern: &str, anchored: String) -> std::result::Result<Regex, String> {
    if pattern.len() > MAX_NAME_CHARS {
        return Err(format!("longer than {MAX_NAME_CHARS} characters"));
    }
    RegexBuilder::new(&anchored)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| e.to_string())
}

/// PEFT's selection of modules by `target_modules` and `layers_to_transform`.
pub(crate) struct Selector {
    regex: Option<Regex>,
    names: Vec<String>,
    layers: Option<BTreeSet<u64>>,
}

impl Selector {
    pub(crate) fn new(cfg: &PeftConfig, path: &Path) -> Result<Self> {
        let bad = |what: &str, m: String| Error::pet(path, what, m);
        let layers = match &cfg.layers_to_transform {
            None => None,
            Some(Layers::One(l)) => Some(BTreeSet::from([*l])),
            Some(Layers::List(v)) if v.len() > MAX_LIST => {
                return Err(bad(
                    "layers_to_transform",
                    format!("{} entries, more than {MAX_LIST}", v.len()),
                ))
            }
            Some(Layers::List(v)) => Some(v.iter().copied().collect()),
        };
        match &cfg.target_modules {
            None => Err(bad(
                "target_modules",
                "missing: a LoRA needs its targets".into(),
            )),
            Some(Targets::One(s)) if s == "all-linear" => Ok(Selector {
                regex: None,
                names: vec![],
                layers,
            }),
            Some(Targets::One(s)) => Ok(Selector {
                regex: Some(
                    regex(s, format!("^(?:{s})$"))
                        .map_err(|m| bad("target_modules", format!("regular expression: {m}")))?,
                ),
                names: vec![],
                layers,
            }),
            Some(Targets::List(v)) => {
                if v.is_empty() || v.len() > MAX_LIST {
                    return Err(bad(
                        "target_modules",
                        format!("{} entries: expected 1 to {MAX_LIST}", v.len()),
                    ));
                }
                if let Some(n) = v.iter().find(|n| n.is_empty() || n.len() > MAX_NAME_CHARS) {
                    return Err(bad(
                        "target_modules",
                        format!(
                            "entry of {} characters: expected 1 to {MAX_NAME_CHARS}",
                            n.len()
                        ),
                    ));
                }
                Ok(Selector {
                    regex: None,
                    names: v.clone(),
                    layers,
                })
            }
        }
    }

    /// Whether the module with PEFT key `key` (in encoder layer `layer`) is targeted.
    pub(crate) fn selects(&self, key: &str, layer: Option<usize>) -> bool {
        if let Some(r) = &self.regex {
            return r.is_match(key);
        }
        if self.names.is_empty() {
            return true; // all-linear: every linear but the classifier
        }
        if self.names.iter().any(|n| n == key) {
            return true;
        }
        let found = self.names.iter().any(|n| {
            key.len() > n.len() + 1 && key.ends_with(n.as_str()) && {
                key.as_bytes()[key.len() - n.len() - 1] == b'.'
            }
        });
        match (&self.layers, found) {
            (Some(ls), true) => layer.is_some_and(|l| ls.contains(&(l as u64))),
            (_, found) => found,
        }
    }
}

/// A `rank_pattern` / `alpha_pattern` value for a module key, where exactly one pattern
/// selects it (a pattern selects the keys that end with it, after a `.` or whole).
pub(crate) fn pattern_value<T: Copy>(
    map: &Option<BTreeMap<String, T>>,
    key: &str,
    field: &str,
    path: &Path,
) -> Result<Option<T>> {
    let Some(map) = map else { return Ok(None) };
    if map.len() > MAX_LIST {
        return Err(Error::pet(
            path,
            field,
            format!("more than {MAX_LIST} patterns"),
        ));
    }
    let mut hit = None;
    for (p, v) in map {
        let r = regex(p, format!("^(?:.*\\.)?(?:{p})$"))
            .map_err(|m| Error::pet(path, field, format!("pattern `{p}`: {m}")))?;
        if r.is_match(key) {
            if hit.is_some() {
                return Err(Error::pet(
                    path,
                    field,
                    format!("more than one pattern selects `{key}`"),
                ));
            }
            hit = Some(*v);
        }
    }
    Ok(hit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pet::peft::PeftConfig;

    fn cfg(targets: serde_json::Value, layers: serde_json::Value) -> PeftConfig {
        serde_json::from_value(serde_json::json!({
            "peft_type": "LORA", "r": 8, "target_modules": targets,
            "layers_to_transform": layers,
        }))
        .unwrap()
    }

    fn sel(targets: serde_json::Value, layers: serde_json::Value) -> Selector {
        Selector::new(&cfg(targets, layers), Path::new("adapter_config.json")).unwrap()
    }

    const Q0: &str = "bert.encoder.layer.0.attention.self.query";
    const O1: &str = "bert.encoder.layer.1.attention.output.dense";
    const D1: &str = "bert.encoder.layer.1.output.dense";
    const P: &str = "bert.pooler.dense";

    #[test]
    fn names_match_the_end_of_the_key_after_a_dot() {
        let s = sel(
            serde_json::json!(["query", "output.dense"]),
            serde_json::Value::Null,
        );
        assert!(s.selects(Q0, Some(0)));
        // `output.dense` ends both the attention output and the FFN down projection.
        assert!(s.selects(O1, Some(1)) && s.selects(D1, Some(1)));
        assert!(!s.selects(P, None));
        // Not a suffix after a dot: `ery` does not select `query`.
        let s = sel(serde_json::json!(["ery"]), serde_json::Value::Null);
        assert!(!s.selects(Q0, Some(0)));
        // The exact key.
        let s = sel(serde_json::json!([Q0]), serde_json::Value::Null);
        assert!(s.selects(Q0, Some(0)) && !s.selects(O1, Some(1)));
        // A per-layer name selects the FFN down projection alone.
        let s = sel(
            serde_json::json!(["encoder.layer.1.output.dense"]),
            serde_json::Value::Null,
        );
        assert!(s.selects(D1, Some(1)) && !s.selects(O1, Some(1)));
    }

    #[test]
    fn layers_regexes_and_all_linear() {
        let s = sel(
            serde_json::json!(["query", "dense"]),
            serde_json::json!([1]),
        );
        assert!(!s.selects(Q0, Some(0)) && s.selects(O1, Some(1)));
        assert!(
            !s.selects(P, None),
            "a module outside the layers is not selected"
        );
        let s = sel(serde_json::json!(["query"]), serde_json::json!(0));
        assert!(s.selects(Q0, Some(0)));
        let s = sel(
            serde_json::json!(r".*\.layer\.1\..*dense"),
            serde_json::Value::Null,
        );
        assert!(s.selects(O1, Some(1)) && s.selects(D1, Some(1)) && !s.selects(Q0, Some(0)));
        // A regular expression must match the whole key.
        let s = sel(serde_json::json!("query"), serde_json::Value::Null);
        assert!(!s.selects(Q0, Some(0)));
        let s = sel(serde_json::json!("all-linear"), serde_json::Value::Null);
        assert!(s.selects(Q0, Some(0)) && s.selects(P, None));
        for bad in [serde_json::json!([]), serde_json::json!("(")] {
            let e = Selector::new(&cfg(bad, serde_json::Value::Null), Path::new("c.json"));
            assert!(e.is_err());
        }
    }

    #[test]
    fn rank_patterns_select_by_suffix_and_refuse_ambiguity() {
        let p = Path::new("c.json");
        let m: Option<BTreeMap<String, u64>> = Some(
            [
                ("query".to_string(), 4),
                ("layer.1.output.dense".to_string(), 2),
            ]
            .into(),
        );
        assert_eq!(pattern_value(&m, Q0, "rank_pattern", p).unwrap(), Some(4));
        assert_eq!(pattern_value(&m, D1, "rank_pattern", p).unwrap(), Some(2));
        assert_eq!(pattern_value(&m, O1, "rank_pattern", p).unwrap(), None);
        let m: Option<BTreeMap<String, u64>> =
            Some([("dense".to_string(), 4), ("output.dense".to_string(), 2)].into());
        let e = pattern_value(&m, D1, "rank_pattern", p)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("rank_pattern") && e.contains("more than one"),
            "{e}"
        );
    }
}
