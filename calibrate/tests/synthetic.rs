//! Calibration of a synthetic target with known costs: the profile must recover them, validate,
//! and drive the simulator.

use ptm_calibrate::{
    calibrate, contention, DeviceInfo, Error, LivePath, Op, PathOp, Plan, SwitchMode, Target,
};
use ptm_sim::engine::{self, LoadingMode, Serving, Setup};
use ptm_sim::profile::{Dist, Profile, Sharing};
use ptm_sim::scheduler::{self, Shape};
use std::time::Duration;

/// Known costs with ±2 % deterministic jitter; k instances at once stretch forwards by
/// 1 + 0.5 (k − 1), host-cache switches by k (they share the PCIe link) and weight-pool loads
/// by 1 + 0.9 (k − 1) (they share the device's memory bandwidth).
struct Synthetic {
    state: u64,
    cold_loads: usize,
    path: Option<SyntheticPath>,
}

/// A live path with known figures: forward requests share the SMs at 1 + s (k − 1) (all `k`
/// end together; s = [`sm_slope`] of their passes' tokens), switches queue one after another (4 ms each), cold loads share the host at
/// 1 + 0.25 (k − 1); a forward takes 1.2× while a switch runs, a switch 1.5× while passes of up
/// to 32 tokens run and 1.1× beside larger ones; hand-offs take 0.05 ms to a parked worker and
/// 0.02 ms back to back, a request's staging 0.2 ms plus 0.01 ms per further pass (a request
/// back to back: the busy hand-off, the staging and its passes).
struct SyntheticPath {
    jitter: Synthetic2,
}

/// Deterministic ±1 % jitter.
struct Synthetic2(u64);

impl Synthetic2 {
    fn ms(&mut self, ms: f64) -> Duration {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let u = (self.0 >> 11) as f64 / (1u64 << 53) as f64;
        Duration::from_secs_f64(ms * (0.99 + 0.02 * u) / 1e3)
    }
}

/// The SMs' known sharing slope for passes of `tokens` tokens: 0.5 up to 128 tokens, 0.8 up
/// to 512, 1 (no overlap) beyond — not log-linear in tokens.
fn sm_slope(tokens: u32) -> f64 {
    match tokens {
        0..=128 => 0.5,
        129..=512 => 0.8,
        _ => 1.0,
    }
}

/// The synthetic forward pass (see [`Synthetic::concurrent`]).
fn pass_ms(batch: u32, seq_len: u32) -> f64 {
    0.5 + 0.001 * (batch * seq_len) as f64
}

impl SyntheticPath {
    fn alone(op: PathOp) -> f64 {
        match op {
            PathOp::Forward {
                batch,
                seq_len,
                passes,
            } => passes as f64 * pass_ms(batch, seq_len),
            PathOp::Switch => 4.0,
            PathOp::ColdLoad => 100.0,
            PathOp::PoolLoad => 0.2,
        }
    }
}

impl LivePath for SyntheticPath {
    fn instances(&self) -> usize {
        4
    }
    fn has_pool(&self) -> bool {
        true
    }
    fn together(&mut self, op: PathOp, k: usize) -> Result<Vec<Duration>, Error> {
        let a = Self::alone(op);
        let kf = (k - 1) as f64;
        Ok((0..k)
            .map(|i| match op {
                PathOp::Forward { batch, seq_len, .. } => {
                    self.jitter.ms(a * (1.0 + sm_slope(batch * seq_len) * kf))
                }
                PathOp::Switch | PathOp::PoolLoad => self.jitter.ms(a * (i + 1) as f64),
                PathOp::ColdLoad => self.jitter.ms(a * (1.0 + 0.25 * kf)),
            })
            .collect())
    }
    fn during(&mut self, op: PathOp, bg: PathOp, n: usize) -> Result<Vec<Duration>, Error> {
        let f = match (op, bg) {
            (PathOp::Switch, PathOp::Forward { batch, seq_len, .. }) if batch * seq_len > 32 => 1.1,
            (PathOp::Switch, _) => 1.5,
            (PathOp::PoolLoad, _) => 1.4,
            (_, PathOp::PoolLoad) => 1.3,
            _ => 1.2,
        };
        let a = Self::alone(op);
        Ok((0..n).map(|_| self.jitter.ms(a * f)).collect())
    }
    fn handoffs(&mut self, n: usize) -> Result<Vec<Duration>, Error> {
        Ok((0..n).map(|_| self.jitter.ms(0.05)).collect())
    }
    fn handoffs_busy(&mut self, n: usize) -> Result<Vec<Duration>, Error> {
        Ok((0..n).map(|_| self.jitter.ms(0.02)).collect())
    }
    fn requests_busy(
        &mut self,
        batch: u32,
        seq_len: u32,
        passes: u32,
        n: usize,
    ) -> Result<Vec<Duration>, Error> {
        let ms = 0.02 + 0.2 + 0.01 * (passes - 1) as f64 + passes as f64 * pass_ms(batch, seq_len);
        Ok((0..n).map(|_| self.jitter.ms(ms)).collect())
    }
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
    fn live_path(&mut self, _model: &str) -> Result<Option<&mut dyn LivePath>, Error> {
        Ok(self.path.as_mut().map(|p| p as &mut dyn LivePath))
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
        path: Some(SyntheticPath {
            jitter: Synthetic2(3),
        }),
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
fn the_live_path_figures_recover_the_known_contention_and_host_overhead() {
    let plan = Plan {
        max_instances: 4,
        slow_max_instances: 3,
        ..Plan::quick()
    };
    let (profile, _, _) = run(&plan);
    let m = &profile.models["tiny"];
    let near = |a: f64, b: f64, tol: f64| (a - b).abs() <= tol * b.abs().max(1e-9);
    let c = m.contention.as_ref().expect("measured");
    match &c.sm {
        Sharing::Shared(curve) => {
            assert!(
                curve.len() == 4 && near(curve[1], 1.5, 0.03) && near(curve[3], 2.5, 0.03),
                "{curve:?}"
            )
        }
        Sharing::Fifo => panic!("forwards end together: shared"),
    }
    assert_eq!(c.link, Sharing::Fifo, "switches end one after another");
    // The quick plan's stretch shape is 1 × 32 tokens, its largest 4 × 32.
    assert_eq!(c.sm_tokens, 32);
    assert!(
        matches!(&c.sm_large, Some((128, Sharing::Shared(curve))) if near(curve[1], 1.5, 0.03)),
        "{:?}",
        c.sm_large
    );
    match &c.host {
        Sharing::Shared(curve) => {
            assert!(curve.len() == 3 && near(curve[2], 1.5, 0.03), "{curve:?}")
        }
        Sharing::Fifo => panic!("cold loads end together: shared"),
    }
    assert!(
        near(c.forward_during_copy, 1.2, 0.03),
        "{}",
        c.forward_during_copy
    );
    assert!(
        near(c.copy_during_forward, 1.5, 0.03),
        "{}",
        c.copy_during_forward
    );
    // Beside larger passes (more than 32 tokens: up to the largest shape's 4 × 32) a switch
    // slows less; each size the plan has, the largest last.
    let sizes = &c.copy_during_forward_sizes;
    assert_eq!(sizes.last().map(|s| s.0), Some(128), "{sizes:?}");
    assert!(
        sizes
            .iter()
            .all(|&(t, f)| near(f, if t > 32 { 1.1 } else { 1.5 }, 0.03)),
        "{sizes:?}"
    );
    assert!(near(c.copy_factor(64), 1.3, 0.03), "{}", c.copy_factor(64));
    // Pool loads beside forwards and forwards beside pool loads, each over alone.
    let p = m.pool_contention.as_ref().expect("the path has a pool");
    assert!(
        near(p.forward_during_pool_copy, 1.3, 0.03),
        "{}",
        p.forward_during_pool_copy
    );
    assert!(
        near(p.pool_copy_during_forward, 1.4, 0.03),
        "{}",
        p.pool_copy_during_forward
    );
    assert_eq!(p.tokens, 32);
    let h = m.host.as_ref().expect("measured");
    assert!(near(h.handoff_ms.mean(), 0.05, 0.03), "{:?}", h.handoff_ms);
    let busy = h.handoff_busy_ms.as_ref().expect("measured");
    assert!(near(busy.mean(), 0.02, 0.03), "{busy:?}");
    assert!(h.method.contains("back to back"), "{}", h.method);
    assert!(
        h.method.contains("less the busy hand-off's median"),
        "{}",
        h.method
    );
    // The requests' jitter (±1 % of a few ms) dominates the small staging figures.
    assert!(near(h.staging_ms.mean(), 0.2, 0.25), "{:?}", h.staging_ms);
    assert!(
        near(h.staging_per_pass_ms, 0.01, 0.6),
        "{}",
        h.staging_per_pass_ms
    );
    profile.validate("synthetic").unwrap();
    // Without a live path (or with one instance) the profile has neither: not measured.
    let mut target = Synthetic {
        state: 1,
        cold_loads: 0,
        path: None,
    };
    let p = calibrate(
        &mut target,
        &["tiny".to_string()],
        &plan,
        "t",
        "d",
        &mut |_| (),
    )
    .unwrap();
    assert!(p.models["tiny"].contention.is_none() && p.models["tiny"].host.is_none());
}

#[test]
fn the_sms_sharing_is_recovered_at_the_intermediate_sizes_too() {
    // Stretch shape 1 × 128, largest 16 × 128 (2,048 tokens), and 4 × 128 between (512).
    let plan = Plan {
        batches: vec![1, 4, 16],
        seq_lens: vec![32, 128],
        max_instances: 4,
        ..Plan::quick()
    };
    let (profile, _, _) = run(&plan);
    let c = profile.models["tiny"].contention.clone().expect("measured");
    let recovers = |s: &Sharing, slope: f64| match s {
        Sharing::Shared(curve) => {
            curve.len() == 4
                && curve.iter().enumerate().all(|(i, &f)| {
                    let want = 1.0 + slope * i as f64;
                    (f - want).abs() <= 0.03 * want
                })
        }
        Sharing::Fifo => false,
    };
    assert_eq!(c.sm_tokens, 128);
    assert!(recovers(&c.sm, 0.5), "{:?}", c.sm);
    assert!(
        matches!(&c.sm_sizes[..], [(512, s)] if recovers(s, 0.8)),
        "{:?}",
        c.sm_sizes
    );
    assert!(
        matches!(&c.sm_large, Some((2048, s)) if recovers(s, 1.0)),
        "{:?}",
        c.sm_large
    );
    c.validate("tiny.contention").unwrap();
    // The simulator reads them: 512 tokens take the measured intermediate sharing, not the
    // log-linear mix of the ends.
    assert_eq!(c.sm_at(512), (0, 1.0));
    assert_eq!(c.sm_at(1024).0, 1);
    // Quick plans (no size between the ends) measure none: their profiles are as before.
    let (quick, _, _) = run(&Plan::quick());
    assert!(quick.models["tiny"]
        .contention
        .as_ref()
        .expect("measured")
        .sm_sizes
        .is_empty());
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
        path: None,
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

/// Staging is what a request back to back takes beyond the *busy* hand-off and its passes:
/// with the forward table exact, the synthetic path's 0.2 ms and 0.01 ms per further pass come
/// back within the requests' ±1 % jitter (at most 0.0075 ms on a request of one 0.532 ms pass,
/// 0.089 ms on one of 16), well apart from what subtracting the parked hand-off (0.05 ms) would
/// give (0.17 ms).
#[test]
fn staging_is_a_back_to_back_request_less_the_busy_hand_off_and_its_passes() {
    let mut path = SyntheticPath {
        jitter: Synthetic2(11),
    };
    let busy: Vec<f64> = path
        .handoffs_busy(20)
        .unwrap()
        .iter()
        .map(|d| d.as_secs_f64() * 1e3)
        .collect();
    let (batch, seq_len) = (1, 32);
    let (one, per_pass) =
        contention::staging(&mut path, batch, seq_len, 9, &busy, &pass_ms).unwrap();
    assert_eq!(one.len(), 9);
    assert!(one.iter().all(|&x| (x - 0.2).abs() <= 0.01), "{one:?}");
    let bound = (0.0075 + 0.089) / (contention::PASSES_MANY - 1) as f64 + 1e-3;
    assert!((per_pass - 0.01).abs() <= bound, "{per_pass}");
}
