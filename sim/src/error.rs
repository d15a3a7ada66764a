//! The crate's one error type: every refusal names the file, the position or field, and what
//! was expected.

use std::path::PathBuf;

/// A result whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything the simulator can refuse.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file was read but its content is malformed at a known position.
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        /// The file (or `<embedded>/…`, `<inline>`).
        path: String,
        /// 1-based line.
        line: usize,
        /// 1-based column (0 when only the line is known).
        column: usize,
        /// What was wrong and what was expected.
        message: String,
    },
    /// A value is well-formed but not acceptable.
    #[error("{context}: {message}")]
    Invalid {
        /// Where: file and field, or the scenario's name and field.
        context: String,
        /// What was wrong and what was expected.
        message: String,
    },
    /// The scenario uses a model the profile does not describe.
    #[error("profile {profile} has no model {model:?} (used by {used_by}); it describes: {known}")]
    UnknownModel {
        /// The profile file.
        profile: String,
        /// The missing model.
        model: String,
        /// Who asked for it (a tenant, the scenario default).
        used_by: String,
        /// The models the profile does have.
        known: String,
    },
    /// A policy name nobody implements.
    #[error("unknown policy {name:?}; known policies: {known}")]
    UnknownPolicy {
        /// The name asked for.
        name: String,
        /// The names that exist.
        known: String,
    },
    /// The instances asked for do not fit in the GPU's memory.
    #[error(
        "{instances} instances of {model} need {need_bytes} bytes ({per_instance_bytes} each) \
         but the GPU {gpu} has {have_bytes} bytes: at most {fit} instances fit"
    )]
    DoesNotFit {
        /// Instances asked for.
        instances: usize,
        /// The largest model any instance may hold.
        model: String,
        /// Bytes one instance needs.
        per_instance_bytes: u64,
        /// Bytes all instances need.
        need_bytes: u64,
        /// The GPU's name.
        gpu: String,
        /// Bytes the GPU has.
        have_bytes: u64,
        /// How many would fit.
        fit: u64,
    },
    /// A scheduler broke the engine's rules (a bug in the scheduler, never in the input).
    #[error("scheduler {policy} broke an invariant at t={now_ns} ns: {message}")]
    Scheduler {
        /// The policy.
        policy: String,
        /// Simulated time.
        now_ns: u64,
        /// What went wrong.
        message: String,
    },
}

impl Error {
    /// An [`Error::Invalid`] from anything printable.
    pub fn invalid(context: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Invalid {
            context: context.into(),
            message: message.into(),
        }
    }

    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Converts a `ron` error into an [`Error::Parse`] naming `path`, line and column.
    pub fn from_ron(path: &str, err: ron::error::SpannedError) -> Self {
        Error::Parse {
            path: path.to_string(),
            line: err.position.line,
            column: err.position.col,
            message: err.code.to_string(),
        }
    }

    /// Converts a `serde_json` error into an [`Error::Parse`] naming `path`, line and column.
    pub fn from_json(path: &str, err: &serde_json::Error) -> Self {
        Error::Parse {
            path: path.to_string(),
            line: err.line(),
            column: err.column(),
            message: json_message(err),
        }
    }
}

/// A `serde_json` error's message without the " at line L column C" it appends.
pub(crate) fn json_message(err: &serde_json::Error) -> String {
    let full = err.to_string();
    match full.rfind(" at line ") {
        Some(i) => full[..i].to_string(),
        None => full,
    }
}
