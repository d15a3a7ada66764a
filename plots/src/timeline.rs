//! Per-instance timelines (Gantt charts) from the CSV that `ptm run --timeline` writes.

use crate::chart::{colour, legend, render, Figure};
use crate::{Error, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// One row of a timeline CSV.
#[derive(Debug, Clone, PartialEq)]
pub struct TimelineRow {
    /// The instance.
    pub instance: u32,
    /// `cold_load`, `switch`, `inference` or `idle`.
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
        if f.len() < 4 || !matches!(f[1], "cold_load" | "switch" | "inference" | "idle") {
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
}

const KINDS: [(&str, usize); 3] = [("cold load", 3), ("switch", 1), ("inference", 0)];

impl Figure for Gantt<'_> {
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
        area.fill(&WHITE).map_err(e)?;
        let instances = self
            .rows
            .iter()
            .map(|r| r.instance)
            .max()
            .map_or(1, |m| m + 1);
        let end_s = self.rows.iter().map(|r| r.end_ms).fold(0.0, f64::max) / 1000.0;
        let mut chart = ChartBuilder::on(area)
            .caption(&self.title, ("sans-serif", 24))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(72)
            .build_cartesian_2d(0.0..end_s.max(1e-3), 0.0..instances as f64)
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
            .label_style(("sans-serif", 15))
            .axis_desc_style(("sans-serif", 17))
            .draw()
            .map_err(e)?;
        for (label, c) in KINDS {
            let kind = match label {
                "cold load" => "cold_load",
                other => other,
            };
            let colour = colour(c);
            chart
                .draw_series(self.rows.iter().filter(|r| r.kind == kind).map(|r| {
                    let y = r.instance as f64;
                    Rectangle::new(
                        [
                            (r.start_ms / 1000.0, y + 0.15),
                            (r.end_ms / 1000.0, y + 0.85),
                        ],
                        colour.filled(),
                    )
                }))
                .map_err(e)?
                .label(label)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 6), (x + 14, y + 6)], colour.filled())
                });
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        Ok(())
    }
}

/// Renders a timeline as `<out>/timeline.png` and `.svg`.
pub fn render_timeline(rows: &[TimelineRow], title: &str, out: &Path) -> Result<Vec<PathBuf>> {
    if rows.is_empty() {
        return Err(Error::Invalid("the timeline is empty".into()));
    }
    std::fs::create_dir_all(out).map_err(|e| Error::Io {
        path: out.to_path_buf(),
        source: e,
    })?;
    render(
        &Gantt {
            title: format!("{title}: per-instance timeline"),
            rows,
        },
        &out.join("timeline"),
    )
}
