//! From a sweep's cells to figures: choose the x axis, the series and the facets, then draw
//! each metric and the latency CDFs.
//!
//! - x axis: offered load if the grid varies it, else instances; if neither varies, the
//!   remaining varying dimensions (workload, loading, profile, …) become bar categories.
//! - series: one per policy; when other dimensions vary too, they join the series label if that
//!   keeps at most 8 lines, else each of their combinations gets its own figure (a facet).
//! - bands and whiskers: the 95 % interval over seeds (Student's t); none with one seed.

use crate::chart::{render, BarChart, LineChart, Series};
use crate::{Error, Result};
use ptm_sim::sweep::{mean_ci95, popularity_name, CellReport};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

type Metric = (&'static str, &'static str, fn(&CellReport) -> f64);

/// The metrics drawn against load: (file name, axis label, value).
const METRICS: [Metric; 4] = [
    ("throughput", "throughput (requests/s)", |c| {
        c.report.throughput_rps
    }),
    ("overtimes", "overtimes (requests over deadline)", |c| {
        c.report.overtimes as f64
    }),
    ("switches", "switches", |c| c.report.switches as f64),
    ("latency-p99", "p99 response time (ms)", |c| {
        c.report.latency_ms.p99
    }),
];

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
    let dims: [Dim; 7] = [
        ("workload", &|c| c.cell.workload.clone()),
        ("profile", &|c| c.cell.profile.clone()),
        ("instances", &|c| c.cell.instances.to_string()),
        ("loading", &|c| c.cell.loading.name().to_string()),
        ("offered_rps", &|c| format!("{:?}", c.cell.offered_rps)),
        ("tenants", &|c| format!("{:?}", c.cell.tenants)),
        ("popularity", &|c| format!("{:?}", c.cell.popularity)),
    ];
    for (name, f) in dims {
        if distinct(f) {
            out.push(name);
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

fn band(cells: &[&CellReport], f: fn(&CellReport) -> f64) -> (f64, f64, f64) {
    let xs: Vec<f64> = cells.iter().map(|c| f(c)).collect();
    let (m, h) = mean_ci95(&xs);
    (m, (m - h).max(0.0), m + h)
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
    let dims = varying_dims(cells);
    let x = if dims.contains(&"offered_rps") {
        Axis::Offered
    } else if dims.contains(&"instances") {
        Axis::Instances
    } else {
        Axis::Category
    };
    let x_value = |c: &CellReport| match x {
        Axis::Offered => c.cell.offered_rps.unwrap_or(0.0),
        Axis::Instances => c.cell.instances as f64,
        Axis::Category => 0.0,
    };
    let x_label = match x {
        Axis::Offered => "offered load (requests/s)",
        Axis::Instances => "parallel instances on the GPU",
        Axis::Category => "",
    };
    let all: Vec<&CellReport> = cells.iter().collect();
    let policies: Vec<String> = group(&all, |c| c.cell.policy.clone())
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    let rests: Vec<String> = group(&all, |c| rest(c, x, &dims))
        .into_iter()
        .map(|(r, _)| r)
        .collect();
    let mut files = Vec::new();

    if x == Axis::Category {
        for (stem, label, f) in METRICS {
            let series = policies
                .iter()
                .map(|p| {
                    let vals = rests
                        .iter()
                        .map(|r| {
                            let members: Vec<&CellReport> = all
                                .iter()
                                .copied()
                                .filter(|c| &c.cell.policy == p && &rest(c, x, &dims) == r)
                                .collect();
                            if members.is_empty() {
                                (0.0, 0.0, 0.0)
                            } else {
                                band(&members, f)
                            }
                        })
                        .collect();
                    (p.clone(), vals)
                })
                .collect();
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
                y_label: label.into(),
                categories: cats,
                series,
            };
            files.extend(render(&chart, &out.join(stem))?);
        }
    } else {
        // Facets: one per rest value, unless policies × rests stay few enough for one chart.
        let one_chart = rests.len() <= 1 || policies.len() * rests.len() <= 8;
        let facets: Vec<Option<String>> = if one_chart {
            vec![None]
        } else {
            rests.iter().cloned().map(Some).collect()
        };
        for facet in &facets {
            let members: Vec<&CellReport> = all
                .iter()
                .copied()
                .filter(|c| facet.as_ref().is_none_or(|f| &rest(c, x, &dims) == f))
                .collect();
            let suffix = facet
                .as_ref()
                .map_or(String::new(), |f| format!("-{}", slug(f)));
            let facet_title = facet
                .as_ref()
                .map_or(title.to_string(), |f| format!("{title} ({f})"));
            for (stem, label, f) in METRICS {
                let series = group(&members, |c| {
                    let r = rest(c, x, &dims);
                    if facet.is_some() || r.is_empty() {
                        c.cell.policy.clone()
                    } else {
                        format!("{}, {r}", c.cell.policy)
                    }
                })
                .into_iter()
                .map(|(label, cs)| {
                    let mut points: Vec<(f64, f64, f64, f64)> =
                        group(&cs, |c| x_value(c).to_bits())
                            .into_iter()
                            .map(|(xb, at)| {
                                let (m, lo, hi) = band(&at, f);
                                (f64::from_bits(xb), m, lo, hi)
                            })
                            .collect();
                    points.sort_by(|a, b| a.0.total_cmp(&b.0));
                    Series { label, points }
                })
                .collect();
                let chart = LineChart {
                    title: format!("{facet_title}: {label}"),
                    x_label: x_label.into(),
                    y_label: label.into(),
                    log_x: false,
                    series,
                };
                files.extend(render(&chart, &out.join(format!("{stem}{suffix}")))?);
            }
        }
    }

    // Latency CDFs: per category (bars) or per facet at the largest x, first seed, per policy.
    let cdf_groups = group(&all, |c| rest(c, x, &dims));
    for (r, members) in cdf_groups {
        let top = members
            .iter()
            .map(|c| x_value(c))
            .fold(f64::NEG_INFINITY, f64::max);
        let first_seed = members.iter().map(|c| c.cell.seed).min().unwrap_or(0);
        let series: Vec<Series> = members
            .iter()
            .filter(|c| x_value(c) == top && c.cell.seed == first_seed)
            .map(|c| Series {
                label: c.cell.policy.clone(),
                points: c
                    .report
                    .latency_quantiles_ms
                    .iter()
                    .enumerate()
                    .map(|(p, &ms)| {
                        (
                            ms.max(1e-3),
                            p as f64 / 100.0,
                            p as f64 / 100.0,
                            p as f64 / 100.0,
                        )
                    })
                    .collect(),
            })
            .collect();
        let at = match x {
            Axis::Offered => format!(" at {top} req/s"),
            Axis::Instances => format!(" at m={top}"),
            Axis::Category => String::new(),
        };
        let name = if r.is_empty() {
            String::new()
        } else {
            format!(" ({r})")
        };
        let chart = LineChart {
            title: format!("{title}{name}{at}: latency CDF"),
            x_label: "response time (ms, log scale)".into(),
            y_label: "share of requests".into(),
            log_x: true,
            series,
        };
        let suffix = if r.is_empty() {
            String::new()
        } else {
            format!("-{}", slug(&r))
        };
        files.extend(render(&chart, &out.join(format!("latency-cdf{suffix}")))?);
    }
    Ok(files)
}
