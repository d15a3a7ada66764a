//! The planning figure: capacity against instance count, one line per policy, with the
//! executors' bound and the rates planned for.

use crate::chart::{render, Entry, LineChart, Mark, Panels, Rule, Series};
use crate::palette::policy_colour;
use crate::{Error, Result};
use plotters::style::RGBColor;
use ptm_sim::plan::Plan;
use std::path::{Path, PathBuf};

/// The lines of the figure: per policy and serving variant (GPU pool, batching, when the plan
/// searched them), (instances, capacity) where reached; then the bound. A variant without a
/// pool is drawn dashed.
pub fn plan_series(plan: &Plan) -> Vec<Series> {
    // A line per configuration of every axis but the instance count.
    let key = |r: &ptm_sim::plan::Row| -> Vec<(String, String)> {
        r.settings
            .iter()
            .filter(|(a, _)| a != "instances")
            .cloned()
            .collect()
    };
    let mut lines: Vec<Vec<(String, String)>> = Vec::new();
    for r in &plan.rows {
        let k = key(r);
        if !lines.contains(&k) {
            lines.push(k);
        }
    }
    let count = |r: &ptm_sim::plan::Row| r.get("instances").and_then(|v| v.parse::<f64>().ok());
    let mut series: Vec<Series> = lines
        .iter()
        .map(|k| {
            let mut points: Vec<(f64, f64, f64, f64)> = plan
                .rows
                .iter()
                .filter(|r| key(r) == *k)
                .filter_map(|r| Some((count(r)?, r.capacity_rps()?)))
                .map(|(m, c)| (m, c, c, c))
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            let policy = k
                .iter()
                .find(|(a, _)| a == "policy")
                .map_or("", |(_, v)| v.as_str());
            let label = k
                .iter()
                .map(|(a, v)| {
                    if a == "policy" {
                        v.clone()
                    } else {
                        format!("{a} {v}")
                    }
                })
                .collect::<Vec<_>>()
                .join(", ");
            Series {
                label,
                colour: policy_colour(policy),
                dashed: k.iter().any(|(a, v)| a == "pool" && v == "none"),
                points,
            }
        })
        .collect();
    let mut bound: Vec<(f64, f64, f64, f64)> = Vec::new();
    for r in &plan.rows {
        if let (Some(m), Some(c)) = (count(r), r.capacity.as_ref()) {
            if !bound.iter().any(|b| b.0 == m) {
                bound.push((m, c.bound_rps, c.bound_rps, c.bound_rps));
            }
        }
    }
    bound.sort_by(|a, b| a.0.total_cmp(&b.0));
    series.push(Series {
        label: "bound: m / service".into(),
        colour: RGBColor(110, 110, 110),
        dashed: true,
        points: bound,
    });
    series
}

/// The serving variants of the plan (settings other than instances and policy), in row order;
/// one empty variant when the plan searched none.
fn variants(plan: &Plan) -> Vec<Vec<(String, String)>> {
    let mut out: Vec<Vec<(String, String)>> = Vec::new();
    for r in &plan.rows {
        let v: Vec<(String, String)> = r
            .settings
            .iter()
            .filter(|(a, _)| a != "instances" && a != "policy")
            .cloned()
            .collect();
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

/// Renders `<out>/capacity-vs-instances.png` and `.svg`: one chart, or — when the plan searched
/// several serving variants (GPU pool, batching, eviction) — one panel per variant with a line
/// per policy, so that no line needs a legend entry of its own.
pub fn render_plan(plan: &Plan, out: &Path) -> Result<Vec<PathBuf>> {
    if plan.rows.is_empty() {
        return Err(Error::Invalid("the plan has no configurations".into()));
    }
    std::fs::create_dir_all(out).map_err(|e| Error::Io {
        path: out.to_path_buf(),
        source: e,
    })?;
    let title = format!(
        "{}: capacity at SLO ≥ {} (steady state)",
        plan.scenario, plan.options.slo
    );
    let rules: Vec<Rule> = plan
        .answers
        .iter()
        .map(|a| Rule {
            at: a.rate_rps,
            label: format!(" planned for {:.3} req/s", a.rate_rps),
        })
        .collect();
    let variants = variants(plan);
    if variants.len() > 1 {
        // One y scale for every panel, set by the capacities (the executors' bound, far above
        // them with batching, runs off the top rather than flattening the data).
        let top = plan
            .rows
            .iter()
            .filter_map(|r| r.capacity_rps())
            .chain(plan.answers.iter().map(|a| a.rate_rps))
            .fold(0.0, f64::max)
            * 1.15;
        let charts = variants
            .iter()
            .map(|v| {
                let rows: Vec<ptm_sim::plan::Row> = plan
                    .rows
                    .iter()
                    .filter(|r| v.iter().all(|(a, val)| r.get(a) == Some(val.as_str())))
                    .cloned()
                    .collect();
                let sub = Plan {
                    rows,
                    ..plan.clone()
                };
                let mut series = plan_series(&sub);
                for s in &mut series {
                    s.dashed = s.label.starts_with("bound");
                    if s.dashed {
                        // Off the scale: left out, not drawn along the top edge.
                        s.points.retain(|p| p.1 <= top);
                    }
                }
                LineChart {
                    title: v
                        .iter()
                        .map(|(a, val)| format!("{a} {val}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    x_label: "parallel instances on the GPU".into(),
                    y_label: "capacity (requests/s)".into(),
                    log_x: false,
                    integer_x: true,
                    y_range: (top > 0.0).then_some((0.0, top)),
                    series,
                    vlines: vec![],
                    hlines: rules.clone(),
                }
            })
            .collect();
        let mut legend: Vec<Entry> = Vec::new();
        for r in &plan.rows {
            if let Some(p) = r.get("policy") {
                if !legend.iter().any(|e| e.label == p) {
                    legend.push(Entry {
                        label: p.to_string(),
                        colour: policy_colour(p),
                        mark: Mark::Line { dashed: false },
                    });
                }
            }
        }
        legend.push(Entry {
            label: "bound: m / service".into(),
            colour: RGBColor(110, 110, 110),
            mark: Mark::Line { dashed: true },
        });
        let panels = Panels {
            title,
            charts,
            legend,
        };
        return render(&panels, &out.join("capacity-vs-instances"));
    }
    let chart = LineChart {
        title,
        x_label: "parallel instances on the GPU".into(),
        y_label: "capacity (requests/s)".into(),
        log_x: false,
        integer_x: true,
        y_range: None,
        series: plan_series(plan),
        vlines: vec![],
        hlines: rules,
    };
    render(&chart, &out.join("capacity-vs-instances"))
}
