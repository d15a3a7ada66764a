//! Weights separated from the model: one packed layout per architecture, a capacity-bounded
//! host cache of tenants in that layout, and slots (a fixed weight arena plus the model
//! structure built over it) that a tenant is switched into by copying its packed bytes.
//!
//! Every tenant of one architecture packs into the same [`ArchLayout`]: the encoder tensors at
//! the offsets of [`Layout`], then one head region sized for the largest head (pooler
//! `H × H` + `H`, classifier `max_labels × H` + `max_labels`). A tenant with fewer labels
//! fills the first rows of the classifier (row-major `[labels, H]` is a prefix of
//! `[max_labels, H]`); an embedding tenant leaves the head region zero. Padding is always
//! zero, so a switch writes the whole arena and leaves nothing of the previous tenant.
//!
//! Because every tenant of a slot has the same addresses, a CUDA graph captured for a
//! (head, batch, sequence) bucket stays valid for every tenant switched in later.

pub mod cache;
pub mod cpu;
pub mod landing;
pub mod pool;
pub mod read;

use crate::checkpoint::PackedWeights;
use crate::config::Config;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::layout::Layout;

pub use cache::{Eviction, HostCache, TenantInfo};
pub use cpu::CpuSlot;
pub use pool::CpuPool;

/// The packed layout shared by every tenant of one architecture, in one dtype.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchLayout {
    /// Encoder tensors plus a head region for `max_labels` labels.
    pub layout: Layout,
    /// The structure every tenant must have (a config with its head fields cleared).
    pub structure: Config,
    /// Rows of the classifier region.
    pub max_labels: usize,
    /// The dtype of the packed bytes.
    pub dtype: DType,
}

/// `cfg` without its head (architectures, labels) and informative fields.
fn structure_of(cfg: &Config) -> Config {
    let mut s = cfg.clone();
    s.architectures.clear();
    s.id2label = None;
    s.num_labels = None;
    s.torch_dtype = None;
    s
}

fn head_config(structure: &Config, labels: usize) -> Result<Config> {
    let mut head = structure.clone();
    let family = match structure.kind()? {
        crate::config::ModelType::Bert => "Bert",
        crate::config::ModelType::Roberta => "Roberta",
    };
    head.architectures = vec![format!("{family}ForSequenceClassification")];
    head.num_labels = Some(labels);
    Ok(head)
}

impl ArchLayout {
    /// The layout for tenants shaped like `cfg` (its head ignored) with heads up to
    /// `max_labels` labels, packed in `dtype`.
    pub fn new(cfg: &Config, max_labels: usize, dtype: DType) -> Result<Self> {
        let structure = structure_of(cfg);
        let head = head_config(&structure, max_labels.max(1))?;
        Ok(ArchLayout {
            layout: Layout::for_config(&head)?,
            structure,
            max_labels: max_labels.max(1),
            dtype,
        })
    }

    /// The configuration whose [`Layout`] this is: the structure with a sequence
    /// classification head of `max_labels` labels (the widest head region).
    pub fn head_config(&self) -> Result<Config> {
        head_config(&self.structure, self.max_labels)
    }

    /// Bytes of one packed tenant (alignment and head padding included).
    pub fn bytes(&self) -> usize {
        self.layout.total_elements() * self.dtype.size_bytes()
    }

    /// Checks that a tenant with configuration `cfg` fits this layout.
    pub fn check_tenant(&self, name: &str, cfg: &Config) -> Result<()> {
        let s = structure_of(cfg);
        if s != self.structure {
            return Err(Error::Incompatible {
                tenant: name.to_string(),
                reason: format!(
                    "its encoder differs from the slot's architecture (expected {} layers, hidden {}, vocabulary {}, {} `{}`; found {} layers, hidden {}, vocabulary {}, {} `{}`)",
                    self.structure.num_hidden_layers, self.structure.hidden_size, self.structure.vocab_size, self.structure.model_type, self.structure.hidden_act,
                    s.num_hidden_layers, s.hidden_size, s.vocab_size, s.model_type, s.hidden_act
                ),
            });
        }
        if cfg.labels() > self.max_labels {
            return Err(Error::Incompatible {
                tenant: name.to_string(),
                reason: format!(
                    "its head has {} labels, the layout holds at most {}",
                    cfg.labels(),
                    self.max_labels
                ),
            });
        }
        Ok(())
    }

    /// Where tensor `name` of a tenant lives in the packed buffer, in bytes.
    pub fn byte_offset(&self, name: &str) -> Result<usize> {
        self.layout
            .get(name)
            .map(|e| e.offset * self.dtype.size_bytes())
            .ok_or_else(|| Error::MissingTensor {
                name: name.to_string(),
                tried: "the architecture layout".into(),
                expected: vec![],
            })
    }

    /// Packs a tenant's own weights (its [`Layout`]) into `dst` (this layout), zeroing all
    /// padding.
    pub fn pack(&self, w: &PackedWeights, dst: &mut [u8]) -> Result<()> {
        if w.dtype != self.dtype || dst.len() != self.bytes() {
            return Err(Error::Input(format!(
                "packing {} bytes of {} into {} bytes of {}",
                w.bytes.len(),
                w.dtype,
                dst.len(),
                self.dtype
            )));
        }
        dst.fill(0);
        for e in w.layout.entries() {
            let at = self.byte_offset(&e.name)?;
            let src = w.tensor_bytes(e);
            dst[at..at + src.len()].copy_from_slice(src);
        }
        Ok(())
    }

    /// The weights of a tenant with configuration `cfg` held in `bytes` (this layout), in the
    /// tenant's own [`Layout`]: what the CPU builds its model from.
    pub fn tenant_weights(&self, bytes: &[u8], cfg: &Config) -> Result<PackedWeights> {
        let layout = Layout::for_config(cfg)?;
        let esz = self.dtype.size_bytes();
        let mut out = vec![0u8; layout.total_elements() * esz];
        for e in layout.entries() {
            let at = self.byte_offset(&e.name)?;
            let n = e.elements() * esz;
            let src = bytes.get(at..at + n).ok_or_else(|| {
                Error::Input(format!(
                    "packed buffer of {} bytes is too short for `{}`",
                    bytes.len(),
                    e.name
                ))
            })?;
            out[e.offset * esz..e.offset * esz + n].copy_from_slice(src);
        }
        Ok(PackedWeights {
            layout,
            dtype: self.dtype,
            bytes: out,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Task;
    use crate::zoo::Arch;

    #[test]
    fn every_head_fits_one_layout() {
        let arch =
            ArchLayout::new(&Arch::Tiny.config(Task::Embedding, 0), 17, DType::Fp16).unwrap();
        for (task, labels) in [
            (Task::SequenceClassification, 2),
            (Task::TokenClassification, 17),
            (Task::Embedding, 0),
        ] {
            arch.check_tenant("t", &Arch::Tiny.config(task, labels))
                .unwrap();
        }
        let too_wide = Arch::Tiny.config(Task::TokenClassification, 18);
        let e = arch
            .check_tenant("wide", &too_wide)
            .unwrap_err()
            .to_string();
        assert!(e.contains("18 labels") && e.contains("at most 17"), "{e}");
        let other = Arch::MiniLmL6.config(Task::Embedding, 0);
        let e = arch.check_tenant("other", &other).unwrap_err().to_string();
        assert!(e.contains("6 layers"), "{e}");
    }
}
