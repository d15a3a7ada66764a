//! Planning: the cheapest configuration that meets an SLO at an offered rate, and the capacity
//! of every configuration of a search space.
//!
//! A configuration is one value per **axis** of a [`Space`]. Today's axes are the number of
//! instances and the policy; an axis is a list of [`Knob`]s, each of which knows how to apply
//! itself to a [`Scenario`] and what it costs, so further axes (the GPU weight pool's size, batch
//! limits) are new `Knob` variants and nothing else changes. Configurations are compared by
//! their cost vector, one entry per costed axis in axis order (today: instances), then by
//! capacity (higher first), then by position in the space.
//!
//! For each configuration the plan finds its steady-state capacity ([`crate::capacity`]). For
//! each asked rate, the cheapest configuration whose capacity reaches the rate (within the
//! search tolerance) is then *checked* by a direct probe at that rate; the first that meets the
//! SLO is the answer. Configurations that do not fit the GPU are listed as refused.

use crate::capacity::{self, Capacity, CapacityOptions, Probe};
use crate::error::{Error, Result};
use crate::scenario::Scenario;
use crate::workload::FileSource;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// One value of one axis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Knob {
    /// Parallel instances (executors) on the GPU: what a configuration costs.
    Instances(usize),
    /// The scheduling policy.
    Policy(String),
    /// The GPU weight pool (`None`: FastPTM's model).
    GpuPool(Option<crate::ledger::Capacity>),
    /// Cross-request batching with this window, milliseconds (`None`: off).
    Batching(Option<f64>),
    /// Who a full GPU pool evicts (meaningful with a pool smaller than the tenants).
    Eviction(crate::ledger::Eviction),
}

impl Knob {
    /// The axis's name.
    pub fn axis(&self) -> &'static str {
        match self {
            Knob::Instances(_) => "instances",
            Knob::Policy(_) => "policy",
            Knob::GpuPool(_) => "pool",
            Knob::Batching(_) => "batching",
            Knob::Eviction(_) => "eviction",
        }
    }

    /// The value as text.
    pub fn value(&self) -> String {
        match self {
            Knob::Instances(m) => m.to_string(),
            Knob::Policy(p) => p.clone(),
            Knob::GpuPool(None) => "none".into(),
            Knob::GpuPool(Some(c)) => crate::sweep::capacity_name(*c),
            Knob::Batching(None) => "off".into(),
            Knob::Batching(Some(w)) => format!("{w}ms"),
            Knob::Eviction(e) => e.name().into(),
        }
    }

    /// Sets this value in `scenario`.
    pub fn apply(&self, scenario: &mut Scenario) {
        match self {
            Knob::Instances(m) => scenario.instances = *m,
            Knob::Policy(p) => scenario.policies = vec![p.clone()],
            Knob::GpuPool(c) => scenario.gpu_pool = *c,
            Knob::Batching(w) => {
                scenario.batching = w.map(|max_wait_ms| crate::engine::Batching { max_wait_ms })
            }
            Knob::Eviction(e) => scenario.eviction = *e,
        }
    }

    /// What the value costs (`None`: free to choose).
    pub fn cost(&self) -> Option<f64> {
        match self {
            Knob::Instances(m) => Some(*m as f64),
            Knob::Policy(_) | Knob::GpuPool(_) | Knob::Batching(_) | Knob::Eviction(_) => None,
        }
    }
}

/// The axes to search; every combination of one value per axis is a configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Space {
    /// The axes, outermost first.
    pub axes: Vec<Vec<Knob>>,
}

impl Space {
    /// Instances × policies.
    pub fn new(instances: &[usize], policies: &[String]) -> Space {
        Space {
            axes: vec![
                instances.iter().map(|&m| Knob::Instances(m)).collect(),
                policies.iter().map(|p| Knob::Policy(p.clone())).collect(),
            ],
        }
    }

    /// The same space with an axis of GPU pools, one of batching windows and one of eviction
    /// policies (each left out when given no values).
    pub fn with_serving(
        mut self,
        pools: &[Option<crate::ledger::Capacity>],
        batching: &[Option<f64>],
        evictions: &[crate::ledger::Eviction],
    ) -> Space {
        if !pools.is_empty() {
            self.axes
                .push(pools.iter().map(|&c| Knob::GpuPool(c)).collect());
        }
        if !batching.is_empty() {
            self.axes
                .push(batching.iter().map(|&w| Knob::Batching(w)).collect());
        }
        if !evictions.is_empty() {
            self.axes
                .push(evictions.iter().map(|&e| Knob::Eviction(e)).collect());
        }
        self
    }

    /// Every configuration, the first axis outermost.
    pub fn points(&self) -> Vec<Vec<Knob>> {
        let mut out: Vec<Vec<Knob>> = vec![Vec::new()];
        for axis in &self.axes {
            out = out
                .into_iter()
                .flat_map(|prefix| {
                    axis.iter().map(move |k| {
                        let mut p = prefix.clone();
                        p.push(k.clone());
                        p
                    })
                })
                .collect();
        }
        out
    }

    fn validate(&self) -> Result<()> {
        if self.axes.iter().any(Vec::is_empty) {
            return Err(Error::invalid(
                "plan",
                "every axis needs at least one value",
            ));
        }
        for axis in &self.axes {
            for k in axis {
                if let Knob::Instances(0) = k {
                    return Err(Error::invalid("plan.instances", "expected counts ≥ 1"));
                }
            }
        }
        Ok(())
    }
}

/// One configuration and its capacity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// (axis, value) per axis.
    pub settings: Vec<(String, String)>,
    /// Its cost vector (see the module docs).
    pub cost: Vec<f64>,
    /// Its capacity, unless refused.
    pub capacity: Option<Capacity>,
    /// Why it could not run (e.g. the instances do not fit the GPU's memory).
    pub refused: Option<String>,
}

impl Row {
    /// The value of `axis`.
    pub fn get(&self, axis: &str) -> Option<&str> {
        self.settings
            .iter()
            .find(|(a, _)| a == axis)
            .map(|(_, v)| v.as_str())
    }

    /// Its capacity in requests per second, if reached.
    pub fn capacity_rps(&self) -> Option<f64> {
        self.capacity.as_ref().and_then(|c| c.capacity_rps)
    }
}

/// The answer for one rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    /// The offered rate, requests per second.
    pub rate_rps: f64,
    /// The cheapest configuration meeting the SLO there (index into [`Plan::rows`]).
    pub choice: Option<usize>,
    /// The check of that choice at this rate.
    pub check: Option<Probe>,
    /// Why there is no choice.
    pub note: Option<String>,
}

/// A plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The scenario.
    pub scenario: String,
    /// The search's options (SLO target among them).
    pub options: CapacityOptions,
    /// Every configuration, in the space's order.
    pub rows: Vec<Row>,
    /// One per asked rate.
    pub answers: Vec<Answer>,
}

fn cmp_cost(a: &[f64], b: &[f64]) -> std::cmp::Ordering {
    a.iter()
        .zip(b)
        .map(|(x, y)| x.total_cmp(y))
        .find(|o| o.is_ne())
        .unwrap_or(std::cmp::Ordering::Equal)
}

/// Plans `scenario` over `space` for each of `rates` (empty: the scenario's own rate).
pub fn plan(
    scenario: &Scenario,
    files: &dyn FileSource,
    space: &Space,
    options: &CapacityOptions,
    rates: &[f64],
) -> Result<Plan> {
    options.validate()?;
    space.validate()?;
    if let Some(bad) = rates.iter().find(|r| !(r.is_finite() && **r > 0.0)) {
        return Err(Error::invalid(
            "rate",
            format!("expected positive rates, got {bad}"),
        ));
    }
    let configure = |point: &[Knob]| {
        let mut s = scenario.clone();
        for k in point {
            k.apply(&mut s);
        }
        s
    };
    let points = space.points();
    let rows: Vec<Row> = points
        .par_iter()
        .map(|point| -> Result<Row> {
            let s = configure(point);
            let settings = point
                .iter()
                .map(|k| (k.axis().to_string(), k.value()))
                .collect();
            let cost = point.iter().filter_map(Knob::cost).collect();
            let (capacity, refused) = match capacity::search(&s, files, &s.policies[0], options) {
                Ok(c) => (Some(c), None),
                Err(e @ Error::DoesNotFit { .. }) => (None, Some(e.to_string())),
                Err(e) => return Err(e),
            };
            Ok(Row {
                settings,
                cost,
                capacity,
                refused,
            })
        })
        .collect::<Result<_>>()?;
    let rates: Vec<f64> = if rates.is_empty() {
        vec![own_rate(scenario, files)?]
    } else {
        rates.to_vec()
    };
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by(|&a, &b| {
        cmp_cost(&rows[a].cost, &rows[b].cost)
            .then_with(|| {
                let cap = |i: usize| rows[i].capacity_rps().unwrap_or(-1.0);
                cap(b).total_cmp(&cap(a))
            })
            .then(a.cmp(&b))
    });
    let mut answers = Vec::new();
    for &rate in &rates {
        let mut answer = Answer {
            rate_rps: rate,
            choice: None,
            check: None,
            note: None,
        };
        for &i in &order {
            let Some(cap) = rows[i].capacity_rps() else {
                continue;
            };
            if cap < rate * (1.0 - options.tolerance) {
                continue;
            }
            let s = configure(&points[i]);
            let p = capacity::probe_rate(&s, files, &s.policies[0], rate, options)?;
            if p.met {
                answer.choice = Some(i);
                answer.check = Some(p);
                break;
            }
        }
        if answer.choice.is_none() {
            let best = order
                .iter()
                .filter_map(|&i| rows[i].capacity_rps().map(|c| (c, i)))
                .max_by(|a, b| a.0.total_cmp(&b.0));
            answer.note = Some(match best {
                Some((c, i)) => format!(
                    "no configuration searched meets SLO {} at {rate} req/s; the highest capacity is {c:.3} req/s ({})",
                    options.slo,
                    describe(&rows[i])
                ),
                None => format!(
                    "no configuration searched reaches SLO {} at any rate",
                    options.slo
                ),
            });
        }
        answers.push(answer);
    }
    Ok(Plan {
        scenario: scenario.name.clone(),
        options: *options,
        rows,
        answers,
    })
}

/// `instances=3, policy=omls`.
pub fn describe(row: &Row) -> String {
    row.settings
        .iter()
        .map(|(a, v)| format!("{a}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn own_rate(scenario: &Scenario, files: &dyn FileSource) -> Result<f64> {
    if let Some(r) = scenario.rate_rps {
        return Ok(r);
    }
    let w = scenario.load_workload(files, scenario.seeds[0])?;
    let r = crate::offered::offered_rps(&w);
    if r > 0.0 {
        Ok(r)
    } else {
        Err(Error::invalid(
            "plan",
            "the workload has no arrival rate: pass a rate",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_eviction_axis_sets_the_pools_policy() {
        use crate::ledger::Eviction;
        let space = Space::new(&[1], &["affinity".into()]).with_serving(
            &[Some(crate::ledger::Capacity::Tenants(4))],
            &[],
            &[Eviction::Lfu, Eviction::Belady],
        );
        let points = space.points();
        assert_eq!(points.len(), 2);
        let k = &points[1][3];
        assert_eq!(
            (k.axis(), k.value().as_str(), k.cost()),
            ("eviction", "belady", None)
        );
        let mut s = crate::scenario::Scenario::from_ron(
            r#"Scenario(name: "e", profile: "p.ron", model: "m", instances: 1,
               workload: Generate(requests: 1, arrivals: Poisson(rate_rps: 1.0), tenants: 1))"#,
            "e.ron",
        )
        .unwrap();
        k.apply(&mut s);
        assert_eq!(s.eviction, Eviction::Belady);
    }

    #[test]
    fn the_space_is_a_product_in_axis_order() {
        let space = Space::new(&[1, 2], &["fcfs".into(), "omls".into()]);
        let points = space.points();
        assert_eq!(points.len(), 4);
        assert_eq!(
            points[1],
            vec![Knob::Instances(1), Knob::Policy("omls".into())]
        );
        assert_eq!(points[2][0].cost(), Some(2.0));
        assert_eq!(points[2][1].cost(), None);
        assert!(Space::new(&[], &["fcfs".into()]).validate().is_err());
        assert!(Space::new(&[0], &["fcfs".into()]).validate().is_err());
        use std::cmp::Ordering::*;
        assert_eq!(cmp_cost(&[1.0, 5.0], &[2.0, 0.0]), Less);
        assert_eq!(cmp_cost(&[2.0], &[2.0]), Equal);
    }
}
