//! # ptm-plots — the figures people look at
//!
//! Renders a sweep's cell reports ([`ptm_sim::sweep::CellReport`]) and per-instance timelines
//! as PNG and SVG with `plotters`:
//!
//! - **metrics against load**: throughput, overtimes and switches against the swept numeric
//!   axis (offered load, else instances), one line per policy with the 95 % interval over seeds
//!   as a band; grouped bars when only categories vary (workloads, loading modes);
//! - **latency CDF** per policy;
//! - **timeline** (Gantt) per instance from `ptm run --timeline`.
//!
//! Text is drawn with an embedded font (DejaVu Sans, `assets/`), so charts render the same on
//! a fresh machine with no fonts installed.

mod chart;
mod figures;
mod timeline;

pub use figures::render_sweep;
pub use timeline::{read_timeline_csv, render_timeline, TimelineRow};

use std::path::PathBuf;

/// Everything plotting can refuse.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Input that cannot be drawn.
    #[error("{0}")]
    Invalid(String),
    /// The drawing backend failed.
    #[error("drawing {path}: {message}")]
    Draw {
        /// The figure's file.
        path: PathBuf,
        /// The backend's message.
        message: String,
    },
}

/// A result whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
