//! The crate's one error type: what live replay, the executors and the server can refuse or
//! fail at, each naming the instance, request, file or flag concerned.

/// A result whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything live mode can refuse or fail at.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The simulator refused an input, or the ledger caught a broken rule (a dispatch to a busy
    /// instance, a stall, a request not completed exactly once).
    #[error(transparent)]
    Sim(#[from] ptm_sim::Error),
    /// The runtime refused a model, a checkpoint or a device.
    #[error(transparent)]
    Runtime(#[from] ptm_runtime::Error),
    /// The start-up calibration failed.
    #[error(transparent)]
    Calibrate(#[from] ptm_calibrate::Error),
    /// A file, socket or thread operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// An executor failed on a request.
    #[error("instance {instance}: {message}")]
    Executor {
        /// The instance.
        instance: usize,
        /// What failed.
        message: String,
    },
    /// A prefetch into the GPU pool failed.
    #[error("prefetch of tenant {tenant} into the GPU pool: {message}")]
    Prefetch {
        /// The tenant.
        tenant: u32,
        /// What failed.
        message: String,
    },
    /// An instance's worker stopped (its executor panicked) with a request unanswered.
    #[error("instance {instance} stopped while serving request {request}: the request was lost")]
    WorkerStopped {
        /// The instance.
        instance: usize,
        /// The request it was serving.
        request: u32,
    },
    /// An input or configuration that cannot be served.
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// An [`Error::Io`] saying what was being done.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}
