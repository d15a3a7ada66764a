//! The planning figure: capacity against instance count, one line per policy, with the
//! executors' bound and the rates planned for.

use crate::chart::{render, LineChart, Rule, Series};
use crate::palette::policy_colour;
use crate::{Error, Result};
use plotters::style::RGBColor;
use ptm_sim::plan::Plan;
use std::path::{Path, PathBuf};

/// The lines of the figure: per policy, (instances, capacity) where reached; then the bound.
pub fn plan_series(plan: &Plan) -> Vec<Series> {
    let mut policies: Vec<&str> = Vec::new();
    for r in &plan.rows {
        if let Some(p) = r.get("policy") {
            if !policies.contains(&p) {
                policies.push(p);
            }
        }
    }
    let count = |r: &ptm_sim::plan::Row| r.get("instances").and_then(|v| v.parse::<f64>().ok());
    let mut series: Vec<Series> = policies
        .iter()
        .map(|p| {
            let mut points: Vec<(f64, f64, f64, f64)> = plan
                .rows
                .iter()
                .filter(|r| r.get("policy") == Some(p))
                .filter_map(|r| Some((count(r)?, r.capacity_rps()?)))
                .map(|(m, c)| (m, c, c, c))
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            Series {
                label: (*p).to_string(),
                colour: policy_colour(p),
                dashed: false,
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

/// Renders `<out>/capacity-vs-instances.png` and `.svg`.
pub fn render_plan(plan: &Plan, out: &Path) -> Result<Vec<PathBuf>> {
    if plan.rows.is_empty() {
        return Err(Error::Invalid("the plan has no configurations".into()));
    }
    std::fs::create_dir_all(out).map_err(|e| Error::Io {
        path: out.to_path_buf(),
        source: e,
    })?;
    let chart = LineChart {
        title: format!(
            "{}: capacity at SLO ≥ {} (steady state)",
            plan.scenario, plan.options.slo
        ),
        x_label: "parallel instances on the GPU".into(),
        y_label: "capacity (requests/s)".into(),
        log_x: false,
        integer_x: true,
        y_range: None,
        series: plan_series(plan),
        vlines: vec![],
        hlines: plan
            .answers
            .iter()
            .map(|a| Rule {
                at: a.rate_rps,
                label: format!(" planned for {:.3} req/s", a.rate_rps),
            })
            .collect(),
    };
    render(&chart, &out.join("capacity-vs-instances"))
}
