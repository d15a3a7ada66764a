//! `ptm plan`: which policy and how many instances — the cheapest configuration that meets the
//! SLO at an offered rate, the capacity of every configuration, and a figure of capacity
//! against instances per policy (`ptm_sim::plan`).

use super::capacity::{rate, SearchFlags};
use super::scenario_flags::ScenarioFlags;
use anyhow::Context as _;
use clap::Args;
use ptm_sim::plan::{self, Plan, Space};
use std::fmt::Write as _;
use std::path::PathBuf;

/// Flags of `ptm plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The scenario and what to change in it (`--rate` is the offered rate to plan for).
    #[command(flatten)]
    pub scenario: ScenarioFlags,
    /// How to search each configuration's capacity.
    #[command(flatten)]
    pub search: SearchFlags,
    /// Plan for each of these offered rates, requests per second (comma separated).
    #[arg(long, value_delimiter = ',', conflicts_with = "rate")]
    pub rates: Vec<f64>,
    /// Instance counts to search: `1-8` or `1,2,4,8` (counts that do not fit the GPU are listed
    /// as refused).
    #[arg(long, default_value = "1-8", value_parser = parse_counts)]
    pub instance_counts: Counts,
    /// GPU pools to search (comma separated): `none` (FastPTM's model), a tenant count, bytes
    /// (`80GB`) or `auto`.
    #[arg(long, value_delimiter = ',', value_parser = super::scenario_flags::parse_pool)]
    pub gpu_pools: Vec<super::scenario_flags::PoolArg>,
    /// Batching windows to search, milliseconds (comma separated; `off`: one request a
    /// dispatch).
    #[arg(long, value_delimiter = ',', value_parser = parse_wait)]
    pub max_waits: Vec<Option<f64>>,
    /// Eviction policies to search (comma separated): lru, lfu, gdsf, tinylfu, belady (the offline
    /// optimum, for reference); they differ only with a pool smaller than the tenants.
    #[arg(long, value_delimiter = ',', value_parser = super::scenario_flags::parse_eviction)]
    pub evictions: Vec<ptm_sim::ledger::Eviction>,
    /// Where to write plan.json, capacity.csv and the figure (default: results/<scenario>-plan).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// `off` or a window in milliseconds.
fn parse_wait(s: &str) -> Result<Option<f64>, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("off") || t.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    match t.parse::<f64>() {
        Ok(w) if w.is_finite() && (0.0..=60_000.0).contains(&w) => Ok(Some(w)),
        _ => Err(format!(
            "expected off or a window of 0 to 60000 ms, got {s:?}"
        )),
    }
}

/// Instance counts, sorted and distinct.
#[derive(Debug, Clone, PartialEq)]
pub struct Counts(pub Vec<usize>);

/// `1-8` or `1,2,4`.
fn parse_counts(s: &str) -> Result<Counts, String> {
    let bad = || format!("expected counts like 1-8 or 1,2,4 (each ≥ 1, at most 256), got {s:?}");
    let mut out = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b): (usize, usize) = (
            a.trim().parse().map_err(|_| bad())?,
            b.trim().parse().map_err(|_| bad())?,
        );
        if a == 0 || b < a || b > 256 {
            return Err(bad());
        }
        out.extend(a..=b);
    }
    out.sort_unstable();
    out.dedup();
    Ok(Counts(out))
}

/// The capacity table: one row per configuration of the non-policy axes, one column per policy.
fn table(p: &Plan) -> String {
    let mut out = String::new();
    let mut policies: Vec<&str> = Vec::new();
    let mut groups: Vec<String> = Vec::new();
    for r in &p.rows {
        let policy = r.get("policy").unwrap_or("");
        if !policies.contains(&policy) {
            policies.push(policy);
        }
        let g = r
            .settings
            .iter()
            .filter(|(a, _)| a != "policy")
            .map(|(a, v)| format!("{a}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    let width = groups
        .iter()
        .map(|g| g.chars().count())
        .max()
        .unwrap_or(0)
        .max(14);
    let _ = write!(out, "{:<width$}", "");
    for p in &policies {
        let _ = write!(out, " {p:>12}");
    }
    out.push('\n');
    for g in &groups {
        let _ = write!(out, "{g:<width$}");
        for pol in &policies {
            let row = p.rows.iter().find(|r| {
                r.get("policy") == Some(pol)
                    && r.settings
                        .iter()
                        .filter(|(a, _)| a != "policy")
                        .map(|(a, v)| format!("{a}={v}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                        == *g
            });
            let cell = match row {
                Some(r) if r.refused.is_some() => "does not fit".to_string(),
                Some(r) => rate(r.capacity_rps()).replace("not reached", "-"),
                None => String::new(),
            };
            let _ = write!(out, " {cell:>12}");
        }
        out.push('\n');
    }
    out
}

/// Runs `ptm plan`.
pub fn execute(args: PlanArgs) -> anyhow::Result<()> {
    let loaded = args.scenario.load()?;
    let s = &loaded.scenario;
    let options = args.search.options();
    let pools: Vec<_> = args.gpu_pools.iter().map(|p| p.0).collect();
    let any_pool = if pools.is_empty() {
        s.gpu_pool.is_some()
    } else {
        pools.iter().any(Option::is_some)
    };
    anyhow::ensure!(
        args.evictions.is_empty() || any_pool,
        "--evictions: no GPU pool to evict from; give --gpu-pools with a pool smaller than the \
         tenants (e.g. --gpu-pools 100), or a scenario with a gpu_pool"
    );
    let space = Space::new(&args.instance_counts.0, &s.policies).with_serving(
        &pools,
        &args.max_waits,
        &args.evictions,
    );
    let p = plan::plan(s, loaded.files.as_ref(), &space, &options, &args.rates)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| super::sweep::default_out(&format!("{}-plan", s.name)));
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let json = serde_json::to_string_pretty(&p)?;
    let path = out.join("plan.json");
    std::fs::write(&path, &json).with_context(|| format!("cannot write {}", path.display()))?;
    let mut csv = String::from(
        "instances,policy,pool,batching,eviction,capacity_rps,slo_attainment,bound_rps,refused\n",
    );
    for r in &p.rows {
        let c = r.capacity.as_ref();
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{},{}",
            r.get("instances").unwrap_or(""),
            r.get("policy").unwrap_or(""),
            r.get("pool").unwrap_or(""),
            r.get("batching").unwrap_or(""),
            r.get("eviction").unwrap_or(""),
            r.capacity_rps().map_or(String::new(), |v| v.to_string()),
            c.and_then(|c| c.slo_attainment)
                .map_or(String::new(), |v| v.to_string()),
            c.map_or(String::new(), |c| c.bound_rps.to_string()),
            r.refused.is_some()
        );
    }
    let path = out.join("capacity.csv");
    std::fs::write(&path, csv).with_context(|| format!("cannot write {}", path.display()))?;
    let figures = ptm_plots::render_plan(&p, &out)?;
    if args.json {
        println!("{json}");
        return Ok(());
    }
    println!(
        "{}: steady-state capacity (req/s) at SLO attainment ≥ {} per configuration ('-': not reached)",
        s.name, options.slo
    );
    print!("{}", table(&p));
    for a in &p.answers {
        match (a.choice, &a.check) {
            (Some(i), Some(check)) => {
                let r = &p.rows[i];
                println!(
                    "cheapest meeting SLO {} at {:.3} req/s: {} (capacity {} req/s; checked at {:.3} req/s: attainment {:.4})",
                    options.slo,
                    a.rate_rps,
                    plan::describe(r),
                    rate(r.capacity_rps()),
                    check.rate_rps,
                    check.slo_attainment
                );
            }
            _ => println!(
                "at {:.3} req/s: {}",
                a.rate_rps,
                a.note.as_deref().unwrap_or("no answer")
            ),
        }
    }
    eprintln!(
        "wrote {} and {}",
        out.join("plan.json").display(),
        out.join("capacity.csv").display()
    );
    for f in figures {
        eprintln!("{}", f.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_parse() {
        assert_eq!(parse_counts("1-3").unwrap().0, vec![1, 2, 3]);
        assert_eq!(parse_counts("4,1,2-3").unwrap().0, vec![1, 2, 3, 4]);
        for bad in ["0-2", "3-1", "x", "1-1000"] {
            assert!(parse_counts(bad).is_err(), "{bad}");
        }
    }
}
