//! The ledger's rules, one transition at a time.

use super::*;

fn requests(tenants: &[TenantId]) -> Vec<Request> {
    crate::scheduler::testing::requests(tenants)
}

fn d(instance: u32, request: RequestId) -> Dispatch {
    Dispatch { instance, request }
}

/// 2 instances (instance 1 holds tenant 1), 3 tenants, `n` requests arrived at 0.
fn ledger(n: usize) -> (Ledger, Estimates) {
    let mut l = Ledger::new("test", &[None, Some(1)], 3, n, true);
    for id in 0..n as RequestId {
        l.arrive(0, id).unwrap();
    }
    (l, crate::scheduler::testing::estimates(n))
}

#[test]
fn a_dispatch_classifies_counts_and_estimates_its_load() {
    let reqs = requests(&[0, 1, 2]);
    let (mut l, est) = ledger(3);
    let mut starts = Vec::new();
    l.dispatch(5, &[d(0, 0), d(1, 1)], &reqs, &est, &mut starts)
        .unwrap();
    assert_eq!(starts[0].load, Load::Cold);
    assert_eq!(starts[1].load, Load::None);
    assert_eq!(starts[1].from, Some(1));
    assert_eq!((l.busy(), l.waiting()), (2, 1));
    // Cold load 1 s + service 10 ms.
    assert_eq!(l.views()[0].free_at_est_ns, 5 + 1_010_000_000);
    assert_eq!(l.views()[1].free_at_est_ns, 5 + 10_000_000);
    assert_eq!(l.run().instances[0].cold_loads, 1);
    assert_eq!(l.run().tenant_loads, vec![1, 0, 0]);
    assert!(l.loading(0) && !l.loading(1));
    assert_eq!(l.load_done(7, 0).unwrap(), 0);
    assert_eq!((l.ended_ns(0), l.ended_ns(1)), (None, None));
    assert_eq!(l.complete(9, 0).unwrap(), 0);
    assert_eq!(l.complete(9, 1).unwrap(), 1);
    assert_eq!((l.ended_ns(0), l.ended_ns(1)), (Some(9), Some(9)));
    starts.clear();
    l.dispatch(10, &[d(1, 2)], &reqs, &est, &mut starts)
        .unwrap();
    assert_eq!(starts[0].load, Load::Switch);
    // A dispatch keeps the previous batch's end; a load's end is not a batch's.
    assert_eq!(l.ended_ns(1), Some(9));
    l.load_done(11, 1).unwrap();
    assert_eq!(l.ended_ns(1), Some(9));
    l.complete(12, 1).unwrap();
    assert_eq!((l.ended_ns(1), l.ended_ns(5)), (Some(12), None));
    let run = l.finish(12).unwrap();
    assert_eq!(run.load, vec![Load::Cold, Load::None, Load::Switch]);
    assert_eq!(run.served_by, vec![0, 1, 1]);
    assert_eq!((run.start_ns[2], run.end_ns[2]), (10, 12));
    assert_eq!(run.instances[0].busy_ns, 4);
    assert_eq!(run.instances[0].loading_ns, 2);
    // Busy from 5 to 9 and from 10 to 12.
    assert_eq!(run.gpu_busy_ns, 6);
    assert_eq!(run.timeline.unwrap().len(), 5);
}

#[test]
fn broken_dispatches_are_refused() {
    let reqs = requests(&[0, 1]);
    let (mut l, est) = ledger(2);
    let mut starts = Vec::new();
    let err = |l: &mut Ledger, decision: &[Dispatch]| {
        l.dispatch(0, decision, &reqs, &est, &mut Vec::new())
            .unwrap_err()
            .to_string()
    };
    assert!(err(&mut l, &[d(2, 0)]).contains("instance is not idle"));
    assert!(err(&mut l, &[d(0, 9)]).contains("request is not waiting"));
    l.dispatch(0, &[d(0, 0)], &reqs, &est, &mut starts).unwrap();
    assert!(err(&mut l, &[d(0, 1)]).contains("instance is not idle"));
    assert!(err(&mut l, &[d(1, 0)]).contains("request is not waiting"));
    assert!(l
        .complete(1, 0)
        .unwrap_err()
        .to_string()
        .contains("not running"));
    assert!(l
        .load_done(1, 1)
        .unwrap_err()
        .to_string()
        .contains("was not doing"));
}

#[test]
fn two_dispatches_of_one_request_in_one_decision_are_refused() {
    let reqs = requests(&[0]);
    let (mut l, est) = ledger(1);
    let e = l
        .dispatch(0, &[d(0, 0), d(1, 0)], &reqs, &est, &mut Vec::new())
        .unwrap_err();
    assert!(e.to_string().contains("request is not waiting"), "{e}");
}

#[test]
fn a_failed_load_leaves_the_instance_empty_and_the_request_answered() {
    let reqs = requests(&[2]);
    let (mut l, est) = ledger(1);
    let mut starts = Vec::new();
    l.dispatch(0, &[d(1, 0)], &reqs, &est, &mut starts).unwrap();
    assert_eq!(starts[0].load, Load::Switch);
    assert_eq!(l.fail(3, 1).unwrap(), 0);
    assert_eq!(l.views()[1].resident, None);
    assert!(!l.views()[1].busy);
    assert_eq!((l.completed(), l.failed()), (1, 1));
    let run = l.finish(3).unwrap();
    assert_eq!(
        run.instances[1].requests, 0,
        "a failed request is not a served one"
    );
}

#[test]
fn the_end_of_a_run_checks_conservation_and_stalls() {
    let reqs = requests(&[0, 1]);
    let (mut l, est) = ledger(2);
    assert!(l.check_stall(0, true).is_ok());
    let stall = l.check_stall(0, false).unwrap_err().to_string();
    assert!(stall.contains("stalled: 2 requests wait"), "{stall}");
    l.dispatch(0, &[d(1, 1)], &reqs, &est, &mut Vec::new())
        .unwrap();
    l.complete(1, 1).unwrap();
    let err = l.finish(1).unwrap_err().to_string();
    assert!(
        err.contains("1 of 2 requests completed; request 0 is Waiting"),
        "{err}"
    );
    let never = Ledger::new("test", &[None], 1, 1, false);
    let err = never.finish(0).unwrap_err().to_string();
    assert!(err.contains("request 0 is NotArrived"), "{err}");
}

#[test]
fn arrivals_are_once_each() {
    let (mut l, _) = ledger(1);
    assert!(l
        .arrive(0, 0)
        .unwrap_err()
        .to_string()
        .contains("arrived twice"));
    assert!(l.arrive(0, 5).is_err());
}

#[test]
fn a_server_forgets_answered_requests_and_keeps_numbering() {
    let mut l = Ledger::new("test", &[None], 1, 0, false);
    let mut est = Estimates::uniform(0, 10, 100, 1000);
    let mut reqs = Vec::new();
    let mut served = 0u32;
    for round in 0..5000u32 {
        let id = l.push_request();
        assert_eq!(id, round, "ids keep increasing");
        assert_eq!(est.push_service_ns(10), id);
        reqs.push(requests(&[0])[0]);
        l.arrive(round as u64, id).unwrap();
        let mut starts = Vec::new();
        l.dispatch(round as u64, &[d(0, id)], &reqs, &est, &mut starts)
            .unwrap();
        if starts[0].load != Load::None {
            l.load_done(round as u64, 0).unwrap();
        }
        l.complete(round as u64, 0).unwrap();
        served += 1;
        let dropped = l.compact();
        reqs.drain(..dropped);
        est.drop_first(dropped);
        assert!(l.state.len() <= 2048, "bounded by the requests in flight");
        assert_eq!(l.first_id() as usize + l.state.len(), served as usize);
    }
    assert!(l.first_id() > 0);
    assert_eq!(l.completed(), 5000);
    assert_eq!(l.run().instances[0].requests, 5000);
    assert!(l.run().start_ns.len() <= 2048);
}

#[test]
fn host_copies_and_prefetches_queue_on_the_copy_engine() {
    // Two instances holding tenants 0 and 1, a pool of 2 over 4 tenants; switch 100 ms.
    let reqs = requests(&[2, 3, 3]);
    let est = crate::scheduler::testing::estimates(3);
    let tiers = Tiers {
        pool_tenants: Some(2),
        ..Tiers::default()
    };
    let residency = Residency::new(tiers, 4, vec![1.0; 4], None).unwrap();
    let mut l = Ledger::new("test", &[Some(0), Some(1)], 4, 3, false).with_tiers(residency);
    for id in 0..3 {
        l.arrive(0, id).unwrap();
    }
    assert_eq!(l.copy_free_at_est_ns(), 0);
    let mut starts = Vec::new();
    l.dispatch(10, &[d(0, 0), d(1, 1)], &reqs, &est, &mut starts)
        .unwrap();
    assert_eq!(
        (starts[0].load, starts[1].load),
        (Load::Switch, Load::Switch)
    );
    assert_eq!(
        l.copy_free_at_est_ns(),
        10 + 200_000_000,
        "one copy after the other"
    );
    // A prefetch queues behind them.
    assert!(l.prefetch(20, 0, &est).is_some());
    assert_eq!(l.copy_free_at_est_ns(), 10 + 300_000_000);
    // The first copy ended early: the rest are re-anchored to its end.
    l.load_done(50_000_000, 0).unwrap();
    assert_eq!(l.copy_free_at_est_ns(), 250_000_000);
    l.prefetch_done(60_000_000, 0);
    assert_eq!(l.copy_free_at_est_ns(), 160_000_000);
    // A failed load ends its copy too; the engine is then idle.
    l.fail(70_000_000, 1).unwrap();
    assert_eq!(l.copy_free_at_est_ns(), 70_000_000);
    // A load from the pool is no host copy.
    l.complete(80_000_000, 0).unwrap();
    starts.clear();
    l.dispatch(90_000_000, &[d(1, 2)], &reqs, &est, &mut starts)
        .unwrap();
    assert_eq!(starts[0].load, Load::Pool);
    assert_eq!(l.copy_free_at_est_ns(), 70_000_000);
}
