//! Bottleneck adapters in the layout of the `adapters` library (AdapterHub):
//! `adapter_config.json` + `adapter.safetensors`, and optionally a prediction head
//! `head_config.json` + `model_head.safetensors` (a pickled `pytorch_adapter.bin` /
//! `pytorch_model_head.bin` is refused: save with safetensors).
//!
//! `adapter_config.json` is the library's `{"config": {…}, "model_name", "model_type",
//! "hidden_size", "name", …}`; `config` is a bottleneck config (`mh_adapter`, `output_adapter`,
//! `reduction_factor` — a number or a `{"N": f, "default": f}` map —, `non_linearity`,
//! `original_ln_before`, `original_ln_after`, `residual_before_ln`, `scaling`, `leave_out`, …)
//! or one of the names `seq_bn` / `pfeiffer` (Pfeiffer: after the FFN, reading
//! `LN(h + residual)`, ReLU, factor 16) and `double_seq_bn` / `houlsby` (Houlsby: after
//! attention and after the FFN, reading the sublayer output `h`, swish, factor 16).
//! `model_name` names the backbone like PEFT's `base_model_name_or_path`.
//!
//! Tensors (`bert.` prefix optional): `encoder.layer.N.attention.output.adapters.<name>.
//! adapter_down.0.{weight,bias}` (`[m, h]`, `[m]`) and `….adapter_up.{weight,bias}` (`[h, m]`,
//! `[h]`) for the adapter after attention, `encoder.layer.N.output.adapters.<name>.…` after the
//! FFN, with `m = h // reduction_factor` (at least 1).
//!
//! The computation (the library's `Adapter.pre_forward`, `forward`, `post_forward` for a single
//! adapter): with `h` the sublayer's output and `r` its residual input, the adapter reads
//! `x = LN(h + r)` if `original_ln_before` else `x = h`; `out = up(act(down(x))) · scaling + res`
//! where `res` is `h` (`residual_before_ln: true`), `x` (`false`) or `h + r` (`"post_add"`);
//! the sublayer then ends with `LN(out + r)` (`original_ln_after: true`).
//!
//! The prediction head is read by [`super::flex_head`]. Refused, naming the field: parallel
//! adapters, gating, new layer norms (`ln_before`, `ln_after`), `original_ln_after: false`,
//! learned scaling, PHM layers, invertible adapters.

use super::backbone::Backbone;
use super::tenant::{
    linear, AdapterAct, AdapterResidual, AdapterStyle, Bottleneck, Parts, PetKind,
};
use super::tensors::{RawTensor, WeightsFile};
use crate::bert::LnPos;
use crate::error::{Error, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// The longest adapter or head name read.
pub const MAX_ADAPTER_NAME: usize = 256;
/// The widest bottleneck read.
pub const MAX_BOTTLENECK: usize = 65_536;

/// `reduction_factor`: one number, or one per layer with a default.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Reduction {
    /// The same for every layer.
    One(f64),
    /// By layer index (as a string), with `default`.
    PerLayer(BTreeMap<String, f64>),
}

/// A number or a name (`scaling`, `residual_before_ln`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum NumOrName {
    /// A boolean.
    Bool(bool),
    /// A number.
    Num(f64),
    /// A name.
    Name(String),
}

pub(crate) fn yes() -> bool {
    true
}
fn one() -> NumOrName {
    NumOrName::Num(1.0)
}
fn residual_default() -> NumOrName {
    NumOrName::Bool(true)
}

/// A bottleneck adapter configuration (`BnConfig` of the `adapters` library).
#[derive(Debug, Clone, Deserialize)]
pub struct BnConfig {
    /// `bottleneck` or absent (other architectures are refused).
    #[serde(default)]
    pub architecture: Option<String>,
    /// An adapter after multi-head attention.
    pub mh_adapter: bool,
    /// An adapter after the feed-forward block.
    pub output_adapter: bool,
    /// Hidden size ÷ bottleneck width.
    pub reduction_factor: Reduction,
    /// The bottleneck's activation.
    pub non_linearity: String,
    /// The adapter reads `LN(h + residual)`.
    #[serde(default)]
    pub original_ln_before: bool,
    /// The sublayer ends with `LN(out + residual)` (must be true).
    #[serde(default = "yes")]
    pub original_ln_after: bool,
    /// A new layer norm before the adapter (refused when true).
    #[serde(default)]
    pub ln_before: bool,
    /// A new layer norm after the adapter (refused when true).
    #[serde(default)]
    pub ln_after: bool,
    /// A parallel adapter (refused when true).
    #[serde(default)]
    pub is_parallel: bool,
    /// A constant factor (learned scalings are refused).
    #[serde(default = "one")]
    pub scaling: NumOrName,
    /// Gating (refused when true).
    #[serde(default)]
    pub use_gating: bool,
    /// `true`, `false` or `"post_add"`.
    #[serde(default = "residual_default")]
    pub residual_before_ln: NumOrName,
    /// Layers without adapters.
    #[serde(default)]
    pub leave_out: Vec<u64>,
    /// PHM layers (refused when true).
    #[serde(default)]
    pub phm_layer: bool,
    /// Invertible adapters (refused when set).
    #[serde(default)]
    pub inv_adapter: Option<String>,
}

/// `config`: a full configuration or a library name.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum BnSpec {
    /// A full bottleneck configuration.
    Full(Box<BnConfig>),
    /// `seq_bn`/`pfeiffer` or `double_seq_bn`/`houlsby`.
    Name(String),
}

/// The `adapters` library's `adapter_config.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct AdaptersConfig {
    /// The adapter configuration.
    pub config: BnSpec,
    /// The backbone folder.
    #[serde(default)]
    pub model_name: String,
    /// `bert` or `roberta` (checked against the backbone where given).
    #[serde(default)]
    pub model_type: Option<String>,
    /// Hidden size (checked against the backbone where given).
    #[serde(default)]
    pub hidden_size: Option<usize>,
    /// The adapter's name (in its tensor names).
    pub name: String,
    /// The library version that saved it; without one, the library renames legacy
    /// activations (`gelu` → `gelu_new`, `gelu_orig` → `gelu`), and so does this reader.
    #[serde(default)]
    pub version: Option<String>,
}

/// The library's named configurations.
fn named(name: &str) -> Option<BnConfig> {
    let (mh, before, act) = match name {
        "seq_bn" | "pfeiffer" => (false, true, "relu"),
        "double_seq_bn" | "houlsby" => (true, false, "swish"),
        _ => return None,
    };
    Some(BnConfig {
        architecture: None,
        mh_adapter: mh,
        output_adapter: true,
        reduction_factor: Reduction::One(16.0),
        non_linearity: act.into(),
        original_ln_before: before,
        original_ln_after: true,
        ln_before: false,
        ln_after: false,
        is_parallel: false,
        scaling: NumOrName::Num(1.0),
        use_gating: false,
        residual_before_ln: NumOrName::Bool(true),
        leave_out: vec![],
        phm_layer: false,
        inv_adapter: None,
    })
}

/// Python's `a // b` for positive floats (`float_floor_div` of CPython).
fn py_floor_div(a: f64, b: f64) -> f64 {
    let mut m = a % b;
    let mut div = (a - m) / b;
    if m != 0.0 && ((b < 0.0) != (m < 0.0)) {
        m += b;
        div -= 1.0;
    }
    let _ = m;
    if div != 0.0 {
        let f = div.floor();
        if div - f > 0.5 {
            f + 1.0
        } else {
            f
        }
    } else {
        0.0
    }
}

/// The bottleneck width for layer `l` of hidden size `h`.
fn width(r: &Reduction, l: usize, h: usize, path: &Path) -> Result<usize> {
    let bad = |m: String| Error::pet(path, "reduction_factor", m);
    let f = match r {
        Reduction::One(f) => *f,
        Reduction::PerLayer(m) => *m
            .get(&l.to_string())
            .or_else(|| m.get("default"))
            .ok_or_else(|| bad(format!("no value for layer {l} and no `default`")))?,
    };
    if !f.is_finite() || f <= 0.0 {
        return Err(bad(format!("{f}: expected a positive number")));
    }
    let m = py_floor_div(h as f64, f).max(1.0);
    if m > MAX_BOTTLENECK as f64 {
        return Err(bad(format!(
            "a bottleneck of {m} units, more than {MAX_BOTTLENECK}"
        )));
    }
    Ok(m as usize)
}

/// Checks a configuration and returns its activation, scaling and style.
fn check(c: &BnConfig, path: &Path) -> Result<(AdapterAct, f64, AdapterStyle)> {
    let bad = |f: &str, m: &str| Error::pet(path, f, m);
    if let Some(a) = &c.architecture {
        if a != "bottleneck" {
            return Err(bad(
                "config.architecture",
                &format!("`{a}`: only bottleneck adapters are read from this layout"),
            ));
        }
    }
    for (f, on) in [
        ("config.is_parallel", c.is_parallel),
        ("config.use_gating", c.use_gating),
        ("config.ln_before", c.ln_before),
        ("config.ln_after", c.ln_after),
        ("config.phm_layer", c.phm_layer),
        ("config.inv_adapter", c.inv_adapter.is_some()),
        ("config.original_ln_after", !c.original_ln_after),
    ] {
        if on {
            return Err(bad(f, "this setting is not supported"));
        }
    }
    if !c.mh_adapter && !c.output_adapter {
        return Err(bad(
            "config",
            "neither mh_adapter nor output_adapter: the adapter does nothing",
        ));
    }
    let act = AdapterAct::parse(&c.non_linearity).ok_or_else(|| {
        bad(
            "config.non_linearity",
            &format!(
                "`{}`: expected relu, swish, silu, gelu, gelu_new or tanh",
                c.non_linearity
            ),
        )
    })?;
    let scaling = match c.scaling {
        NumOrName::Num(s) if s.is_finite() && s.abs() <= 1e6 => s,
        _ => {
            return Err(bad(
                "config.scaling",
                "expected a finite constant (learned scalings are not supported)",
            ))
        }
    };
    let residual = match &c.residual_before_ln {
        NumOrName::Bool(true) => AdapterResidual::Sublayer,
        NumOrName::Bool(false) => AdapterResidual::AdapterInput,
        NumOrName::Name(s) if s == "post_add" && c.original_ln_before => AdapterResidual::PostAdd,
        _ => {
            return Err(bad(
                "config.residual_before_ln",
                "expected true, false or \"post_add\" (with original_ln_before)",
            ))
        }
    };
    Ok((
        act,
        scaling,
        AdapterStyle {
            original_ln_before: c.original_ln_before,
            residual,
        },
    ))
}

/// Checks an adapter or head name (1 to [`MAX_ADAPTER_NAME`] characters, no `.`).
pub fn check_adapter_name(name: &str) -> Result<()> {
    check_name(name, Path::new(name), "name")
}

pub(crate) fn check_name(name: &str, path: &Path, field: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_ADAPTER_NAME || name.contains('.') {
        return Err(Error::pet(
            path,
            field,
            format!("`{name}`: expected 1 to {MAX_ADAPTER_NAME} characters without `.`"),
        ));
    }
    Ok(())
}

/// Splits `…encoder.layer.N.{attention.output|output}.adapters.<name>.<param>`.
fn split_adapter<'a>(name: &'a str, adapter: &str) -> Option<(LnPos, &'a str)> {
    let body = ["bert.", "roberta.", "model."]
        .iter()
        .find_map(|p| name.strip_prefix(p))
        .unwrap_or(name);
    let rest = body.strip_prefix("encoder.layer.")?;
    let (num, rest) = rest.split_once('.')?;
    if num.is_empty() || num.len() > 4 || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let l: usize = num.parse().ok()?;
    let (pos, rest) = if let Some(r) = rest.strip_prefix("attention.output.adapters.") {
        (LnPos::Attention(l), r)
    } else {
        (LnPos::Output(l), rest.strip_prefix("output.adapters.")?)
    };
    let param = rest.strip_prefix(adapter)?.strip_prefix('.')?;
    Some((pos, param))
}

/// Reads an `adapters`-library tenant in `dir` against `backbone`.
pub(crate) fn read(dir: &Path, ac: &AdaptersConfig, backbone: &Backbone) -> Result<Parts> {
    let cfg_path = dir.join("adapter_config.json");
    let bcfg = backbone.config();
    let c = match &ac.config {
        BnSpec::Full(c) => (**c).clone(),
        BnSpec::Name(n) => named(n).ok_or_else(|| {
            Error::pet(
                &cfg_path,
                "config",
                format!("`{n}`: expected a bottleneck config or seq_bn, pfeiffer, double_seq_bn, houlsby"),
            )
        })?,
    };
    check_name(&ac.name, &cfg_path, "name")?;
    if let Some(t) = &ac.model_type {
        if *t != bcfg.model_type {
            return Err(Error::pet(
                &cfg_path,
                "model_type",
                format!("`{t}`, but the backbone is `{}`", bcfg.model_type),
            ));
        }
    }
    if let Some(hs) = ac.hidden_size {
        if hs != bcfg.hidden_size {
            return Err(Error::pet(
                &cfg_path,
                "hidden_size",
                format!("{hs}, but the backbone's is {}", bcfg.hidden_size),
            ));
        }
    }
    let mut c = c;
    if ac.version.is_none() {
        match c.non_linearity.as_str() {
            "gelu" => c.non_linearity = "gelu_new".into(),
            "gelu_orig" => c.non_linearity = "gelu".into(),
            _ => {}
        }
    }
    let (act, scaling, style) = check(&c, &cfg_path)?;
    let wpath = dir.join("adapter.safetensors");
    if !wpath.is_file() {
        let msg = if dir.join("pytorch_adapter.bin").is_file() {
            "missing; only pytorch_adapter.bin (a pickle) is there, which this runtime does not read: save with safetensors"
        } else {
            "missing"
        };
        return Err(Error::pet(&wpath, "adapter.safetensors", msg));
    }
    let file = WeightsFile::read(&wpath, backbone.dtype)?;
    let h = bcfg.hidden_size;
    // Where adapters are expected.
    let mut expected: BTreeMap<LnPos, usize> = BTreeMap::new();
    for l in 0..bcfg.num_hidden_layers {
        if c.leave_out.contains(&(l as u64)) {
            continue;
        }
        let m = width(&c.reduction_factor, l, h, &cfg_path)?;
        if c.mh_adapter {
            expected.insert(LnPos::Attention(l), m);
        }
        if c.output_adapter {
            expected.insert(LnPos::Output(l), m);
        }
    }
    let mut found: BTreeMap<(LnPos, &str), (&str, &RawTensor)> = BTreeMap::new();
    for (name, t) in &file.tensors {
        let refuse = |m: &str| Error::pet(&file.path, name.as_str(), m);
        let (pos, param) = split_adapter(name, &ac.name).ok_or_else(|| {
            refuse(&format!(
                "not a tensor of bottleneck adapter `{}` this runtime reads",
                ac.name
            ))
        })?;
        if !expected.contains_key(&pos) {
            return Err(refuse(
                "an adapter at a position the config does not place one (mh_adapter, output_adapter, leave_out, layers)",
            ));
        }
        let param = match param {
            "adapter_down.0.weight"
            | "adapter_down.0.bias"
            | "adapter_up.weight"
            | "adapter_up.bias" => param,
            _ => {
                return Err(refuse(
                    "not a parameter this runtime reads (adapter_down.0.*, adapter_up.*)",
                ))
            }
        };
        found.insert((pos, param), (name.as_str(), t));
    }
    let mut parts = Parts::new(PetKind::Adapter);
    parts.style = style;
    let prefix = |pos: LnPos| match pos {
        LnPos::Attention(l) => format!(
            "bert.encoder.layer.{l}.attention.output.adapters.{}",
            ac.name
        ),
        LnPos::Output(l) => format!("bert.encoder.layer.{l}.output.adapters.{}", ac.name),
        LnPos::Embeddings => String::new(),
    };
    for (pos, m) in &expected {
        let get = |param: &'static str, shape: &[usize]| -> Result<&RawTensor> {
            let (name, t) = found.get(&(*pos, param)).ok_or_else(|| {
                Error::pet(
                    &file.path,
                    format!("{}.{param}", prefix(*pos)),
                    format!("missing: expected shape {shape:?}"),
                )
            })?;
            file.expect_shape(name, t, shape)?;
            Ok(t)
        };
        let dw = get("adapter_down.0.weight", &[*m, h])?;
        let db = get("adapter_down.0.bias", &[*m])?;
        let uw = get("adapter_up.weight", &[h, *m])?;
        let ub = get("adapter_up.bias", &[h])?;
        parts.parameters += dw.values.len() + db.values.len() + uw.values.len() + ub.values.len();
        parts.adapters.insert(
            *pos,
            Bottleneck {
                down: linear(dw, db)?,
                up: linear(uw, ub)?,
                act,
                scaling,
            },
        );
    }
    super::flex_head::read(dir, backbone, &mut parts)?;
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_division_is_pythons() {
        assert_eq!(py_floor_div(768.0, 16.0), 48.0);
        assert_eq!(py_floor_div(768.0, 0.1), 7679.0);
        assert_eq!(py_floor_div(32.0, 64.0), 0.0);
        assert_eq!(py_floor_div(768.0, 7.0), 109.0);
    }

    #[test]
    fn splits_adapter_names() {
        assert_eq!(
            split_adapter(
                "bert.encoder.layer.3.attention.output.adapters.a.adapter_up.bias",
                "a"
            ),
            Some((LnPos::Attention(3), "adapter_up.bias"))
        );
        assert_eq!(
            split_adapter(
                "encoder.layer.0.output.adapters.a.adapter_down.0.weight",
                "a"
            ),
            Some((LnPos::Output(0), "adapter_down.0.weight"))
        );
        assert_eq!(
            split_adapter("encoder.layer.0.output.adapters.ab.adapter_up.bias", "a"),
            None
        );
    }
}
