//! Chart primitives: line charts with bands, grouped bars and small multiples, rendered to PNG
//! and SVG alike.
//!
//! Layout: the title spans the figure; below it the legend has its own column on the right
//! ([`LEGEND_WIDTH`] pixels), so it never covers data.

use crate::{Error, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::{Path, PathBuf};
use std::sync::Once;

/// The embedded font, registered once as "sans-serif".
static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

fn init_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is compiled in: failing to parse it is a build defect, not an input error.
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
            .unwrap_or_else(|_| panic!("the embedded DejaVu Sans font must parse"));
    });
}

/// Figure size in pixels (small multiples grow taller).
pub const SIZE: (u32, u32) = (960, 600);
/// Width of the legend column at the right of every figure.
pub const LEGEND_WIDTH: u32 = 190;

/// Something that can draw itself on any backend.
pub trait Figure {
    /// Draws on `area`.
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<(), String>;

    /// Its size in pixels.
    fn size(&self) -> (u32, u32) {
        SIZE
    }
}

/// Renders `figure` to `<stem>.png` and `<stem>.svg`; returns both paths.
pub fn render(figure: &impl Figure, stem: &Path) -> Result<Vec<PathBuf>> {
    init_font();
    let png = stem.with_extension("png");
    let svg = stem.with_extension("svg");
    let fail = |path: &Path, message: String| Error::Draw {
        path: path.to_path_buf(),
        message,
    };
    let size = figure.size();
    {
        let area = BitMapBackend::new(&png, size).into_drawing_area();
        figure.draw(&area).map_err(|m| fail(&png, m))?;
        area.present().map_err(|e| fail(&png, e.to_string()))?;
    }
    {
        let area = SVGBackend::new(&svg, size).into_drawing_area();
        figure.draw(&area).map_err(|m| fail(&svg, m))?;
        area.present().map_err(|e| fail(&svg, e.to_string()))?;
    }
    Ok(vec![png, svg])
}

/// How a legend entry is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mark {
    /// A line (dashed or not).
    Line {
        /// Dashed.
        dashed: bool,
    },
    /// A filled box.
    Box,
}

/// One legend entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Its text.
    pub label: String,
    /// Its colour.
    pub colour: RGBColor,
    /// Its mark.
    pub mark: Mark,
}

/// A figure's areas: (plot, legend column).
pub type Areas<DB> = (DrawingArea<DB, Shift>, DrawingArea<DB, Shift>);

/// Fills `area` white, writes the title, and splits the rest into (plot, legend column).
pub fn frame<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
) -> Result<Areas<DB>, String> {
    area.fill(&WHITE).map_err(|e| e.to_string())?;
    let body = area
        .margin(8, 0, 0, 0)
        .titled(title, ("sans-serif", 22))
        .map_err(|e| e.to_string())?;
    let (w, _) = body.dim_in_pixel();
    Ok(body.split_horizontally(w.saturating_sub(LEGEND_WIDTH)))
}

/// Draws the legend entries top-down in the legend column.
pub fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[Entry],
) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let font = ("sans-serif", 15).into_font();
    for (i, entry) in entries.iter().enumerate() {
        let y = 24 + 24 * i as i32;
        let c = entry.colour;
        match entry.mark {
            Mark::Box => area
                .draw(&Rectangle::new([(10, y - 7), (26, y + 7)], c.filled()))
                .map_err(e)?,
            Mark::Line { dashed: false } => area
                .draw(&PathElement::new(vec![(6, y), (30, y)], c.stroke_width(3)))
                .map_err(e)?,
            Mark::Line { dashed: true } => {
                for x in [6, 16, 26] {
                    area.draw(&PathElement::new(
                        vec![(x, y), (x + 5, y)],
                        c.stroke_width(3),
                    ))
                    .map_err(e)?;
                }
            }
        }
        area.draw(&Text::new(
            entry.label.clone(),
            (38, y - 8),
            font.clone().color(&BLACK),
        ))
        .map_err(e)?;
    }
    Ok(())
}

/// One line: points (x, mean, band low, band high).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend label.
    pub label: String,
    /// Its colour (a policy's: [`crate::palette::policy_colour`]).
    pub colour: RGBColor,
    /// Drawn dashed (to tell apart series of one colour).
    pub dashed: bool,
    /// (x, y, band low, band high), sorted by x.
    pub points: Vec<(f64, f64, f64, f64)>,
}

/// A reference line across a chart, with its label.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Where it crosses the axis.
    pub at: f64,
    /// Its label.
    pub label: String,
}

/// Lines against a numeric x axis, each with its band.
#[derive(Debug, Clone, PartialEq)]
pub struct LineChart {
    /// Title.
    pub title: String,
    /// X axis label, with unit.
    pub x_label: String,
    /// Y axis label, with unit.
    pub y_label: String,
    /// Logarithmic x axis.
    pub log_x: bool,
    /// Ticks only at whole numbers of x (counts such as instances).
    pub integer_x: bool,
    /// The y axis range, when the metric has one (a share: 0–1); else from the data.
    pub y_range: Option<(f64, f64)>,
    /// The lines.
    pub series: Vec<Series>,
    /// Vertical rules (e.g. the deadline on a latency axis).
    pub vlines: Vec<Rule>,
    /// Horizontal rules (e.g. a target rate).
    pub hlines: Vec<Rule>,
}

fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi > lo {
        (lo, hi)
    } else {
        (
            lo - 0.5_f64.max(lo.abs() * 0.1),
            hi + 0.5_f64.max(hi.abs() * 0.1),
        )
    }
}

/// The whole numbers in `[lo, hi]`, at most about 12 of them (a step keeps them few).
pub fn integer_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let (a, b) = (lo.ceil() as i64, hi.floor() as i64);
    if b < a {
        return vec![];
    }
    let step = ((b - a) / 12 + 1).max(1);
    (a..=b).step_by(step as usize).map(|v| v as f64).collect()
}

impl LineChart {
    /// The legend's entries: one per series.
    pub fn entries(&self) -> Vec<Entry> {
        self.series
            .iter()
            .map(|s| Entry {
                label: s.label.clone(),
                colour: s.colour,
                mark: Mark::Line { dashed: s.dashed },
            })
            .collect()
    }

    /// Draws the chart (without title or legend) on `area`, with `caption` above it.
    pub fn draw_plot<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        caption: Option<&str>,
        font_scale: f64,
    ) -> Result<(), String> {
        let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
        let points = || self.series.iter().flat_map(|s| s.points.iter());
        let (mut x0, mut x1) = range(
            points()
                .map(|p| p.0)
                .chain(self.vlines.iter().map(|r| r.at)),
        );
        if self.integer_x {
            (x0, x1) = (x0.floor() - 0.3, x1.ceil() + 0.3);
        }
        let (y0, y1) = match self.y_range {
            Some(r) => r,
            None => {
                let (_, top) = range(
                    points()
                        .map(|p| p.3)
                        .chain(self.hlines.iter().map(|r| r.at)),
                );
                (0.0, (top * 1.08).max(1e-9))
            }
        };
        let px = |v: f64| (v * font_scale).round() as u32;
        let mut builder = ChartBuilder::on(area);
        if let Some(c) = caption {
            builder.caption(c, ("sans-serif", px(16.0)));
        }
        builder
            .margin(px(12.0))
            .x_label_area_size(px(48.0))
            .y_label_area_size(px(76.0));
        macro_rules! body {
            ($chart:expr) => {{
                let mut chart = $chart;
                let integer = self.integer_x;
                let x_ticks = if self.log_x {
                    6
                } else if integer {
                    integer_ticks(x0, x1).len().max(1)
                } else {
                    10
                };
                chart
                    .configure_mesh()
                    .x_labels(x_ticks)
                    .x_max_light_lines(if integer { 0 } else { 10 })
                    .x_label_formatter(&|v| {
                        if integer && v.fract() != 0.0 {
                            String::new()
                        } else {
                            number(*v)
                        }
                    })
                    .y_label_formatter(&|v| number(*v))
                    .x_desc(&self.x_label)
                    .y_desc(&self.y_label)
                    .label_style(("sans-serif", px(14.0)))
                    .axis_desc_style(("sans-serif", px(16.0)))
                    .draw()
                    .map_err(e)?;
                for s in &self.series {
                    let c = s.colour;
                    if s.points.iter().any(|p| p.3 > p.2) {
                        let mut band: Vec<(f64, f64)> =
                            s.points.iter().map(|p| (p.0, p.3)).collect();
                        band.extend(s.points.iter().rev().map(|p| (p.0, p.2)));
                        chart
                            .draw_series(std::iter::once(Polygon::new(band, c.mix(0.18).filled())))
                            .map_err(e)?;
                    }
                    let line = s.points.iter().map(|p| (p.0, p.1));
                    if s.dashed {
                        chart
                            .draw_series(DashedLineSeries::new(line, 8, 5, c.stroke_width(2)))
                            .map_err(e)?;
                    } else {
                        chart
                            .draw_series(LineSeries::new(line, c.stroke_width(2)))
                            .map_err(e)?;
                    }
                    if s.points.len() < 30 {
                        chart
                            .draw_series(
                                s.points
                                    .iter()
                                    .map(|p| Circle::new((p.0, p.1), 3, c.filled())),
                            )
                            .map_err(e)?;
                    }
                }
                for r in &self.vlines {
                    chart
                        .draw_series(DashedLineSeries::new(
                            [(r.at, y0), (r.at, y1)],
                            6,
                            4,
                            BLACK.stroke_width(1),
                        ))
                        .map_err(e)?;
                    // Left of the rule, near the bottom: inside the plot, clear of the curves'
                    // tails and of the next panel.
                    let style = TextStyle::from(("sans-serif", px(13.0)).into_font())
                        .pos(Pos::new(HPos::Right, VPos::Center));
                    chart
                        .draw_series(std::iter::once(Text::new(
                            format!("{} ", r.label),
                            (r.at, y0 + 0.06 * (y1 - y0)),
                            style,
                        )))
                        .map_err(e)?;
                }
                for r in &self.hlines {
                    chart
                        .draw_series(DashedLineSeries::new(
                            [(x0, r.at), (x1, r.at)],
                            6,
                            4,
                            BLACK.stroke_width(1),
                        ))
                        .map_err(e)?;
                    chart
                        .draw_series(std::iter::once(Text::new(
                            r.label.clone(),
                            (x0, r.at + 0.045 * (y1 - y0)),
                            ("sans-serif", px(13.0)),
                        )))
                        .map_err(e)?;
                }
            }};
        }
        if self.log_x {
            let lo = x0.max(1e-3);
            body!(builder
                .build_cartesian_2d((lo..x1.max(lo * 10.0)).log_scale(), y0..y1)
                .map_err(e)?);
        } else {
            body!(builder.build_cartesian_2d(x0..x1, y0..y1).map_err(e)?);
        }
        Ok(())
    }
}

impl Figure for LineChart {
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let (plot, legend) = frame(area, &self.title)?;
        self.draw_plot(&plot, None, 1.0)?;
        draw_legend(&legend, &self.entries())
    }
}

/// Several line charts side by side under one title and one legend (small multiples).
#[derive(Debug, Clone, PartialEq)]
pub struct Panels {
    /// Title.
    pub title: String,
    /// The charts; each one's title is its panel's caption.
    pub charts: Vec<LineChart>,
    /// The shared legend.
    pub legend: Vec<Entry>,
}

impl Panels {
    fn grid(&self) -> (usize, usize) {
        let n = self.charts.len().max(1);
        let cols = n.min(if n <= 4 { 2 } else { 3 }).max(1);
        let cols = if n == 1 { 1 } else { cols };
        (n.div_ceil(cols), cols)
    }
}

impl Figure for Panels {
    fn size(&self) -> (u32, u32) {
        let (rows, _) = self.grid();
        (
            SIZE.0,
            if rows <= 1 {
                SIZE.1
            } else {
                80 + 340 * rows as u32
            },
        )
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let (plot, legend) = frame(area, &self.title)?;
        let (rows, cols) = self.grid();
        let scale = if rows * cols == 1 { 1.0 } else { 0.85 };
        for (chart, cell) in self.charts.iter().zip(plot.split_evenly((rows, cols))) {
            let caption = (self.charts.len() > 1).then_some(chart.title.as_str());
            chart.draw_plot(&cell, caption, scale)?;
        }
        draw_legend(&legend, &self.legend)
    }
}

/// A tick label: integers without decimals, others with up to two.
fn number(v: f64) -> String {
    if v == v.round() {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// One bar: (value, interval low, interval high); `None` = no data.
pub type Bar = Option<(f64, f64, f64)>;

/// Grouped bars: one group per category, one bar per series, with interval whiskers. A bar too
/// short to see (zero included) carries its value, a missing one "n/a", so neither looks like
/// the other.
#[derive(Debug, Clone, PartialEq)]
pub struct BarChart {
    /// Title.
    pub title: String,
    /// Y axis label, with unit.
    pub y_label: String,
    /// The y axis range, when the metric has one (a share: 0–1); else from the data.
    pub y_range: Option<(f64, f64)>,
    /// Category names (x axis).
    pub categories: Vec<String>,
    /// (label, colour, per category: the bar).
    pub series: Vec<(String, RGBColor, Vec<Bar>)>,
}

impl Figure for BarChart {
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
        let (plot, legend) = frame(area, &self.title)?;
        let n = self.categories.len().max(1);
        let y_top = match self.y_range {
            Some((_, hi)) => hi,
            None => {
                let (_, y1) = range(
                    self.series
                        .iter()
                        .flat_map(|s| s.2.iter().flatten().map(|v| v.2)),
                );
                (y1.max(0.0) * 1.12).max(1e-9)
            }
        };
        let mut chart = ChartBuilder::on(&plot)
            .margin(12)
            .x_label_area_size(48)
            .y_label_area_size(76)
            .build_cartesian_2d(0.0..n as f64, 0.0..y_top)
            .map_err(e)?;
        let categories = self.categories.clone();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n * 2 + 1)
            .x_label_formatter(&|x| {
                let i = x.floor() as usize;
                if (x - i as f64 - 0.5).abs() < 1e-6 {
                    categories.get(i).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .y_label_formatter(&|v| number(*v))
            .y_desc(&self.y_label)
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 16))
            .draw()
            .map_err(e)?;
        let k = self.series.len().max(1) as f64;
        let width = 0.8 / k;
        for (j, (_, c, values)) in self.series.iter().enumerate() {
            let c = *c;
            let x = |i: usize| i as f64 + 0.1 + j as f64 * width;
            chart
                .draw_series(values.iter().enumerate().filter_map(|(i, v)| {
                    v.map(|v| Rectangle::new([(x(i), 0.0), (x(i) + width * 0.9, v.0)], c.filled()))
                }))
                .map_err(e)?;
            chart
                .draw_series(values.iter().enumerate().filter_map(|(i, v)| {
                    let mid = x(i) + width * 0.45;
                    v.filter(|v| v.2 > v.1).map(|v| {
                        PathElement::new(vec![(mid, v.1), (mid, v.2)], BLACK.stroke_width(1))
                    })
                }))
                .map_err(e)?;
            // Zero bars, bars too short to see and missing data are labelled, not left blank.
            chart
                .draw_series(values.iter().enumerate().filter_map(|(i, v)| {
                    let (text, base) = match v {
                        None => ("n/a".to_string(), 0.0),
                        Some(v) if v.0 < 0.03 * y_top => (number(v.0), v.0),
                        Some(_) => return None,
                    };
                    Some(Text::new(
                        text,
                        (x(i) + width * 0.2, base + y_top * 0.035),
                        ("sans-serif", 13).into_font().color(&c),
                    ))
                }))
                .map_err(e)?;
        }
        let entries: Vec<Entry> = self
            .series
            .iter()
            .map(|(label, c, _)| Entry {
                label: label.clone(),
                colour: *c,
                mark: Mark::Box,
            })
            .collect();
        draw_legend(&legend, &entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_ticks_are_whole_and_few() {
        assert_eq!(
            integer_ticks(0.7, 8.3),
            vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
        );
        let many = integer_ticks(1.0, 64.0);
        assert!(
            many.len() <= 13 && many.iter().all(|v| v.fract() == 0.0),
            "{many:?}"
        );
        assert!(integer_ticks(0.2, 0.8).is_empty());
    }
}
