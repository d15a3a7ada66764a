//! # ptm-plots — the figures people look at
//!
//! Renders a sweep's cell reports ([`ptm_sim::sweep::CellReport`]) and per-instance timelines
//! as PNG and SVG with `plotters`:
//!
//! - **metrics against load**: throughput, SLO attainment, overtimes, switches and p99 latency
//!   against the swept numeric axis (offered load, else instances), one line per policy with
//!   the 95 % interval over seeds as a band clamped to the metric's range; grouped bars when only
//!   categories vary (workloads, loading modes);
//! - **latency CDFs**: a panel per load, one line per policy, the deadline marked;
//! - **timeline** (Gantt) per instance from `ptm run --timeline`, over a time window;
//! - **capacity against instances** per policy, from `ptm plan`.
//!
//! Every policy has one colour in every figure ([`palette::policy_colour`]); legends sit in
//! their own column right of the data.
//!
//! Text is drawn with an embedded font (DejaVu Sans, `assets/`), so charts render the same on
//! a fresh machine with no fonts installed.

pub mod chart;
pub mod figures;
pub mod palette;
mod plan;
mod timeline;

pub use figures::render_sweep;
pub use plan::{plan_series, render_plan};
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
