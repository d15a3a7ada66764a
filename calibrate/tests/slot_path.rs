//! The live path on the CPU twin: slots on worker threads through the runtime's `Slot`, as live
//! instances run, give one latency per slot and operation, and the contention figures it
//! measures form a valid profile section.

use ptm_calibrate::contention;
use ptm_calibrate::{LivePath, PathOp, Plan, SlotPath};
use ptm_runtime::zoo::{make_zoo, Arch};
use ptm_runtime::{DType, Device};

#[test]
fn the_cpu_live_path_times_every_operation_and_its_figures_validate() {
    let tmp = tempfile::tempdir().unwrap();
    make_zoo(Arch::Tiny, 3, tmp.path(), DType::Fp32, 5).unwrap();
    let mut path =
        SlotPath::new(tmp.path(), Device::Cpu, DType::Fp32, 2, &[(2, 16), (4, 32)]).unwrap();
    assert_eq!(path.instances(), 2);
    let forward = PathOp::Forward {
        batch: 2,
        seq_len: 16,
        passes: 3,
    };
    for op in [forward, PathOp::Switch, PathOp::ColdLoad] {
        for k in 1..=2 {
            let ds = path.together(op, k).unwrap();
            assert_eq!(ds.len(), k, "{op:?}");
        }
    }
    let err = path.together(forward, 3).unwrap_err().to_string();
    assert!(err.contains("3 instances asked, 2 slots"), "{err}");
    assert_eq!(path.during(forward, PathOp::Switch, 4).unwrap().len(), 4);
    assert_eq!(path.during(PathOp::Switch, forward, 3).unwrap().len(), 3);
    assert_eq!(path.handoffs(5).unwrap().len(), 5);
    assert_eq!(path.handoffs_busy(5).unwrap().len(), 5);
    // Requests check their outputs (one per row) inside.
    assert_eq!(path.requests_busy(2, 16, 4, 3).unwrap().len(), 3);

    let plan = Plan {
        batches: vec![2, 4],
        seq_lens: vec![16, 32],
        max_instances: 2,
        warmup: 1,
        repeats: 3,
        slow_repeats: 2,
        slow_max_instances: 2,
    };
    let mut steps = 0;
    let f = contention::measure(&mut path, &plan, &|_, _| 0.1, &mut |_| steps += 1).unwrap();
    assert_eq!(steps, contention::STEPS);
    f.contention.validate("cpu.contention").unwrap();
    assert_eq!(f.contention.sm_tokens, 2 * 32);
    assert_eq!(f.contention.sm_large.as_ref().map(|l| l.0), Some(4 * 32));
    f.host.validate("cpu.host").unwrap();
    assert!(f.host.handoff_ms.mean() > 0.0);
    assert!(f
        .host
        .handoff_busy_ms
        .as_ref()
        .is_some_and(|d| d.mean() > 0.0));
    // Beside passes of each larger shape of the plan (tokens increasing, the largest last).
    let sizes: Vec<u32> = f
        .contention
        .copy_during_forward_sizes
        .iter()
        .map(|s| s.0)
        .collect();
    assert_eq!(sizes.last(), Some(&(4 * 32)), "{sizes:?}");
    assert!(sizes.windows(2).all(|w| w[0] < w[1]), "{sizes:?}");
}

#[test]
fn pool_loads_are_timed_on_a_pooled_cpu_path_and_their_factors_validate() {
    use ptm_calibrate::pool_contention;
    let tmp = tempfile::tempdir().unwrap();
    make_zoo(Arch::Tiny, 3, tmp.path(), DType::Fp32, 5).unwrap();
    let forward = PathOp::Forward {
        batch: 2,
        seq_len: 16,
        passes: 2,
    };
    let plan = Plan {
        batches: vec![2],
        seq_lens: vec![16],
        max_instances: 2,
        warmup: 1,
        repeats: 3,
        slow_repeats: 2,
        slow_max_instances: 2,
    };
    // Without a pool: no figure, and a pool load is refused naming what it needs.
    let mut plain = SlotPath::new(tmp.path(), Device::Cpu, DType::Fp32, 2, &[(2, 16)]).unwrap();
    assert!(!plain.has_pool());
    assert_eq!(pool_contention::measure(&mut plain, &plan).unwrap(), None);
    let err = plain.together(PathOp::PoolLoad, 1).unwrap_err().to_string();
    assert!(err.contains("weight pool"), "{err}");

    let mut path = SlotPath::pooled(tmp.path(), Device::Cpu, DType::Fp32, 2, &[(2, 16)]).unwrap();
    assert!(path.has_pool());
    for k in 1..=2 {
        assert_eq!(path.together(PathOp::PoolLoad, k).unwrap().len(), k);
    }
    assert_eq!(path.during(forward, PathOp::PoolLoad, 3).unwrap().len(), 3);
    assert_eq!(path.during(PathOp::PoolLoad, forward, 2).unwrap().len(), 2);
    // Forwards still run after pool loads (the slot holds a tenant from the pool).
    assert_eq!(path.together(forward, 2).unwrap().len(), 2);
    let f = pool_contention::measure(&mut path, &plan)
        .unwrap()
        .expect("a pooled path with 2 slots measures the factors");
    f.validate("cpu.pool_contention").unwrap();
    assert_eq!(f.tokens, 2 * 16);
    assert!(f.method.contains("3 requests"), "{}", f.method);
}
