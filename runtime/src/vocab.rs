//! A synthetic WordPiece vocabulary and `tokenizer.json` for zoo models: every word tokenizes
//! (letters and their `##` continuations are all present), with BERT or RoBERTa special tokens.

use crate::config::ModelType;
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;

const WORDS: &[&str] = &[
    "the", "a", "an", "and", "or", "of", "to", "in", "on", "for", "with", "is", "are", "was", "be",
    "it", "this", "that", "model", "models", "serve", "serving", "gpu", "fast", "slow", "weight",
    "weights", "switch", "request", "tenant", "good", "bad", "movie", "great", "film", "not",
    "very", "i", "you", "we", "they", "he", "she", "love", "hate", "like", "time", "day", "new",
    "one", "two", "three", "hello", "world", "cat", "dog", "sat", "mat", "quick", "brown", "fox",
    "jumps", "over", "lazy", "paris", "london", "city", "bank", "river", "data",
];

/// The special tokens of a family, `(token, id)`, and the unknown token.
pub fn specials(kind: ModelType) -> (Vec<(String, u32)>, &'static str) {
    match kind {
        ModelType::Bert => (
            vec![
                ("[PAD]".into(), 0),
                ("[UNK]".into(), 100),
                ("[CLS]".into(), 101),
                ("[SEP]".into(), 102),
                ("[MASK]".into(), 103),
            ],
            "[UNK]",
        ),
        ModelType::Roberta => (
            vec![
                ("<s>".into(), 0),
                ("<pad>".into(), 1),
                ("</s>".into(), 2),
                ("<unk>".into(), 3),
                ("<mask>".into(), 4),
            ],
            "<unk>",
        ),
    }
}

/// `size` tokens in id order (deterministic).
pub fn synthetic_vocab(kind: ModelType, size: usize) -> Vec<String> {
    let (sp, _) = specials(kind);
    let first_free = sp.iter().map(|(_, id)| *id as usize + 1).max().unwrap_or(0);
    let mut v: Vec<String> = (0..first_free).map(|i| format!("[unused{i}]")).collect();
    for (t, id) in &sp {
        v[*id as usize] = t.clone();
    }
    let mut seen: BTreeSet<String> = v.iter().cloned().collect();
    let mut push = |t: String, v: &mut Vec<String>| {
        if v.len() < size && seen.insert(t.clone()) {
            v.push(t);
        }
    };
    let chars: Vec<String> = ('a'..='z')
        .chain('0'..='9')
        .chain("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~".chars())
        .map(String::from)
        .collect();
    for c in &chars {
        push(c.clone(), &mut v);
    }
    for c in &chars {
        push(format!("##{c}"), &mut v);
    }
    for w in WORDS {
        push((*w).to_string(), &mut v);
    }
    let cons = "bcdfghjklmnpqrstvwxyz";
    let vow = "aeiou";
    let mut syll = Vec::new();
    for c in cons.chars() {
        for w in vow.chars() {
            syll.push(format!("{c}{w}"));
        }
    }
    let cvc: Vec<String> = syll
        .iter()
        .flat_map(|s| cons.chars().map(move |c| format!("{s}{c}")))
        .collect();
    'fill: for n in 0.. {
        let group: Vec<String> = match n {
            0 => syll.clone(),
            1 => cvc.clone(),
            _ => {
                let k = n - 2;
                if k >= syll.len() {
                    break 'fill;
                }
                cvc.iter().map(|s| format!("{}{s}", syll[k])).collect()
            }
        };
        for s in group {
            push(s.clone(), &mut v);
            push(format!("##{s}"), &mut v);
            if v.len() >= size {
                break 'fill;
            }
        }
    }
    let mut i = 0;
    while v.len() < size {
        push(format!("[fill{i}]"), &mut v);
        i += 1;
    }
    v
}

/// A `tokenizer.json` (HF `tokenizers` format) over `vocab`.
pub fn tokenizer_json(kind: ModelType, vocab: &[String]) -> Value {
    let (sp, unk) = specials(kind);
    let added: Vec<Value> = sp
        .iter()
        .map(|(t, id)| {
            json!({"id": id, "content": t, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let mut map = Map::new();
    for (i, t) in vocab.iter().enumerate() {
        map.insert(t.clone(), json!(i));
    }
    let id = |t: &str| {
        sp.iter()
            .find(|(s, _)| s == t)
            .map(|(_, i)| *i)
            .unwrap_or(0)
    };
    let post = match kind {
        ModelType::Bert => json!({"type": "BertProcessing",
            "sep": ["[SEP]", id("[SEP]")], "cls": ["[CLS]", id("[CLS]")]}),
        ModelType::Roberta => json!({"type": "RobertaProcessing",
            "sep": ["</s>", id("</s>")], "cls": ["<s>", id("<s>")],
            "trim_offsets": true, "add_prefix_space": false}),
    };
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": {"type": "BertNormalizer", "clean_text": true,
            "handle_chinese_chars": true, "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": post,
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordPiece", "unk_token": unk, "continuing_subword_prefix": "##",
            "max_input_chars_per_word": 100, "vocab": Value::Object(map)}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocab_is_exact_and_unique() {
        for (k, n) in [
            (ModelType::Bert, 30522),
            (ModelType::Roberta, 50265),
            (ModelType::Bert, 1000),
        ] {
            let v = synthetic_vocab(k, n);
            assert_eq!(v.len(), n);
            assert_eq!(v.iter().collect::<BTreeSet<_>>().len(), n);
        }
        let v = synthetic_vocab(ModelType::Bert, 30522);
        assert_eq!(v[101], "[CLS]");
        assert_eq!(v[0], "[PAD]");
    }
}
