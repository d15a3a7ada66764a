//! From a sweep's cells to figures: choose the x axis, the series and the facets, then draw
//! each metric and the latency CDFs.
//!
//! - x axis: offered load if the grid varies it, else instances (whole-number ticks); if neither
//!   varies, the remaining varying dimensions (workload, loading, profile, the serving variant:
//!   PET or full fine-tunes, GPU pool, eviction, batching, …) become bar categories.
//! - series: one per policy, in the policy's colour ([`crate::palette`]); when one other
//!   dimension with two values varies too, its second value is drawn dashed in the same chart,
//!   else each combination of the other dimensions gets its own figure (a facet).
//! - bands and whiskers: the 95 % interval over seeds (Student's t), clamped to the metric's
//!   range (a share to [0, 1], overtimes to [0, requests], counts to ≥ 0); none with one seed.
//! - time axes in seconds once values pass 10 s.
//! - latency CDFs: one panel per x value (every load, not only the highest), one line per policy
//!   (first seed), the deadline as a dashed rule.

use crate::chart::{render, BarChart, Entry, LineChart, Mark, Panels, Rule, Series};
use crate::palette::policy_colour;
use crate::{Error, Result};
use ptm_sim::metrics::Estimate;
use ptm_sim::sweep::{capacity_name, popularity_name, CellReport};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The range a metric's values (and bands) live in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Range {
    /// ≥ 0.
    NonNegative,
    /// A share, 0–1.
    Share,
    /// 0 up to the cell's request count.
    Requests,
}

/// A metric drawn against the x axis.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    /// File name stem.
    pub stem: &'static str,
    /// Axis label (with `{unit}` replaced for time metrics).
    pub label: &'static str,
    /// Its value in a cell.
    pub value: fn(&CellReport) -> f64,
    /// Its range.
    pub range: Range,
    /// A time in milliseconds (shown in seconds when large).
    pub ms: bool,
}

/// The metrics drawn against load.
pub const METRICS: [Metric; 5] = [
    Metric {
        stem: "throughput",
        label: "throughput (requests/s)",
        value: |c| c.report.throughput_rps,
        range: Range::NonNegative,
        ms: false,
    },
    Metric {
        stem: "slo-attainment",
        label: "SLO attainment (share of requests within deadline)",
        value: |c| c.report.slo_attainment,
        range: Range::Share,
        ms: false,
    },
    Metric {
        stem: "overtimes",
        label: "overtimes (requests over deadline)",
        value: |c| c.report.overtimes as f64,
        range: Range::Requests,
        ms: false,
    },
    Metric {
        stem: "switches",
        label: "switches",
        value: |c| c.report.switches as f64,
        range: Range::NonNegative,
        ms: false,
    },
    Metric {
        stem: "latency-p99",
        label: "p99 response time ({unit})",
        value: |c| c.report.latency_ms.p99,
        range: Range::NonNegative,
        ms: true,
    },
];

/// Values above this many milliseconds are shown in seconds.
const SECONDS_ABOVE_MS: f64 = 10_000.0;

/// Mean and clamped 95 % band of `metric` over `cells` (one configuration's seeds).
pub fn band(cells: &[&CellReport], metric: &Metric) -> (f64, f64, f64) {
    let xs: Vec<f64> = cells.iter().map(|c| (metric.value)(c)).collect();
    let e = Estimate::of(&xs);
    let max = match metric.range {
        Range::NonNegative => f64::INFINITY,
        Range::Share => 1.0,
        Range::Requests => cells
            .iter()
            .map(|c| c.report.requests as f64)
            .fold(0.0, f64::max),
    };
    let (lo, hi) = e.band(0.0, max);
    (e.mean, lo, hi)
}

/// The grid's dimensions of a cell other than policy, seed and the x axis.
fn rest(c: &CellReport, x: Axis, varying: &[&str]) -> String {
    let k = &c.cell;
    let mut parts = Vec::new();
    for dim in varying {
        let v = match *dim {
            "workload" => k.workload.clone(),
            "profile" => Path::new(&k.profile)
                .file_stem()
                .map_or(k.profile.clone(), |s| s.to_string_lossy().into_owned()),
            "instances" if x != Axis::Instances => format!("m={}", k.instances),
            "loading" => k.loading.name().to_string(),
            "offered_rps" if x != Axis::Offered => {
                format!("{} req/s", k.offered_rps.unwrap_or(0.0))
            }
            "pool" => match k.gpu_pool {
                Some(c) => format!("pool {}", capacity_name(c)),
                None => "no pool".into(),
            },
            "eviction" => k.eviction.map_or(String::new(), |e| e.name().to_string()),
            "batching" => match k.batching {
                Some(b) => format!("batching {} ms", b.max_wait_ms),
                None => "no batching".into(),
            },
            "pet" => match k.pet {
                Some(p) => p.kind.key(),
                None => "full".into(),
            },
            "tenants" => format!("{} tenants", k.tenants.unwrap_or(0)),
            "popularity" => k
                .popularity
                .as_ref()
                .map(popularity_name)
                .unwrap_or_default(),
            _ => continue,
        };
        parts.push(v);
    }
    parts.join(", ")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Axis {
    Offered,
    Instances,
    Category,
}

fn varying_dims(cells: &[CellReport]) -> Vec<&'static str> {
    let distinct = |f: &dyn Fn(&CellReport) -> String| {
        let mut v: Vec<String> = cells.iter().map(f).collect();
        v.sort();
        v.dedup();
        v.len() > 1
    };
    let mut out = Vec::new();
    type Dim<'a> = (&'static str, &'a dyn Fn(&CellReport) -> String);
    let dims: [Dim; 11] = [
        ("workload", &|c| c.cell.workload.clone()),
        ("profile", &|c| c.cell.profile.clone()),
        ("instances", &|c| c.cell.instances.to_string()),
        ("loading", &|c| c.cell.loading.name().to_string()),
        ("pet", &|c| format!("{:?}", c.cell.pet)),
        ("pool", &|c| format!("{:?}", c.cell.gpu_pool)),
        ("eviction", &|c| format!("{:?}", c.cell.eviction)),
        ("batching", &|c| format!("{:?}", c.cell.batching)),
        ("offered_rps", &|c| format!("{:?}", c.cell.offered_rps)),
        ("tenants", &|c| format!("{:?}", c.cell.tenants)),
        ("popularity", &|c| format!("{:?}", c.cell.popularity)),
    ];
    // A dimension that the ones before it already determine (a PET variant's pool and
    // eviction, which do not apply to it) adds nothing to a label: left out.
    let combos = |fs: &[&dyn Fn(&CellReport) -> String]| {
        let mut v: Vec<Vec<String>> = cells
            .iter()
            .map(|c| fs.iter().map(|f| f(c)).collect())
            .collect();
        v.sort();
        v.dedup();
        v.len()
    };
    let mut kept: Vec<&dyn Fn(&CellReport) -> String> = Vec::new();
    for (name, f) in dims {
        if !distinct(f) {
            continue;
        }
        let before = combos(&kept);
        kept.push(f);
        if combos(&kept) > before {
            out.push(name);
        } else {
            kept.pop();
        }
    }
    out
}

fn slug(s: &str) -> String {
    let s: String = s
        .chars()
        .map(|c| match c {
            '.' => '_',
            c if c.is_ascii_alphanumeric() => c,
            _ => '-',
        })
        .collect();
    s.split('-')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

/// Groups cells by a key, keeping first-appearance order.
fn group<'a, K: Ord + Clone>(
    cells: &[&'a CellReport],
    key: impl Fn(&CellReport) -> K,
) -> Vec<(K, Vec<&'a CellReport>)> {
    let mut order: Vec<K> = Vec::new();
    let mut map: BTreeMap<K, Vec<&'a CellReport>> = BTreeMap::new();
    for &c in cells {
        let k = key(c);
        if !map.contains_key(&k) {
            order.push(k.clone());
        }
        map.entry(k).or_default().push(c);
    }
    order
        .into_iter()
        .map(|k| {
            let v = map.remove(&k).unwrap_or_default();
            (k, v)
        })
        .collect()
}

/// Divides the series of a time metric by 1000 when they pass 10 s; returns the unit.
fn to_seconds_if_long(series: &mut [Series]) -> &'static str {
    let top = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.3))
        .fold(0.0, f64::max);
    if top <= SECONDS_ABOVE_MS {
        return "ms";
    }
    for s in series {
        for p in &mut s.points {
            *p = (p.0, p.1 / 1e3, p.2 / 1e3, p.3 / 1e3);
        }
    }
    "s"
}

/// How cells are laid out: the x axis and the dimensions that vary.
struct Layout {
    x: Axis,
    dims: Vec<&'static str>,
}

impl Layout {
    fn new(cells: &[CellReport]) -> Layout {
        let dims = varying_dims(cells);
        let x = if dims.contains(&"offered_rps") {
            Axis::Offered
        } else if dims.contains(&"instances") {
            Axis::Instances
        } else {
            Axis::Category
        };
        Layout { x, dims }
    }

    fn x_value(&self, c: &CellReport) -> f64 {
        match self.x {
            Axis::Offered => c.cell.offered_rps.unwrap_or(0.0),
            Axis::Instances => c.cell.instances as f64,
            Axis::Category => 0.0,
        }
    }

    fn rest(&self, c: &CellReport) -> String {
        rest(c, self.x, &self.dims)
    }
}

/// The lines of `metric` in `members`: one per policy (and per other value, dashed for the
/// second), with clamped bands.
pub fn metric_series(cells: &[CellReport], metric: &Metric) -> Vec<Series> {
    let layout = Layout::new(cells);
    let all: Vec<&CellReport> = cells.iter().collect();
    line_series(&layout, &all, metric, false)
}

fn line_series(
    layout: &Layout,
    members: &[&CellReport],
    metric: &Metric,
    faceted: bool,
) -> Vec<Series> {
    let rests: Vec<String> = group(members, |c| layout.rest(c))
        .into_iter()
        .map(|(r, _)| r)
        .collect();
    group(members, |c| (c.cell.policy.clone(), layout.rest(c)))
        .into_iter()
        .map(|((policy, r), cs)| {
            let mut points: Vec<(f64, f64, f64, f64)> = group(&cs, |c| layout.x_value(c).to_bits())
                .into_iter()
                .map(|(xb, at)| {
                    let (m, lo, hi) = band(&at, metric);
                    (f64::from_bits(xb), m, lo, hi)
                })
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            let label = if faceted || r.is_empty() {
                policy.clone()
            } else {
                format!("{policy}, {r}")
            };
            Series {
                label,
                colour: policy_colour(&policy),
                dashed: !faceted && rests.iter().position(|x| *x == r).unwrap_or(0) % 2 == 1,
                points,
            }
        })
        .collect()
}

/// Renders every figure of a sweep into `out`; returns the files written (PNG and SVG pairs).
pub fn render_sweep(cells: &[CellReport], title: &str, out: &Path) -> Result<Vec<PathBuf>> {
    if cells.is_empty() {
        return Err(Error::Invalid("no cell reports to plot".into()));
    }
    std::fs::create_dir_all(out).map_err(|e| Error::Io {
        path: out.to_path_buf(),
        source: e,
    })?;
    let layout = Layout::new(cells);
    let x_label = match layout.x {
        Axis::Offered => "offered load (requests/s)",
        Axis::Instances => "parallel instances on the GPU",
        Axis::Category => "",
    };
    let all: Vec<&CellReport> = cells.iter().collect();
    let policies: Vec<String> = group(&all, |c| c.cell.policy.clone())
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    let rests: Vec<String> = group(&all, |c| layout.rest(c))
        .into_iter()
        .map(|(r, _)| r)
        .collect();
    let mut files = Vec::new();

    if layout.x == Axis::Category {
        for metric in &METRICS {
            let mut series: Vec<(String, plotters::style::RGBColor, Vec<crate::chart::Bar>)> =
                policies
                    .iter()
                    .map(|p| {
                        let vals = rests
                            .iter()
                            .map(|r| {
                                let members: Vec<&CellReport> = all
                                    .iter()
                                    .copied()
                                    .filter(|c| &c.cell.policy == p && &layout.rest(c) == r)
                                    .collect();
                                (!members.is_empty()).then(|| band(&members, metric))
                            })
                            .collect();
                        (p.clone(), policy_colour(p), vals)
                    })
                    .collect();
            let mut unit = "ms";
            if metric.ms {
                let top = series
                    .iter()
                    .flat_map(|s| s.2.iter().flatten().map(|b| b.2))
                    .fold(0.0, f64::max);
                if top > SECONDS_ABOVE_MS {
                    unit = "s";
                    for s in &mut series {
                        for b in s.2.iter_mut().flatten() {
                            *b = (b.0 / 1e3, b.1 / 1e3, b.2 / 1e3);
                        }
                    }
                }
            }
            let label = metric.label.replace("{unit}", unit);
            let cats = rests
                .iter()
                .map(|r| {
                    if r.is_empty() {
                        title.to_string()
                    } else {
                        r.clone()
                    }
                })
                .collect();
            let chart = BarChart {
                title: format!("{title}: {label}"),
                y_label: label,
                y_range: (metric.range == Range::Share).then_some((0.0, 1.05)),
                categories: cats,
                series,
            };
            files.extend(render(&chart, &out.join(metric.stem))?);
        }
    } else {
        // Facets: one chart when the other dimensions take at most two values (solid and
        // dashed) and the lines stay few; else one figure per combination.
        let one_chart = rests.len() <= 1 || (rests.len() == 2 && policies.len() * 2 <= 12);
        let facets: Vec<Option<String>> = if one_chart {
            vec![None]
        } else {
            rests.iter().cloned().map(Some).collect()
        };
        for facet in &facets {
            let members: Vec<&CellReport> = all
                .iter()
                .copied()
                .filter(|c| facet.as_ref().is_none_or(|f| &layout.rest(c) == f))
                .collect();
            let suffix = facet
                .as_ref()
                .map_or(String::new(), |f| format!("-{}", slug(f)));
            let facet_title = facet
                .as_ref()
                .map_or(title.to_string(), |f| format!("{title} ({f})"));
            for metric in &METRICS {
                let mut series = line_series(&layout, &members, metric, facet.is_some());
                let unit = if metric.ms {
                    to_seconds_if_long(&mut series)
                } else {
                    "ms"
                };
                let label = metric.label.replace("{unit}", unit);
                let chart = LineChart {
                    title: format!("{facet_title}: {label}"),
                    x_label: x_label.into(),
                    y_label: label,
                    log_x: false,
                    integer_x: layout.x == Axis::Instances,
                    y_range: (metric.range == Range::Share).then_some((0.0, 1.05)),
                    series,
                    vlines: vec![],
                    hlines: vec![],
                };
                files.extend(render(
                    &chart,
                    &out.join(format!("{}{suffix}", metric.stem)),
                )?);
            }
        }
    }
    files.extend(render_cdfs(&layout, &all, title, out)?);
    Ok(files)
}

/// Latency CDFs: per facet (or category) one figure with a panel per x value, one line per
/// policy (first seed), the deadline as a rule.
fn render_cdfs(
    layout: &Layout,
    all: &[&CellReport],
    title: &str,
    out: &Path,
) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for (r, members) in group(all, |c| layout.rest(c)) {
        let first_seed = members.iter().map(|c| c.cell.seed).min().unwrap_or(0);
        let firsts: Vec<&CellReport> = members
            .iter()
            .copied()
            .filter(|c| c.cell.seed == first_seed)
            .collect();
        let top_ms = firsts
            .iter()
            .flat_map(|c| c.report.latency_quantiles_ms.iter().copied())
            .fold(0.0, f64::max);
        let (unit, scale) = if top_ms > SECONDS_ABOVE_MS {
            ("s", 1e-3)
        } else {
            ("ms", 1.0)
        };
        let mut xs: Vec<(f64, Vec<&CellReport>)> = group(&firsts, |c| layout.x_value(c).to_bits())
            .into_iter()
            .map(|(xb, cs)| (f64::from_bits(xb), cs))
            .collect();
        xs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut policies: Vec<String> = Vec::new();
        let charts: Vec<LineChart> = xs
            .iter()
            .map(|(x, cs)| {
                let series = cs
                    .iter()
                    .map(|c| {
                        if !policies.contains(&c.cell.policy) {
                            policies.push(c.cell.policy.clone());
                        }
                        Series {
                            label: c.cell.policy.clone(),
                            colour: policy_colour(&c.cell.policy),
                            dashed: false,
                            points: c
                                .report
                                .latency_quantiles_ms
                                .iter()
                                .enumerate()
                                .map(|(p, &ms)| {
                                    let q = p as f64 / 100.0;
                                    ((ms * scale).max(1e-3), q, q, q)
                                })
                                .collect(),
                        }
                    })
                    .collect();
                let deadline = cs.first().and_then(|c| c.report.deadline_ms);
                let vlines = deadline
                    .map(|d| Rule {
                        at: d * scale,
                        label: if d >= 1000.0 {
                            format!("deadline {} s", d / 1000.0)
                        } else {
                            format!("deadline {d} ms")
                        },
                    })
                    .into_iter()
                    .collect();
                let caption = match layout.x {
                    Axis::Offered => format!("at {x} req/s"),
                    Axis::Instances => format!("at m={x}"),
                    Axis::Category => String::new(),
                };
                LineChart {
                    title: caption,
                    x_label: format!("response time ({unit}, log scale)"),
                    y_label: "share of requests".into(),
                    log_x: true,
                    integer_x: false,
                    y_range: Some((0.0, 1.02)),
                    series,
                    vlines,
                    hlines: vec![],
                }
            })
            .collect();
        let name = if r.is_empty() {
            String::new()
        } else {
            format!(" ({r})")
        };
        let panels = Panels {
            title: format!("{title}{name}: latency CDF, seed {first_seed}"),
            charts,
            legend: policies
                .iter()
                .map(|p| Entry {
                    label: p.clone(),
                    colour: policy_colour(p),
                    mark: Mark::Line { dashed: false },
                })
                .collect(),
        };
        let suffix = if r.is_empty() {
            String::new()
        } else {
            format!("-{}", slug(&r))
        };
        files.extend(render(&panels, &out.join(format!("latency-cdf{suffix}")))?);
    }
    Ok(files)
}
