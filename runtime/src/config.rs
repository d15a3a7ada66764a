//! The model configuration, read straight from a Hugging Face `config.json` (BERT and RoBERTa).
//!
//! Every size a configuration gives is bounded ([`Bounds`]: far above any BERT-family encoder
//! published) and so is the parameter count, so a hostile or mistyped `config.json` is refused,
//! naming the field and the bound, before anything is allocated for it.

pub use crate::activation::Activation;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The encoder families this runtime runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelType {
    /// BERT (and MiniLM, which is a small BERT).
    Bert,
    /// RoBERTa: BERT with positions offset by `pad_token_id + 1` and one token type.
    Roberta,
}

impl ModelType {
    /// Parses a `model_type` string.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "bert" => Ok(ModelType::Bert),
            "roberta" => Ok(ModelType::Roberta),
            other => Err(Error::UnknownArchitecture {
                name: other.to_string(),
                expected: "bert, roberta".to_string(),
            }),
        }
    }

    /// The prefixes under which the encoder's tensors may be stored.
    pub fn prefixes(self) -> &'static [&'static str] {
        match self {
            ModelType::Bert => &["", "bert.", "model."],
            ModelType::Roberta => &["", "roberta.", "model."],
        }
    }
}

/// The task head on top of the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// Pooler (first token, dense, tanh) and a linear classifier: one logit vector per text.
    SequenceClassification,
    /// A linear classifier on every token: one logit vector per token.
    TokenClassification,
    /// Mean of the last hidden states over the real tokens, L2-normalised.
    Embedding,
}

fn default_eps() -> f64 {
    1e-12
}
fn default_act() -> String {
    "gelu".to_string()
}
fn default_type_vocab() -> usize {
    2
}

/// The fields of a HF `config.json` that the runtime uses; other fields are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// `bert` or `roberta`.
    pub model_type: String,
    /// HF class names, e.g. `BertForSequenceClassification`; they choose the head.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub architectures: Vec<String>,
    /// Rows of the word-embedding table.
    pub vocab_size: usize,
    /// Hidden width H.
    pub hidden_size: usize,
    /// Number of encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads (H must be a multiple).
    pub num_attention_heads: usize,
    /// Feed-forward width.
    pub intermediate_size: usize,
    /// `gelu`, `gelu_new`, `gelu_pytorch_tanh` or `relu`.
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Rows of the position-embedding table.
    pub max_position_embeddings: usize,
    /// Rows of the token-type table.
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    /// Layer-norm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// The padding token id (RoBERTa positions start after it).
    #[serde(default)]
    pub pad_token_id: u32,
    /// Label names by id (as strings, the HF way); their count is the head's width.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id2label: Option<BTreeMap<String, String>>,
    /// Label count, when given without `id2label`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_labels: Option<usize>,
    /// The dtype the checkpoint was saved in (informative).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub torch_dtype: Option<String>,
}

/// The bounds of a configuration's sizes, each far above any published BERT-family encoder
/// (BERT-large: vocabulary 30,522, hidden 1,024, 24 layers, 16 heads, FFN 4,096, 512
/// positions; XLM-R: vocabulary 250,002).
#[derive(Debug, Clone, Copy)]
pub struct Bounds;

impl Bounds {
    /// Most rows of the word-embedding table.
    pub const VOCAB: usize = 1_000_000;
    /// Largest hidden width.
    pub const HIDDEN: usize = 16_384;
    /// Most encoder layers.
    pub const LAYERS: usize = 256;
    /// Most attention heads.
    pub const HEADS: usize = 256;
    /// Largest feed-forward width.
    pub const INTERMEDIATE: usize = 65_536;
    /// Most position embeddings.
    pub const POSITIONS: usize = 65_536;
    /// Most token types.
    pub const TYPE_VOCAB: usize = 1_024;
    /// Most labels of a classification head.
    pub const LABELS: usize = 100_000;
    /// Most parameters (elements) of encoder and head: 4 G (16 GB in fp32).
    pub const PARAMETERS: usize = 4 << 30;
    /// Largest `config.json` read.
    pub const FILE_BYTES: u64 = 16 << 20;
}

impl Config {
    /// Reads and validates `config.json` (refusing one larger than [`Bounds::FILE_BYTES`]
    /// without reading more).
    pub fn from_file(path: &Path) -> Result<Self> {
        use std::io::Read as _;
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        // A regular file says its size; a device or pipe is read up to the bound.
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let mut text = String::new();
        if len <= Bounds::FILE_BYTES {
            file.take(Bounds::FILE_BYTES + 1)
                .read_to_string(&mut text)
                .map_err(|e| Error::io(path, e))?;
        }
        if len > Bounds::FILE_BYTES || text.len() as u64 > Bounds::FILE_BYTES {
            return Err(Error::Config {
                path: path.to_path_buf(),
                message: format!(
                    "more than {} bytes: a config.json of at most that is read",
                    Bounds::FILE_BYTES
                ),
            });
        }
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let cfg: Config = serde_json::from_str(text).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        cfg.validate().map_err(|e| match e {
            Error::Input(message) => Error::Config {
                path: path.to_path_buf(),
                message,
            },
            e @ Error::BadOption { .. } => Error::Config {
                path: path.to_path_buf(),
                message: e.to_string(),
            },
            other => other,
        })?;
        Ok(cfg)
    }

    /// Checks every size against [`Bounds`] and the fields against each other; names the
    /// architecture if it is unknown.
    pub fn validate(&self) -> Result<()> {
        self.kind()?;
        self.activation()?;
        for (field, value, min, max) in [
            ("vocab_size", self.vocab_size, 1, Bounds::VOCAB),
            ("hidden_size", self.hidden_size, 1, Bounds::HIDDEN),
            (
                "num_hidden_layers",
                self.num_hidden_layers,
                1,
                Bounds::LAYERS,
            ),
            (
                "num_attention_heads",
                self.num_attention_heads,
                1,
                Bounds::HEADS,
            ),
            (
                "intermediate_size",
                self.intermediate_size,
                1,
                Bounds::INTERMEDIATE,
            ),
            (
                "max_position_embeddings",
                self.max_position_embeddings,
                1,
                Bounds::POSITIONS,
            ),
            (
                "type_vocab_size",
                self.type_vocab_size,
                1,
                Bounds::TYPE_VOCAB,
            ),
            ("num_labels", self.labels(), 0, Bounds::LABELS),
        ] {
            if !(min..=max).contains(&value) {
                return Err(Error::Input(format!(
                    "{field} {value}: expected {min} to {max}"
                )));
            }
        }
        if !(self.layer_norm_eps > 0.0 && self.layer_norm_eps < 1.0) {
            return Err(Error::Input(format!(
                "layer_norm_eps {:?}: expected a number in (0, 1)",
                self.layer_norm_eps
            )));
        }
        if self.hidden_size % self.num_attention_heads != 0 {
            return Err(Error::Input(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            )));
        }
        if self.max_position_embeddings <= self.position_offset() {
            return Err(Error::Input("max_position_embeddings too small".into()));
        }
        if matches!(
            self.task(),
            Task::SequenceClassification | Task::TokenClassification
        ) && self.labels() == 0
        {
            return Err(Error::Input(
                "a classification head needs num_labels > 0".into(),
            ));
        }
        let parameters = self.parameter_bound();
        if parameters > Bounds::PARAMETERS as u128 {
            return Err(Error::Input(format!(
                "{parameters} parameters (vocab_size {} × hidden_size {}, {} layers of FFN {}): \
                 expected at most {}",
                self.vocab_size,
                self.hidden_size,
                self.num_hidden_layers,
                self.intermediate_size,
                Bounds::PARAMETERS
            )));
        }
        Ok(())
    }

    /// The parameters of the encoder and its largest head, by arithmetic on the sizes (no
    /// layout is built: this bounds a configuration before anything is allocated; the exact
    /// count is [`crate::Layout::parameters`]).
    pub fn parameter_bound(&self) -> u128 {
        let [v, h, p, t, l, f, k] = [
            self.vocab_size,
            self.hidden_size,
            self.max_position_embeddings,
            self.type_vocab_size,
            self.num_hidden_layers,
            self.intermediate_size,
            self.labels(),
        ]
        .map(|x| x as u128);
        let embeddings = (v + p + t) * h + 2 * h;
        let layer = 4 * (h * h + h) + 2 * h + 2 * h * f + f + h + 2 * h;
        let head = h * h + h + k * h + k;
        embeddings + l * layer + head
    }

    /// The encoder family.
    pub fn kind(&self) -> Result<ModelType> {
        ModelType::parse(&self.model_type)
    }

    /// The feed-forward activation.
    pub fn activation(&self) -> Result<Activation> {
        Activation::from_hidden_act(&self.hidden_act)
    }

    /// The head, chosen from `architectures` (a bare encoder gives embeddings).
    pub fn task(&self) -> Task {
        if self
            .architectures
            .iter()
            .any(|a| a.ends_with("ForSequenceClassification"))
        {
            Task::SequenceClassification
        } else if self
            .architectures
            .iter()
            .any(|a| a.ends_with("ForTokenClassification"))
        {
            Task::TokenClassification
        } else {
            Task::Embedding
        }
    }

    /// The number of labels of a classification head.
    pub fn labels(&self) -> usize {
        match (&self.id2label, self.num_labels) {
            (Some(m), _) if !m.is_empty() => m.len(),
            (_, Some(n)) => n,
            _ => 0,
        }
    }

    /// Label names in id order (`LABEL_i` where the config gives none).
    pub fn label_names(&self) -> Vec<String> {
        (0..self.labels())
            .map(|i| {
                self.id2label
                    .as_ref()
                    .and_then(|m| m.get(&i.to_string()).cloned())
                    .unwrap_or_else(|| format!("LABEL_{i}"))
            })
            .collect()
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Index of the first position embedding: 0 for BERT, `pad_token_id + 1` for RoBERTa.
    pub fn position_offset(&self) -> usize {
        match self.kind() {
            Ok(ModelType::Roberta) => self.pad_token_id as usize + 1,
            _ => 0,
        }
    }

    /// The longest sequence (in tokens, specials included) the model takes.
    pub fn max_tokens(&self) -> usize {
        self.max_position_embeddings - self.position_offset()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINILM: &str = r#"{"_name_or_path":"x","architectures":["BertModel"],
      "attention_probs_dropout_prob":0.1,"hidden_act":"gelu","hidden_size":384,
      "intermediate_size":1536,"layer_norm_eps":1e-12,"max_position_embeddings":512,
      "model_type":"bert","num_attention_heads":12,"num_hidden_layers":6,"pad_token_id":0,
      "type_vocab_size":2,"vocab_size":30522,"torch_dtype":"float32"}"#;

    #[test]
    fn reads_hf_config() {
        let c: Config = serde_json::from_str(MINILM).unwrap();
        c.validate().unwrap();
        assert_eq!(c.task(), Task::Embedding);
        assert_eq!(c.head_dim(), 32);
        assert_eq!(c.max_tokens(), 512);
    }

    #[test]
    fn names_unknown_architecture() {
        let c: Config = serde_json::from_str(&MINILM.replace("\"bert\"", "\"gpt2\"")).unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("gpt2") && e.contains("roberta"), "{e}");
    }

    #[test]
    fn labels_from_id2label() {
        let s = MINILM.replace(
            "[\"BertModel\"]",
            "[\"RobertaForSequenceClassification\"],\"id2label\":{\"0\":\"neg\",\"1\":\"pos\"}",
        );
        let s = s
            .replace("\"bert\"", "\"roberta\"")
            .replace("\"pad_token_id\":0", "\"pad_token_id\":1");
        let c: Config = serde_json::from_str(&s).unwrap();
        assert_eq!(c.task(), Task::SequenceClassification);
        assert_eq!(c.label_names(), vec!["neg", "pos"]);
        assert_eq!(c.position_offset(), 2);
    }
}
