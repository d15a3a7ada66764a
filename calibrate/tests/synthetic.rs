//! Calibration of a synthetic target with known costs: the profile must recover them, validate,
//! and drive the simulator.

use ptm_calibrate::{calibrate, DeviceInfo, Error, Op, Plan, SwitchMode, Target};
use ptm_sim::engine::{self, LoadingMode, Serving, Setup};
use ptm_sim::profile::{Dist, Profile};
use ptm_sim::scheduler::{self, Shape};
use std::time::Duration;

/// Known costs with ±2 % deterministic jitter; k instances at once stretch forwards by
/// 1 + 0.5 (k − 1), host-cache switches by k (they share the PCIe link) and weight-pool loads
/// by 1 + 0.9 (k − 1) (they share the device's memory bandwidth).
struct Synthetic {
    state: u64,
    cold_loads: usize,
}

impl Synthetic {
    fn jitter(&mut self, ms: f64) -> Duration {
        self.state = self
            .state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let u = (self.state >> 11) as f64 / (1u64 << 53) as f64;
        Duration::from_secs_f64(ms * (0.98 + 0.04 * u) / 1e3)
    }
}

impl Target for Synthetic {
    fn device(&self) -> DeviceInfo {
        DeviceInfo {
            kind: ptm_sim::profile::DeviceKind::Cuda,
            name: "synthetic".into(),
            driver: "none".into(),
            memory_bytes: 80 << 30,
        }
    }
    fn memory_per_instance_bytes(&mut self, model: &str) -> Result<u64, Error> {
        match model {
            "tiny" => Ok(1 << 30),
            other => Err(Error::UnknownModel {
                model: other.into(),
                known: "tiny".into(),
            }),
        }
    }
    fn cold_load(&mut self, _model: &str) -> Result<Duration, Error> {
        self.cold_loads += 1;
        Ok(self.jitter(100.0))
    }
    fn concurrent(&mut self, _model: &str, k: usize, op: Op) -> Result<Vec<Duration>, Error> {
        let base = match op {
            Op::Switch(SwitchMode::HostCache) => 4.0 * k as f64,
            Op::Switch(SwitchMode::FastPtm) => 40.0,
            Op::Switch(SwitchMode::Full) => 1000.0,
            Op::Forward { batch, seq_len } => {
                (0.5 + 0.001 * (batch * seq_len) as f64) * (1.0 + 0.5 * (k - 1) as f64)
            }
        };
        Ok((0..k).map(|_| self.jitter(base)).collect())
    }
    fn weights_bytes(&mut self, _model: &str) -> Result<Option<u64>, Error> {
        Ok(Some(220_000_000))
    }
    fn pool_loads(&mut self, _model: &str, k: usize) -> Result<Option<Vec<Duration>>, Error> {
        let base = 0.1 * (1.0 + 0.9 * (k - 1) as f64);
        Ok(Some((0..k).map(|_| self.jitter(base)).collect()))
    }
}

fn run(plan: &Plan) -> (Profile, Vec<ptm_calibrate::Step>, usize) {
    let mut target = Synthetic {
        state: 7,
        cold_loads: 0,
    };
    let mut steps = Vec::new();
    let profile = calibrate(
        &mut target,
        &["tiny".to_string()],
        plan,
        "test",
        "2026-11-21T00:00:00Z",
        &mut |s| steps.push(s),
    )
    .unwrap();
    (profile, steps, target.cold_loads)
}

#[test]
fn the_profile_recovers_the_known_costs() {
    let plan = Plan {
        max_instances: 4,
        ..Plan::quick()
    };
    let (profile, steps, cold_loads) = run(&plan);
    profile.validate("synthetic").unwrap();
    assert_eq!(cold_loads, plan.warmup + plan.slow_repeats);
    assert_eq!(steps.len(), plan.steps_per_model());
    assert!(steps
        .iter()
        .enumerate()
        .all(|(i, s)| s.done == i + 1 && s.total == steps.len()));
    let m = &profile.models["tiny"];
    let near = |a: f64, b: f64| (a - b).abs() <= 0.03 * b;
    assert!(near(
        m.cold_load.measured.as_ref().unwrap().median_ms,
        100.0
    ));
    assert!(near(
        m.switch.split.measured.as_ref().unwrap().median_ms,
        4.0
    ));
    assert!(near(m.switch.fastptm.as_ref().unwrap().ms.mean(), 40.0));
    assert!(near(m.switch.full.ms.mean(), 1000.0));
    let s = &m.switch.split.stretch;
    assert!(s.len() == 4 && near(s[1], 2.0) && near(s[3], 4.0), "{s:?}");
    let f = &m.forward.stretch;
    assert!(f.len() == 4 && near(f[1], 1.5) && near(f[3], 2.5), "{f:?}");
    assert_eq!(m.weights_bytes, Some(220_000_000));
    let pool = m.pool_switch.as_ref().expect("the pool load is measured");
    assert!(near(pool.measured.as_ref().unwrap().median_ms, 0.1));
    let p = &pool.stretch;
    assert!(p.len() == 4 && near(p[1], 1.9) && near(p[3], 3.7), "{p:?}");
    assert_eq!(
        m.forward.points.len(),
        plan.batches.len() * plan.seq_lens.len()
    );
    assert!(near(m.forward.mean_ms(4, 32), 0.5 + 0.128));
    let c = profile.calibration.as_ref().unwrap();
    assert_eq!(
        (c.repeats, c.warmup, c.command.as_str()),
        (plan.repeats, plan.warmup, "test")
    );
    assert!(
        !matches!(m.switch.split.ms, Dist::Constant(_)),
        "jittered samples have a spread"
    );
}

#[test]
fn the_profile_round_trips_and_drives_the_simulator() {
    let (profile, _, _) = run(&Plan::quick());
    let text = ron::ser::to_string_pretty(&profile, Default::default()).unwrap();
    let again = Profile::from_ron(&text, "cal.ron").unwrap();
    assert_eq!(again, profile);
    let spec = ptm_sim::workload::WorkloadSpec::Sequence {
        repeat: 5,
        types: 4,
        shuffle: true,
        gap_ms: 20.0,
    };
    let defaults = ptm_sim::workload::RequestDefaults {
        samples: 4,
        seq_len: 32,
        deadline_ms: 500.0,
    };
    let w =
        ptm_sim::workload::build(&spec, &defaults, "tiny", 1, &ptm_sim::workload::NoFiles).unwrap();
    let setup = Setup::new(
        &again,
        "cal.ron",
        &w,
        Serving {
            instances: 2,
            loading: LoadingMode::Split,
            forward_batch: 4,
            ..Serving::default()
        },
    )
    .unwrap();
    let mut s = scheduler::by_name(
        "affinity",
        &Default::default(),
        Shape {
            instances: 2,
            tenants: 4,
        },
    )
    .unwrap();
    let run = engine::simulate(&setup, s.as_mut(), 1, Default::default()).unwrap();
    assert!(run.end_ns.iter().all(|&t| t > 0));
}

#[test]
fn a_failing_target_is_named() {
    let mut target = Synthetic {
        state: 1,
        cold_loads: 0,
    };
    let err = calibrate(
        &mut target,
        &["huge".to_string()],
        &Plan::quick(),
        "t",
        "d",
        &mut |_| (),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("huge") && err.to_string().contains("memory"),
        "{err}"
    );
}
