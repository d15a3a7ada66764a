//! The fast-weight runtime: BERT-family encoders (BERT, RoBERTa, MiniLM) read from Hugging Face
//! checkpoints, run on the CPU with candle (the numeric reference) or on the GPU with cudarc
//! (cuBLAS(Lt) GEMMs, NVRTC kernels, CUDA graphs per (batch, sequence) bucket), plus a zoo of
//! seeded fine-tuned variants for tests and benchmarks.
//!
//! Weights are packed per model into one aligned buffer ([`PackedWeights`], [`Layout`]); the GPU
//! backend keeps them in one device arena with fixed addresses, so that weight switching can
//! copy another tenant into it without invalidating captured graphs.

pub mod activation;
pub mod bert;
pub mod checkpoint;
pub mod config;
pub mod device;
pub mod dtype;
pub mod error;
pub mod gpu;
pub mod identity;
pub mod layout;
pub mod model;
pub mod pet;
pub mod slot;
pub mod switch;
pub mod tokenize;
pub mod vocab;
pub mod zoo;

pub use bert::HeadOutput;
pub use checkpoint::PackedWeights;
pub use config::{Config, ModelType, Task};
pub use device::Device;
pub use dtype::DType;
pub use error::{Error, Result};
pub use gpu::KernelOptions;
pub use layout::Layout;
pub use model::{Engine, Model, TextOutput};
pub use slot::{Slot, SlotHost};
pub use switch::{ArchLayout, CpuPool, CpuSlot, Eviction, HostCache, TenantInfo};
pub use tokenize::Batch;
pub use zoo::{make_zoo, Arch, Zoo};
