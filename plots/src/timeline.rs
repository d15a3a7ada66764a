//! Per-instance timelines (Gantt charts) from the CSV that `ptm run --timeline` writes.

use crate::chart::{draw_legend, frame, render, Entry, Figure, Mark};
use crate::palette::phase_colour;
use crate::{Error, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// One row of a timeline CSV.
#[derive(Debug, Clone, PartialEq)]
pub struct TimelineRow {
    /// The instance.
    pub instance: u32,
    /// `cold_load`, `switch`, `pool_load`, `inference` or `idle`.
    pub kind: String,
    /// Start, ms.
    pub start_ms: f64,
    /// End, ms.
    pub end_ms: f64,
}

/// Reads a timeline CSV; errors name the file and line.
pub fn read_timeline_csv(path: &Path) -> Result<Vec<TimelineRow>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    let mut lines = text.lines();
    if lines.next() != Some("instance,kind,start_ms,end_ms,request,tenant") {
        return Err(Error::Invalid(format!(
            "{}:1: expected the header instance,kind,start_ms,end_ms,request,tenant (from `ptm run --timeline`)",
            path.display()
        )));
    }
    let mut rows = Vec::new();
    for (i, line) in lines.enumerate() {
        let f: Vec<&str> = line.split(',').collect();
        let bad = || {
            Error::Invalid(format!(
                "{}:{}: expected instance,kind,start_ms,end_ms,…, got {line:?}",
                path.display(),
                i + 2
            ))
        };
        if f.len() < 4
            || !matches!(
                f[1],
                "cold_load" | "switch" | "pool_load" | "inference" | "idle"
            )
        {
            return Err(bad());
        }
        rows.push(TimelineRow {
            instance: f[0].parse().map_err(|_| bad())?,
            kind: f[1].to_string(),
            start_ms: f[2].parse().map_err(|_| bad())?,
            end_ms: f[3].parse().map_err(|_| bad())?,
        });
    }
    Ok(rows)
}

struct Gantt<'a> {
    title: String,
    rows: &'a [TimelineRow],
    /// (from, to) in seconds.
    window: (f64, f64),
}

/// The phases drawn, with their legend labels.
const KINDS: [(&str, &str); 4] = [
    ("cold_load", "cold load"),
    ("switch", "switch"),
    ("pool_load", "pool load"),
    ("inference", "inference"),
];

impl Figure for Gantt<'_> {
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
        let (plot, legend) = frame(area, &self.title)?;
        let instances = self
            .rows
            .iter()
            .map(|r| r.instance)
            .max()
            .map_or(1, |m| m + 1);
        let (from, to) = self.window;
        let mut chart = ChartBuilder::on(&plot)
            .margin(12)
            .x_label_area_size(48)
            .y_label_area_size(84)
            .build_cartesian_2d(from..to.max(from + 1e-6), 0.0..instances as f64)
            .map_err(e)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(instances as usize * 2 + 1)
            .y_label_formatter(&|y| {
                let i = y.floor();
                if (y - i - 0.5).abs() < 1e-6 {
                    format!("instance {i}")
                } else {
                    String::new()
                }
            })
            .x_desc("time (s)")
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 16))
            .draw()
            .map_err(e)?;
        for (kind, _) in KINDS {
            let colour = phase_colour(kind);
            chart
                .draw_series(
                    self.rows
                        .iter()
                        .filter(|r| r.kind == kind)
                        .filter(|r| r.end_ms / 1000.0 > from && r.start_ms / 1000.0 < to)
                        .map(|r| {
                            let y = r.instance as f64;
                            let (a, b) =
                                ((r.start_ms / 1000.0).max(from), (r.end_ms / 1000.0).min(to));
                            Rectangle::new([(a, y + 0.15), (b, y + 0.85)], colour.filled())
                        }),
                )
                .map_err(e)?;
        }
        let entries: Vec<Entry> = KINDS
            .iter()
            .map(|(kind, label)| Entry {
                label: (*label).to_string(),
                colour: phase_colour(kind),
                mark: Mark::Box,
            })
            .collect();
        draw_legend(&legend, &entries)
    }
}

/// Renders a timeline as `<stem>.png` and `.svg`, over `window` (seconds; default the whole
/// run). Refuses an empty timeline and a window that misses it.
pub fn render_timeline(
    rows: &[TimelineRow],
    title: &str,
    stem: &Path,
    window: Option<(f64, f64)>,
) -> Result<Vec<PathBuf>> {
    if rows.is_empty() {
        return Err(Error::Invalid("the timeline is empty".into()));
    }
    let end_s = rows.iter().map(|r| r.end_ms).fold(0.0, f64::max) / 1000.0;
    let window = window.unwrap_or((0.0, end_s));
    if !(window.0.is_finite() && window.1.is_finite() && window.0 >= 0.0 && window.1 > window.0) {
        return Err(Error::Invalid(format!(
            "the window {:?} s must have 0 ≤ from < to",
            window
        )));
    }
    if window.0 >= end_s {
        return Err(Error::Invalid(format!(
            "the window starts at {} s, after the run ended ({end_s:.3} s)",
            window.0
        )));
    }
    if let Some(dir) = stem.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::Io {
            path: dir.to_path_buf(),
            source: e,
        })?;
    }
    let shown = if window == (0.0, end_s) {
        String::new()
    } else {
        format!(", {} – {} s", window.0, window.1)
    };
    render(
        &Gantt {
            title: format!("{title}: per-instance timeline{shown}"),
            rows,
            window,
        },
        stem,
    )
}
