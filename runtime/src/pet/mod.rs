//! Parameter-efficient tenants (PET) over one shared backbone: LoRA, bottleneck adapters and
//! BitFit, read from the layouts their users already have, run in mixed-tenant batches.
//!
//! # Formats
//!
//! A tenant is a folder beside its backbone (an ordinary Hugging Face model folder,
//! `config.json` + `model.safetensors` + `tokenizer.json`), which its `adapter_config.json`
//! names (`base_model_name_or_path` for PEFT, `model_name` for the `adapters` library; a
//! relative name is resolved against the tenant folder's parent, the zoo, then the current
//! directory). The format is told from `adapter_config.json`:
//!
//! - **LoRA**, Hugging Face PEFT (`peft_type: LORA`): `adapter_model.safetensors` with
//!   `base_model.model.<module>.lora_A.weight` / `lora_B.weight`, `modules_to_save` heads as
//!   `base_model.model.classifier.{weight,bias}`, optional biases (`bias: all|lora_only`). See
//!   [`peft`] for the fields read and refused.
//! - **BitFit** (`peft_type: BITFIT`, our layout, documented in [`peft`]): the same names as a
//!   PEFT LoRA saved with `bias: all` and no LoRA pairs: bias tensors that replace the
//!   backbone's (linears, layer norms, pooler), plus the head.
//! - **Bottleneck adapters**, the `adapters` library (`config` present): Houlsby or Pfeiffer
//!   placement, `adapter.safetensors`, optional `head_config.json` + `model_head.safetensors`.
//!   See [`bottleneck`].
//!
//! Everything a tenant carries is checked against the backbone when it is read: module names,
//! layer indices, shapes (the LoRA rank of the config included), and refused naming the file
//! and the tensor or field. Every size a file can ask for is bounded ([`tensors`], [`peft`],
//! [`bottleneck`], [`tenant::MAX_LABELS`]).
//!
//! # Precision recipe
//!
//! The backbone follows [`crate::bert`]'s recipe. A tenant's additions are computed the same
//! way: model-dtype operands, f32 accumulation, rounding to the model dtype exactly where a
//! value becomes a product operand ([`crate::bert::Rounding::pet`]): the LoRA shrink output
//! `x·Aᵀ`; an adapter's input and its bottleneck after the bias and after the activation. The
//! LoRA expand `scale·(x·Aᵀ)·Bᵀ`, an adapter's up-projection and a replaced bias are added in
//! f32 to the linear's f32 output before that output's own rounding point.
//!
//! # What runs where
//!
//! The CPU reference ([`forward`], [`registry`]) runs mixed batches and is what `ptm infer` uses
//! on a tenant folder on the CPU. The GPU kernels for the same computation (segmented LoRA
//! shrink and expand, per-segment biases, the adapter bottleneck, the heads' dense layers) are
//! in `gpu/pet_kernels.cu` with their Rust API in `gpu/pet.rs`; [`twin`] is their arithmetic on
//! the CPU, tested against [`forward`]. The GPU forward pass calls them in mixed-tenant passes
//! (`gpu/pet_steps.rs`). [`slot::PetSlot`] serves tenants over one backbone on either device:
//! delta blocks ([`block`]) in a GPU adapter pool, pinned host memory and on disk
//! ([`residency`]), loads by tier, mixed batches with a tenant per row. [`zoo`] writes a
//! backbone and N seeded tenants in these layouts.

pub mod backbone;
pub mod bench;
pub mod block;
pub mod bottleneck;
pub mod flex_head;
pub mod forward;
pub mod merge;
pub mod peft;
pub mod registry;
pub mod residency;
pub mod sites;
pub mod slot;
pub mod targets;
pub mod tenant;
pub mod tensors;
pub mod twin;
pub mod write;
pub mod zoo;
pub mod zoo_tenant;

pub use backbone::Backbone;
pub use forward::{forward_mixed, Segment};
pub use registry::PetSet;
pub use residency::Tier;
pub use sites::Module;
pub use slot::{Load, Mixed, PetId, PetMemory, PetSlot, PetSlotConfig};
pub use tenant::{backbone_of, PetKind, PetTenant};
pub use zoo::{make_pet_zoo, PetSpec, PetZoo};
