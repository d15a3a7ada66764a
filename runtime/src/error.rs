//! The crate's one error type: every failure names what was wrong and what was expected.

use std::path::PathBuf;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {err}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        err: std::io::Error,
    },
    /// `config.json` is not valid JSON or misses a field.
    #[error("{path}: bad config.json: {message}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What serde or the validation said.
        message: String,
    },
    /// A `model_type` or zoo architecture this runtime does not run.
    #[error("unknown architecture `{name}` (expected one of: {expected})")]
    UnknownArchitecture {
        /// The name that was given.
        name: String,
        /// The names that are understood.
        expected: String,
    },
    /// A safetensors file that cannot be parsed.
    #[error("{path}: not a valid safetensors file: {message}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// A tensor the model needs is absent from the checkpoint.
    #[error(
        "checkpoint misses tensor `{name}` (looked for: {tried}), expected shape {expected:?}"
    )]
    MissingTensor {
        /// The tensor's canonical name.
        name: String,
        /// The names looked up in the file.
        tried: String,
        /// The shape the model needs.
        expected: Vec<usize>,
    },
    /// A tensor has the wrong shape for the configuration.
    #[error("tensor `{name}` has shape {found:?}, expected {expected:?}")]
    WrongShape {
        /// The tensor's name in the file.
        name: String,
        /// The shape the model needs.
        expected: Vec<usize>,
        /// The shape in the file.
        found: Vec<usize>,
    },
    /// A tensor is stored in a dtype this runtime does not read.
    #[error("tensor `{name}` has dtype {found}, expected one of F32, F16, BF16")]
    UnsupportedDtype {
        /// The tensor's name in the file.
        name: String,
        /// The dtype in the file.
        found: String,
    },
    /// A dtype, device or other option given by name could not be parsed.
    #[error("bad {what} `{value}`: expected {expected}")]
    BadOption {
        /// Which option.
        what: &'static str,
        /// The value given.
        value: String,
        /// What is accepted.
        expected: &'static str,
    },
    /// The tokenizer could not be loaded or failed on an input.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// An input that the model cannot take (empty batch, too long, …).
    #[error("bad input: {0}")]
    Input(String),
    /// A CUDA device was asked for and none can be used.
    #[error("no usable CUDA GPU for `{requested}`: {reason}")]
    NoGpu {
        /// The device that was asked for, e.g. `cuda:0`.
        requested: String,
        /// Why (driver library missing, no such ordinal, built without the `cuda` feature…).
        reason: String,
    },
    /// A CUDA, cuBLAS or NVRTC call failed.
    #[error("CUDA: {0}")]
    Cuda(String),
    /// An error inside candle (CPU backend).
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
    /// The host cache is full and evicts nothing.
    #[error("host cache is full ({capacity} tenants): cannot register `{tenant}` (make it larger or allow eviction)")]
    CacheFull {
        /// The tenant that did not fit.
        tenant: String,
        /// Tenants it holds.
        capacity: usize,
    },
    /// A tenant that the host cache does not hold.
    #[error("tenant `{0}` is not registered in the host cache")]
    NotRegistered(String),
    /// A tenant that does not fit a slot's architecture layout.
    #[error("tenant `{tenant}` does not fit this layout: {reason}")]
    Incompatible {
        /// The tenant.
        tenant: String,
        /// Why.
        reason: String,
    },
    /// More slots were asked for than the GPU's free memory holds.
    #[error("{requested} slots asked for, but {device} has room for {fit}: {free_bytes} bytes free, {per_slot_bytes} bytes per slot (weights {arena_bytes} + activations and cuBLAS workspace)")]
    SlotsDoNotFit {
        /// The device.
        device: String,
        /// Slots asked for.
        requested: usize,
        /// Slots that fit.
        fit: usize,
        /// Free device memory in bytes.
        free_bytes: usize,
        /// Device bytes one slot needs.
        per_slot_bytes: usize,
        /// Bytes of its weight arena.
        arena_bytes: usize,
    },
    /// A GPU weight pool larger than what the device holds beside its executors.
    #[error("a GPU weight pool of {requested} tenants ({slot_bytes} bytes each) was asked for, but {device} has room for {fit}: {free_bytes} bytes free, {executors} executors of {per_executor_bytes} bytes each (weights, activations, cuBLAS workspace) and {headroom_bytes} bytes of headroom kept")]
    PoolDoesNotFit {
        /// The device.
        device: String,
        /// Pool slots asked for.
        requested: usize,
        /// Pool slots that fit.
        fit: usize,
        /// Bytes of one pool slot.
        slot_bytes: usize,
        /// Free device memory in bytes.
        free_bytes: usize,
        /// Executors the pool leaves room for.
        executors: usize,
        /// Device bytes one executor needs.
        per_executor_bytes: usize,
        /// Device memory kept free beside them.
        headroom_bytes: usize,
    },
    /// A lock was poisoned: a thread sharing it failed while holding it.
    #[error("{what} is unusable: another thread failed while holding it")]
    Poisoned {
        /// What the lock guards.
        what: &'static str,
    },
    /// A zoo file could not be written or parsed.
    #[error("zoo: {0}")]
    Zoo(String),
    /// A checkpoint holds tensors that the configuration does not use (e.g. more layers than
    /// `num_hidden_layers`): the configuration does not describe the checkpoint.
    #[error("{path}: {count} tensors are not used by the configuration ({config}): {names}")]
    UnusedTensors {
        /// The checkpoint.
        path: PathBuf,
        /// How many.
        count: usize,
        /// The first few of their names.
        names: String,
        /// The configuration's sizes that decide which tensors are used.
        config: String,
    },
    /// A weight is NaN or infinite (in the dtype it is loaded in).
    #[error("{path}: tensor `{name}` holds a value that is not finite in {dtype} (NaN, infinite or beyond the dtype's range) at element {index}")]
    NonFinite {
        /// The checkpoint.
        path: PathBuf,
        /// The tensor's name in the file.
        name: String,
        /// The dtype the weights are loaded in.
        dtype: String,
        /// The first such element.
        index: usize,
    },
    /// A parameter-efficient tenant (LoRA, adapter, BitFit) that cannot be read or does not fit
    /// its backbone: names the file and the tensor or field.
    #[error("{path}: {what}: {message}")]
    Pet {
        /// The file (or tenant folder).
        path: PathBuf,
        /// The tensor or field concerned.
        what: String,
        /// What was wrong and what was expected.
        message: String,
    },
}

impl Error {
    /// A [`Error::Pet`] error.
    pub fn pet(
        path: impl Into<PathBuf>,
        what: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Error::Pet {
            path: path.into(),
            what: what.into(),
            message: message.into(),
        }
    }

    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            err: source,
        }
    }
}
