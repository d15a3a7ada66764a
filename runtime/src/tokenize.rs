//! Tokenization through the `tokenizers` crate (`tokenizer.json`) into padded id batches.

use crate::config::Config;
use crate::error::{Error, Result};
use std::path::Path;
use tokenizers::{Tokenizer, TruncationParams};

/// A padded batch of token ids, row-major `[batch, seq]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Token ids.
    pub ids: Vec<u32>,
    /// Token-type (segment) ids.
    pub type_ids: Vec<u32>,
    /// 1 for real tokens, 0 for padding.
    pub mask: Vec<u32>,
    /// Rows.
    pub batch: usize,
    /// Columns (padded length).
    pub seq: usize,
}

impl Batch {
    /// Builds a batch from unpadded rows, padding them with `pad_id` to the longest (or `seq`).
    pub fn from_rows(rows: &[Vec<u32>], pad_id: u32, seq: Option<usize>) -> Result<Self> {
        let longest = rows.iter().map(Vec::len).max().unwrap_or(0);
        let seq = seq.unwrap_or(longest);
        if rows.is_empty() || longest == 0 {
            return Err(Error::Input("empty batch".into()));
        }
        if longest > seq {
            return Err(Error::Input(format!(
                "a row of {longest} tokens exceeds {seq}"
            )));
        }
        let mut b = Batch {
            ids: Vec::with_capacity(rows.len() * seq),
            type_ids: vec![0; rows.len() * seq],
            mask: Vec::with_capacity(rows.len() * seq),
            batch: rows.len(),
            seq,
        };
        for r in rows {
            b.ids.extend_from_slice(r);
            b.ids.extend(std::iter::repeat_n(pad_id, seq - r.len()));
            b.mask.extend(std::iter::repeat_n(1, r.len()));
            b.mask.extend(std::iter::repeat_n(0, seq - r.len()));
        }
        Ok(b)
    }

    /// Real (unpadded) length of each row.
    pub fn lengths(&self) -> Vec<usize> {
        self.mask
            .chunks(self.seq)
            .map(|r| r.iter().filter(|&&m| m != 0).count())
            .collect()
    }

    /// The real token ids of row `b`.
    pub fn row_ids(&self, b: usize) -> &[u32] {
        let row = b * self.seq..(b + 1) * self.seq;
        let len = self.mask[row.clone()].iter().filter(|&&m| m != 0).count();
        &self.ids[row.start..row.start + len]
    }

    /// Checks the ids against the model's tables and the length against its positions.
    pub fn check(&self, cfg: &Config) -> Result<()> {
        if self.batch == 0 || self.seq == 0 {
            return Err(Error::Input("empty batch".into()));
        }
        let n = self.batch * self.seq;
        if self.ids.len() != n || self.mask.len() != n || self.type_ids.len() != n {
            return Err(Error::Input(
                "ids, type ids and mask must be batch × seq long".into(),
            ));
        }
        if self.seq > cfg.max_tokens() {
            return Err(Error::Input(format!(
                "sequence of {} tokens exceeds the model's {}",
                self.seq,
                cfg.max_tokens()
            )));
        }
        if let Some(id) = self.ids.iter().find(|&&i| i as usize >= cfg.vocab_size) {
            return Err(Error::Input(format!(
                "token id {id} ≥ vocab_size {}",
                cfg.vocab_size
            )));
        }
        if let Some(t) = self
            .type_ids
            .iter()
            .find(|&&t| t as usize >= cfg.type_vocab_size)
        {
            return Err(Error::Input(format!(
                "token type {t} ≥ type_vocab_size {}",
                cfg.type_vocab_size
            )));
        }
        if self.lengths().contains(&0) {
            return Err(Error::Input("a row has no real token".into()));
        }
        Ok(())
    }
}

/// `batch` rows of `seq_len` pseudo-random token ids of `cfg`'s vocabulary (ids 0–4, the usual
/// special tokens, are avoided), from the xorshift state `state` (non-zero; advanced), for
/// timing runs that need realistic inputs, not meaningful ones.
pub fn random_rows(cfg: &Config, batch: u32, seq_len: u32, state: &mut u64) -> Vec<Vec<u32>> {
    let lo = 5u64.min(cfg.vocab_size as u64 - 1);
    let span = (cfg.vocab_size as u64 - lo).max(1);
    (0..batch)
        .map(|_| {
            (0..seq_len)
                .map(|_| {
                    *state ^= *state << 13;
                    *state ^= *state >> 7;
                    *state ^= *state << 17;
                    (lo + *state % span) as u32
                })
                .collect()
        })
        .collect()
}

/// A `tokenizer.json` set up to pad and truncate for one model.
pub struct TextEncoder {
    tok: Tokenizer,
    pad_id: u32,
}

impl TextEncoder {
    /// Loads `tokenizer.json` and truncates to the model's positions.
    pub fn from_file(path: &Path, cfg: &Config) -> Result<Self> {
        let mut tok = Tokenizer::from_file(path)
            .map_err(|e| Error::Tokenizer(format!("{}: {e}", path.display())))?;
        let max = cfg.max_tokens();
        let trunc = match tok.get_truncation() {
            Some(t) if t.max_length <= max => t.clone(),
            Some(t) => TruncationParams {
                max_length: max,
                ..t.clone()
            },
            None => TruncationParams {
                max_length: max,
                ..Default::default()
            },
        };
        tok.with_truncation(Some(trunc))
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        tok.with_padding(None);
        Ok(TextEncoder {
            tok,
            pad_id: cfg.pad_token_id,
        })
    }

    /// Tokenizes `texts` (special tokens added) into a batch padded to the longest.
    pub fn encode<S: AsRef<str>>(&self, texts: &[S]) -> Result<Batch> {
        let enc = self.encodings(texts)?;
        let rows: Vec<Vec<u32>> = enc.iter().map(|e| e.get_ids().to_vec()).collect();
        let mut b = Batch::from_rows(&rows, self.pad_id, None)?;
        for (r, e) in enc.iter().enumerate() {
            for (i, &t) in e.get_type_ids().iter().enumerate() {
                b.type_ids[r * b.seq + i] = t;
            }
        }
        Ok(b)
    }

    /// The token ids of each of `texts` (special tokens added), unpadded: what
    /// [`encode`](Self::encode)'s rows hold, without the padded batch.
    /// Refused as `encode` refuses it: no texts, or no token in any.
    pub fn encode_rows<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<Vec<u32>>> {
        let rows: Vec<Vec<u32>> = self
            .encodings(texts)?
            .into_iter()
            .map(|e| e.get_ids().to_vec())
            .collect();
        if rows.iter().all(Vec::is_empty) {
            return Err(Error::Input("empty batch".into()));
        }
        Ok(rows)
    }

    /// One text after another on the calling thread: what the tokenizer's `encode_batch` does
    /// without padding, but without handing a few short texts to a rayon pool (whose wake-ups
    /// and spinning threads cost more than the tokenizing, on a server tokenizing each request
    /// on its own).
    fn encodings<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<tokenizers::Encoding>> {
        texts
            .iter()
            .map(|t| {
                self.tok
                    .encode(t.as_ref(), true)
                    .map_err(|e| Error::Tokenizer(e.to_string()))
            })
            .collect()
    }

    /// The underlying tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_and_measures() {
        let b = Batch::from_rows(&[vec![5, 6, 7], vec![8]], 0, Some(4)).unwrap();
        assert_eq!(b.ids, vec![5, 6, 7, 0, 8, 0, 0, 0]);
        assert_eq!(b.lengths(), vec![3, 1]);
        assert_eq!(b.row_ids(1), &[8]);
        assert_eq!(b.row_ids(0), &[5, 6, 7]);
        assert!(Batch::from_rows(&[vec![1, 2, 3]], 0, Some(2)).is_err());
        assert!(Batch::from_rows(&[], 0, None).is_err());
    }

    #[test]
    fn encodes_as_the_tokenizers_batch_does() {
        use crate::zoo::{make_zoo, model_dir, Arch};
        let tmp = tempfile::tempdir().unwrap();
        let zoo = make_zoo(Arch::Tiny, 1, tmp.path(), crate::DType::Fp32, 3).unwrap();
        let d = model_dir(tmp.path(), &zoo.models[0].name);
        let cfg = Config::from_file(&d.join("config.json")).unwrap();
        let enc = TextEncoder::from_file(&d.join("tokenizer.json"), &cfg).unwrap();
        let texts = [
            "the quick brown fox",
            "",
            "Ünïcode and   spaces, punctuation!",
            &"word ".repeat(200),
        ];
        let theirs = enc.tokenizer().encode_batch(texts.to_vec(), true).unwrap();
        let rows = enc.encode_rows(&texts).unwrap();
        assert_eq!(rows.len(), texts.len());
        for (row, e) in rows.iter().zip(&theirs) {
            assert_eq!(row.as_slice(), e.get_ids());
        }
        assert!(enc.encode_rows::<&str>(&[]).is_err() && enc.encode::<&str>(&[]).is_err());
        // Truncated to the model's positions.
        assert_eq!(rows[3].len(), cfg.max_tokens());
        let b = enc.encode(&texts).unwrap();
        for (r, row) in rows.iter().enumerate() {
            assert_eq!(b.row_ids(r), row.as_slice());
            let types = &b.type_ids[r * b.seq..r * b.seq + row.len()];
            assert_eq!(types, theirs[r].get_type_ids());
        }
    }
}
