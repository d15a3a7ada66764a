//! The model zoo: N fine-tuned variants of an architecture written in the Hugging Face layout
//! (`config.json`, `model.safetensors`, `tokenizer.json`, `vocab.txt`) with deterministic seeded
//! random weights of the real shapes, one head per task, and a `zoo.ron` index.
//!
//! Every tenant of an architecture shares a seeded "pre-trained" backbone plus its own small
//! seeded perturbation (its "fine-tune"), and has its own head and label count.

use crate::config::{Config, ModelType, Task};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::vocab;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use rand_pcg::Pcg64Mcg;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Architectures the zoo can make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Arch {
    /// A 2-layer, 32-wide BERT for fast tests.
    Tiny,
    /// all-MiniLM-L6 shapes: 6 layers, hidden 384.
    MiniLmL6,
    /// bert-base-uncased shapes: 12 layers, hidden 768.
    BertBase,
    /// bert-large-uncased shapes: 24 layers, hidden 1024.
    BertLarge,
    /// roberta-base shapes: 12 layers, hidden 768, vocabulary 50265.
    RobertaBase,
}

impl Arch {
    /// All architectures, in CLI order.
    pub const ALL: [Arch; 5] = [
        Arch::Tiny,
        Arch::MiniLmL6,
        Arch::BertBase,
        Arch::BertLarge,
        Arch::RobertaBase,
    ];

    /// The CLI name.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Tiny => "tiny",
            Arch::MiniLmL6 => "minilm-l6",
            Arch::BertBase => "bert-base",
            Arch::BertLarge => "bert-large",
            Arch::RobertaBase => "roberta-base",
        }
    }

    /// The HF configuration of this architecture with the given head.
    pub fn config(self, task: Task, labels: usize) -> Config {
        // (vocab, hidden, layers, heads, intermediate, positions)
        let (v, h, l, a, i, p) = match self {
            Arch::Tiny => (1000, 32, 2, 4, 64, 64),
            Arch::MiniLmL6 => (30522, 384, 6, 12, 1536, 512),
            Arch::BertBase => (30522, 768, 12, 12, 3072, 512),
            Arch::BertLarge => (30522, 1024, 24, 16, 4096, 512),
            Arch::RobertaBase => (50265, 768, 12, 12, 3072, 514),
        };
        let roberta = self == Arch::RobertaBase;
        let family = if roberta { "Roberta" } else { "Bert" };
        let class = match task {
            Task::SequenceClassification => format!("{family}ForSequenceClassification"),
            Task::TokenClassification => format!("{family}ForTokenClassification"),
            Task::Embedding => format!("{family}Model"),
        };
        let id2label = (task != Task::Embedding).then(|| {
            (0..labels)
                .map(|k| (k.to_string(), format!("LABEL_{k}")))
                .collect::<BTreeMap<_, _>>()
        });
        Config {
            model_type: if roberta { "roberta" } else { "bert" }.into(),
            architectures: vec![class],
            vocab_size: v,
            hidden_size: h,
            num_hidden_layers: l,
            num_attention_heads: a,
            intermediate_size: i,
            hidden_act: "gelu".into(),
            max_position_embeddings: p,
            type_vocab_size: if roberta { 1 } else { 2 },
            layer_norm_eps: if roberta { 1e-5 } else { 1e-12 },
            pad_token_id: u32::from(roberta),
            id2label,
            num_labels: None,
            torch_dtype: None,
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Arch {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Arch::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| Error::UnknownArchitecture {
                name: s.to_string(),
                expected: Arch::ALL.map(Arch::name).join(", "),
            })
    }
}

/// One model of a zoo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZooModel {
    /// Model name, also its folder under the zoo.
    pub name: String,
    /// Its head.
    pub task: Task,
    /// Label count (0 for embeddings).
    pub labels: usize,
    /// Parameters (elements).
    pub parameters: usize,
    /// Size of `model.safetensors` in bytes.
    pub file_bytes: u64,
}

/// The `zoo.ron` index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Zoo {
    /// Architecture name.
    pub arch: Arch,
    /// Weight dtype in the files.
    pub dtype: DType,
    /// The seed the weights came from.
    pub seed: u64,
    /// The tenants.
    pub models: Vec<ZooModel>,
}

impl Zoo {
    /// Reads `DIR/zoo.ron`.
    pub fn read(dir: &Path) -> Result<Zoo> {
        let p = dir.join("zoo.ron");
        let text = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
        ron::from_str(&text).map_err(|e| Error::Zoo(format!("{}: {e}", p.display())))
    }
}

/// The task and label count of tenant `i`: tasks cycle, label counts differ.
pub fn tenant_task(i: usize) -> (Task, usize) {
    match i % 3 {
        0 => (Task::SequenceClassification, [2, 3, 5, 4][(i / 3) % 4]),
        1 => (Task::TokenClassification, [9, 5, 7, 17][(i / 3) % 4]),
        _ => (Task::Embedding, 0),
    }
}

/// The name a tensor has in a HF checkpoint of this family and head.
fn hf_name(kind: ModelType, task: Task, canonical: &str) -> String {
    let prefix = match (task, kind) {
        (Task::Embedding, _) => "",
        (_, ModelType::Bert) => "bert.",
        (_, ModelType::Roberta) => "roberta.",
    };
    match (kind, task, canonical) {
        (ModelType::Roberta, Task::SequenceClassification, n) if n.starts_with("pooler.") => {
            n.replace("pooler.dense", "classifier.dense")
        }
        (ModelType::Roberta, Task::SequenceClassification, n) if n.starts_with("classifier.") => {
            n.replace("classifier.", "classifier.out_proj.")
        }
        (_, _, n) if n.starts_with("classifier.") => n.to_string(),
        (_, _, n) => format!("{prefix}{n}"),
    }
}

fn rng(seed: u64, stream: u64) -> Pcg64Mcg {
    Pcg64Mcg::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ stream)
}

/// Writes one model (HF layout) into `dir` and returns its file size in bytes.
pub fn write_model(dir: &Path, cfg: &Config, dtype: DType, seed: u64, tenant: u64) -> Result<u64> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let kind = cfg.kind()?;
    let task = cfg.task();
    let layout = Layout::for_config(cfg)?;
    // Header: sorted by file name, data in the same order.
    let mut order: Vec<(String, &crate::layout::Entry)> = layout
        .entries()
        .iter()
        .map(|e| (hf_name(kind, task, &e.name), e))
        .collect();
    order.sort_by(|a, b| a.0.cmp(&b.0));
    let mut header = serde_json::Map::new();
    let mut meta = serde_json::Map::new();
    meta.insert("format".into(), "pt".into());
    header.insert("__metadata__".into(), meta.into());
    let mut off = 0usize;
    for (name, e) in &order {
        let n = e.elements() * dtype.size_bytes();
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": dtype.safetensors_name(), "shape": e.shape,
                               "data_offsets": [off, off + n]}),
        );
        off += n;
    }
    let mut h = serde_json::to_vec(&header).map_err(|e| Error::Zoo(e.to_string()))?;
    while h.len() % 8 != 0 {
        h.push(b' ');
    }
    let path = dir.join("model.safetensors");
    let f = std::fs::File::create(&path).map_err(|e| Error::io(&path, e))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 22, f);
    let io = |e| Error::io(&path, e);
    w.write_all(&(h.len() as u64).to_le_bytes()).map_err(io)?;
    w.write_all(&h).map_err(io)?;
    let mut buf = Vec::new();
    let mut vals = Vec::new();
    for (k, (name, e)) in order.iter().enumerate() {
        // The backbone depends on the seed only; the fine-tune delta and heads on the tenant.
        let head = name.starts_with("classifier") || name.contains("pooler");
        let mut base = rng(seed, k as u64);
        let mut delta = rng(seed ^ 0xF1E7_u64.wrapping_mul(tenant + 1), k as u64);
        let is_ln_weight =
            name.contains("LayerNorm") && (name.ends_with(".weight") || name.ends_with(".gamma"));
        vals.clear();
        vals.extend((0..e.elements()).map(|_| {
            let b: f32 = base.sample(StandardNormal);
            let d: f32 = delta.sample(StandardNormal);
            let (b, d) = if head {
                (0.0, d * 0.02)
            } else {
                (b * 0.02, d * 0.002)
            };
            if is_ln_weight {
                1.0 + 5.0 * (b + d)
            } else {
                b + d
            }
        }));
        buf.clear();
        dtype.encode_f32(&vals, &mut buf);
        w.write_all(&buf).map_err(io)?;
    }
    w.flush().map_err(io)?;
    let mut cfg = cfg.clone();
    cfg.torch_dtype = Some(
        match dtype {
            DType::Fp32 => "float32",
            DType::Fp16 => "float16",
            DType::Bf16 => "bfloat16",
        }
        .into(),
    );
    let write = |name: &str, bytes: &[u8]| -> Result<()> {
        let p = dir.join(name);
        std::fs::write(&p, bytes).map_err(|e| Error::io(&p, e))
    };
    write("config.json", pretty(&cfg)?.as_bytes())?;
    let v = vocab::synthetic_vocab(kind, cfg.vocab_size);
    write(
        "tokenizer.json",
        pretty(&vocab::tokenizer_json(kind, &v))?.as_bytes(),
    )?;
    write("vocab.txt", (v.join("\n") + "\n").as_bytes())?;
    Ok((8 + h.len() + off) as u64)
}

fn pretty<T: Serialize>(v: &T) -> Result<String> {
    Ok(serde_json::to_string_pretty(v).map_err(|e| Error::Zoo(e.to_string()))? + "\n")
}

/// Writes `tenants` models of `arch` under `out` plus `out/zoo.ron`; returns the index.
pub fn make_zoo(arch: Arch, tenants: usize, out: &Path, dtype: DType, seed: u64) -> Result<Zoo> {
    let mut models = Vec::with_capacity(tenants);
    for i in 0..tenants {
        let (task, labels) = tenant_task(i);
        let cfg = arch.config(task, labels);
        let name = format!("{}-t{i:03}", arch.name());
        let file_bytes = write_model(&out.join(&name), &cfg, dtype, seed, i as u64)?;
        models.push(ZooModel {
            name,
            task,
            labels,
            parameters: Layout::for_config(&cfg)?.parameters(),
            file_bytes,
        });
    }
    let zoo = Zoo {
        arch,
        dtype,
        seed,
        models,
    };
    let text = ron::ser::to_string_pretty(&zoo, ron::ser::PrettyConfig::default())
        .map_err(|e| Error::Zoo(e.to_string()))?;
    let p = out.join("zoo.ron");
    std::fs::write(&p, text + "\n").map_err(|e| Error::io(&p, e))?;
    Ok(zoo)
}

/// The folder of model `name` in the zoo at `dir`.
pub fn model_dir(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}
