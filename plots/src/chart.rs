//! Chart primitives: line charts with bands, grouped bars, rendered to PNG and SVG alike.

use crate::{Error, Result};
use plotters::coord::{CoordTranslate, Shift};
use plotters::prelude::*;
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

/// Figure size in pixels.
pub const SIZE: (u32, u32) = (960, 600);

/// A line colour per series index.
pub fn colour(i: usize) -> RGBColor {
    const PALETTE: [RGBColor; 10] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
    ];
    PALETTE[i % PALETTE.len()]
}

/// Something that can draw itself on any backend.
pub trait Figure {
    /// Draws on `area`.
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<(), String>;
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
    {
        let area = BitMapBackend::new(&png, SIZE).into_drawing_area();
        figure.draw(&area).map_err(|m| fail(&png, m))?;
        area.present().map_err(|e| fail(&png, e.to_string()))?;
    }
    {
        let area = SVGBackend::new(&svg, SIZE).into_drawing_area();
        figure.draw(&area).map_err(|m| fail(&svg, m))?;
        area.present().map_err(|e| fail(&svg, e.to_string()))?;
    }
    Ok(vec![png, svg])
}

/// One line: points (x, mean, low, high).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend label.
    pub label: String,
    /// (x, y, band low, band high), sorted by x.
    pub points: Vec<(f64, f64, f64, f64)>,
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
    /// The lines.
    pub series: Vec<Series>,
}

fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
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

impl Figure for LineChart {
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
        area.fill(&WHITE).map_err(e)?;
        let (x0, x1) = range(
            self.series
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.0)),
        );
        let (_, y1) = range(
            self.series
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.3)),
        );
        let y_top = y1 * 1.08;
        let mut builder = ChartBuilder::on(area);
        builder
            .caption(&self.title, ("sans-serif", 24))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(72);
        macro_rules! body {
            ($chart:expr) => {{
                let mut chart = $chart;
                chart
                    .configure_mesh()
                    .x_labels(if self.log_x { 6 } else { 10 })
                    .x_label_formatter(&|v| number(*v))
                    .x_desc(&self.x_label)
                    .y_desc(&self.y_label)
                    .label_style(("sans-serif", 15))
                    .axis_desc_style(("sans-serif", 17))
                    .draw()
                    .map_err(e)?;
                for (i, s) in self.series.iter().enumerate() {
                    let c = colour(i);
                    if s.points.iter().any(|p| p.3 > p.2) {
                        let mut band: Vec<(f64, f64)> =
                            s.points.iter().map(|p| (p.0, p.3)).collect();
                        band.extend(s.points.iter().rev().map(|p| (p.0, p.2)));
                        chart
                            .draw_series(std::iter::once(Polygon::new(band, c.mix(0.18).filled())))
                            .map_err(e)?;
                    }
                    chart
                        .draw_series(LineSeries::new(
                            s.points.iter().map(|p| (p.0, p.1)),
                            c.stroke_width(2),
                        ))
                        .map_err(e)?
                        .label(s.label.as_str())
                        .legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(3))
                        });
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
                legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
            }};
        }
        if self.log_x {
            let lo = x0.max(1e-3);
            body!(builder
                .build_cartesian_2d((lo..x1.max(lo * 10.0)).log_scale(), 0.0..y_top)
                .map_err(e)?);
        } else {
            body!(builder.build_cartesian_2d(x0..x1, 0.0..y_top).map_err(e)?);
        }
        Ok(())
    }
}

/// Draws the series legend in the house style at `position`.
pub fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> Result<(), String> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font(("sans-serif", 15))
        .position(position)
        .draw()
        .map_err(|e| e.to_string())
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

/// One bar: (value, interval low, interval high).
pub type Bar = (f64, f64, f64);

/// Grouped bars: one group per category, one bar per series, with interval whiskers.
#[derive(Debug, Clone, PartialEq)]
pub struct BarChart {
    /// Title.
    pub title: String,
    /// Y axis label, with unit.
    pub y_label: String,
    /// Category names (x axis).
    pub categories: Vec<String>,
    /// (label, per category: (value, low, high)).
    pub series: Vec<(String, Vec<Bar>)>,
}

impl Figure for BarChart {
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
        area.fill(&WHITE).map_err(e)?;
        let n = self.categories.len().max(1);
        let (_, y1) = range(self.series.iter().flat_map(|s| s.1.iter().map(|v| v.2)));
        let mut chart = ChartBuilder::on(area)
            .caption(&self.title, ("sans-serif", 24))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(72)
            .build_cartesian_2d(0.0..n as f64, 0.0..(y1.max(0.0) * 1.12).max(1e-9))
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
            .y_desc(&self.y_label)
            .label_style(("sans-serif", 15))
            .axis_desc_style(("sans-serif", 17))
            .draw()
            .map_err(e)?;
        let k = self.series.len().max(1) as f64;
        let width = 0.8 / k;
        for (j, (label, values)) in self.series.iter().enumerate() {
            let c = colour(j);
            let x = |i: usize| i as f64 + 0.1 + j as f64 * width;
            chart
                .draw_series(values.iter().enumerate().map(|(i, v)| {
                    Rectangle::new([(x(i), 0.0), (x(i) + width * 0.9, v.0)], c.filled())
                }))
                .map_err(e)?
                .label(label.as_str())
                .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], c.filled()));
            chart
                .draw_series(
                    values
                        .iter()
                        .enumerate()
                        .filter(|(_, v)| v.2 > v.1)
                        .map(|(i, v)| {
                            let mid = x(i) + width * 0.45;
                            PathElement::new(vec![(mid, v.1), (mid, v.2)], BLACK.stroke_width(1))
                        }),
                )
                .map_err(e)?;
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        Ok(())
    }
}
