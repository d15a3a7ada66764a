//! Live replay: a workload's arrivals released at their trace times into the [`Core`], on real
//! executors; the result is the simulator's [`Run`], so it is reported by the same code.

use crate::coordinator::{Core, CoreOptions, Msg};
use crate::error::{Error, Result};
use crate::executor::{Executor, Prefetcher};
use ptm_sim::engine::{Preload, Run, Setup};
use ptm_sim::scheduler::Scheduler;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long before an arrival or tick the replay stops sleeping and polls: a sleeping thread
/// wakes tens of microseconds late, which would count as waiting the simulator never sees.
const SPIN: Duration = Duration::from_micros(500);

/// Polls `rx` for at most `w` (busy), for a punctual release.
fn spin_recv<T>(rx: &mpsc::Receiver<T>, w: Duration) -> Option<T> {
    let end = Instant::now() + w;
    loop {
        if let Ok(m) = rx.try_recv() {
            return Some(m);
        }
        if Instant::now() >= end {
            return None;
        }
        std::hint::spin_loop();
    }
}

/// Replays `setup`'s workload in real time through `scheduler` on `executors` (one per
/// instance; `prefetcher` copies tenants into the GPU pool when the scenario has one),
/// returning what happened (request ids as in the workload, every phase in the
/// timeline). Fails, naming the instance and request, if a worker loses a request or the
/// ledger catches a broken rule; at the end every request must have completed exactly once.
pub fn replay(
    setup: &Setup<'_>,
    scheduler: &mut dyn Scheduler,
    executors: Vec<Box<dyn Executor>>,
    prefetcher: Option<Box<dyn Prefetcher>>,
    preload: Preload,
) -> Result<Run> {
    let workload = &setup.workload.requests;
    let (tx, rx) = mpsc::channel::<Msg>();
    let options = CoreOptions {
        preload,
        timeline: true,
        forget_answered: false,
        origin_ns: workload.first().map_or(0, |r| r.arrival_ns),
    };
    std::thread::scope(|scope| {
        let mut core = Core::start(scope, setup, scheduler, executors, prefetcher, options, &tx)?;
        drop(tx);
        let mut released = 0;
        while core.completed() < workload.len() {
            // Sleep until the next arrival or tick, unless a worker reports first.
            let next_arrival = workload
                .get(released)
                .map(|r| Duration::from_nanos(r.arrival_ns.saturating_sub(core.now())));
            let wait = [next_arrival, core.until_tick()]
                .into_iter()
                .flatten()
                .min();
            let first = match wait {
                Some(w) if w > SPIN => rx.recv_timeout(w - SPIN).ok(),
                Some(w) => spin_recv(&rx, w),
                None => Some(rx.recv().map_err(|_| {
                    Error::Invalid(format!(
                        "every instance stopped with {} of {} requests answered",
                        core.completed(),
                        workload.len()
                    ))
                })?),
            };
            let mut changed = false;
            for msg in first.into_iter().chain(rx.try_iter()) {
                changed |= core.worker(msg)?;
            }
            let now = core.now();
            while released < workload.len() && workload[released].arrival_ns <= now {
                let id = core.arrive(workload[released], None, None)?;
                debug_assert_eq!(id as usize, released, "replayed requests keep their ids");
                released += 1;
                changed = true;
            }
            core.decide(changed, released < workload.len())?;
        }
        core.finish()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::{Item, RowOutput, Source};
    use ptm_sim::engine::{self, LoadingMode, Serving, SpanKind};
    use ptm_sim::metrics::Report;
    use ptm_sim::profile::{Dist, Profile};
    use ptm_sim::scheduler::{self, Shape};
    use ptm_sim::workload::{self, NoFiles, RequestDefaults, WorkloadSpec};
    use ptm_sim::workload::{RequestId, TenantId};

    /// Sleeps for the example profile's costs.
    struct Sleeper {
        cold_ms: u64,
        switch_ms: u64,
        infer_ms: u64,
    }

    impl Executor for Sleeper {
        fn load(&mut self, _tenant: TenantId, source: Source, _promote: Option<u32>) -> Result<()> {
            std::thread::sleep(Duration::from_millis(if source == Source::File {
                self.cold_ms
            } else {
                self.switch_ms
            }));
            Ok(())
        }
        fn infer(&mut self, batch: &[Item<'_>]) -> Result<Vec<Vec<RowOutput>>> {
            std::thread::sleep(Duration::from_millis(self.infer_ms));
            Ok(batch.iter().map(|i| outputs(i.request.samples)).collect())
        }
    }

    fn outputs(rows: u32) -> Vec<RowOutput> {
        vec![
            RowOutput {
                shape: vec![1],
                values: vec![0.0],
            };
            rows as usize
        ]
    }

    fn sleepers(n: usize, cold_ms: u64, switch_ms: u64, infer_ms: u64) -> Vec<Box<dyn Executor>> {
        (0..n)
            .map(|_| {
                Box::new(Sleeper {
                    cold_ms,
                    switch_ms,
                    infer_ms,
                }) as Box<dyn Executor>
            })
            .collect()
    }

    /// The example profile with constant costs: cold load, switch, and a forward pass of one
    /// sample (FastPTM's 16 samples a request make an inference 16 × that).
    fn constant_profile(cold_ms: f64, switch_ms: f64, pass_ms: f64) -> Profile {
        let mut profile = Profile::example();
        let m = profile.models.get_mut("bert-base").unwrap();
        m.cold_load.ms = Dist::Constant(cold_ms);
        m.switch.split.ms = Dist::Constant(switch_ms);
        m.forward.points[0].ms = Dist::Constant(pass_ms);
        m.forward.stretch = vec![1.0];
        m.switch.split.stretch = vec![1.0];
        m.cold_load.stretch = vec![1.0];
        m.request_overhead_ms = Dist::Constant(0.0);
        profile
    }

    #[test]
    fn live_replay_follows_the_same_schedule_as_the_simulator() {
        let mut profile = Profile::example();
        let m = profile.models.get_mut("bert-base").unwrap();
        m.cold_load.ms = Dist::Constant(30.0);
        m.switch.split.ms = Dist::Constant(20.0);
        m.forward.points[0].ms = Dist::Constant(2.0); // 16 samples: 32 ms a request
        let spec = WorkloadSpec::Sequence {
            repeat: 4,
            types: 3,
            shuffle: true,
            gap_ms: 25.0,
        };
        let w =
            workload::build(&spec, &RequestDefaults::default(), "bert-base", 3, &NoFiles).unwrap();
        let serving = Serving {
            instances: 2,
            loading: LoadingMode::Split,
            forward_batch: 1,
            ..Serving::default()
        };
        let setup = Setup::new(&profile, "p", &w, serving).unwrap();
        let shape = Shape {
            instances: 2,
            tenants: 3,
        };
        for policy in ["fcfs-rr", "omls", "affinity"] {
            let mut s = scheduler::by_name(policy, &Default::default(), shape).unwrap();
            let sim = engine::simulate(&setup, s.as_mut(), 1, Default::default()).unwrap();
            let mut s = scheduler::by_name(policy, &Default::default(), shape).unwrap();
            let executors = sleepers(2, 30, 20, 32);
            let live = replay(&setup, s.as_mut(), executors, None, Preload::Policy).unwrap();
            let (a, b) = (
                Report::new("t", policy, 1, &setup, &sim),
                Report::new("t", policy, 1, &setup, &live),
            );
            assert_eq!(b.completed, w.requests.len(), "{policy}");
            if policy == "fcfs-rr" {
                // Round-robin decides without looking at time: the same loads in both worlds.
                // (The others may break near-ties differently on a loaded machine.)
                assert_eq!(a.switches + a.cold_loads, b.switches + b.cold_loads);
            }
            let err = (a.latency_ms.mean - b.latency_ms.mean).abs() / a.latency_ms.mean;
            assert!(
                err < 0.5,
                "{policy}: sim {} ms, live {} ms",
                a.latency_ms.mean,
                b.latency_ms.mean
            );
            let spans = live.timeline.as_ref().unwrap();
            assert_eq!(
                spans
                    .iter()
                    .filter(|s| s.kind == SpanKind::Inference)
                    .count(),
                w.requests.len()
            );
        }
    }

    /// A periodic policy whose instance frees between ticks after the last arrival, with
    /// requests still waiting, is not stalled: it decides at its next tick.
    #[test]
    fn a_periodic_policy_between_ticks_is_not_a_stall() {
        let profile = constant_profile(2.0, 2.0, 0.5);
        let spec = WorkloadSpec::Sequence {
            repeat: 3,
            types: 1,
            shuffle: false,
            gap_ms: 1.0,
        };
        let defaults = RequestDefaults {
            samples: 4,
            ..RequestDefaults::default()
        };
        let w = workload::build(&spec, &defaults, "bert-base", 1, &NoFiles).unwrap();
        let setup = Setup::new(
            &profile,
            "p",
            &w,
            Serving {
                instances: 1,
                ..Serving::default()
            },
        )
        .unwrap();
        let shape = Shape {
            instances: 1,
            tenants: 1,
        };
        let mut s = scheduler::by_name("omls", &Default::default(), shape).unwrap();
        let live = replay(
            &setup,
            s.as_mut(),
            sleepers(1, 2, 2, 2),
            None,
            Preload::Empty,
        )
        .unwrap();
        assert_eq!(live.end_ns.len(), 3);
        assert!(live.end_ns.iter().all(|&e| e > 0));
    }

    /// A trace that begins 1,000 s into its log (an imported production trace) is replayed
    /// from its first arrival: no real-time wait for the log's start, and the run's times are
    /// the workload's, as the simulator's are.
    #[test]
    fn a_trace_starting_late_is_replayed_from_its_first_arrival() {
        let profile = constant_profile(2.0, 2.0, 0.1);
        let mut w = workload(3, 5.0);
        let offset_ns = 1_000_000_000_000;
        for r in &mut w.requests {
            r.arrival_ns += offset_ns;
        }
        let serving = Serving {
            instances: 1,
            ..Serving::default()
        };
        let setup = Setup::new(&profile, "p", &w, serving).unwrap();
        let shape = Shape {
            instances: 1,
            tenants: 3,
        };
        let mut s = scheduler::by_name("fcfs-rr", &Default::default(), shape).unwrap();
        let t = std::time::Instant::now();
        let live = replay(
            &setup,
            s.as_mut(),
            sleepers(1, 2, 2, 2),
            None,
            Preload::Empty,
        )
        .unwrap();
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "waited for the log's start"
        );
        for (r, (&start, &end)) in w
            .requests
            .iter()
            .zip(live.start_ns.iter().zip(&live.end_ns))
        {
            assert!(start >= r.arrival_ns && end > start && end < offset_ns + 30_000_000_000);
        }
    }

    /// One setup for the ledger tests: `requests` requests over 3 tenants, one every `gap_ms`.
    /// Live mode books host copies in the shared ledger as the simulator does: a scheduler
    /// sees the copies queued on the copy engine in its `View`.
    #[test]
    fn live_schedulers_see_the_copies_queued_on_the_copy_engine() {
        struct Spy {
            inner: Box<dyn scheduler::Scheduler>,
            max_wait_ns: u64,
        }
        impl scheduler::Scheduler for Spy {
            fn name(&self) -> &'static str {
                "fcfs"
            }
            fn on_arrival(&mut self, id: RequestId, view: &scheduler::View<'_>) {
                self.max_wait_ns = self.max_wait_ns.max(view.copy_wait_ns());
                self.inner.on_arrival(id, view);
            }
            fn decide(&mut self, view: &scheduler::View<'_>, out: &mut scheduler::Decision) {
                self.max_wait_ns = self.max_wait_ns.max(view.copy_wait_ns());
                self.inner.decide(view, out);
            }
            fn preload(&self) -> Vec<Option<TenantId>> {
                vec![Some(2), Some(2)]
            }
        }
        // Both instances hold tenant 2; tenants 0 and 1 arrive at 0 and 10 ms and each needs a
        // 200 ms switch from the host; tenant 2's request at 20 ms finds both copies booked,
        // one behind the other: about 380 ms to go.
        let profile = constant_profile(5.0, 200.0, 0.1);
        let spec = WorkloadSpec::Sequence {
            repeat: 1,
            types: 3,
            shuffle: false,
            gap_ms: 10.0,
        };
        let w =
            workload::build(&spec, &RequestDefaults::default(), "bert-base", 1, &NoFiles).unwrap();
        let serving = Serving {
            instances: 2,
            loading: LoadingMode::Split,
            ..Serving::default()
        };
        let setup = Setup::new(&profile, "p", &w, serving).unwrap();
        let shape = Shape {
            instances: 2,
            tenants: 3,
        };
        let mut spy = Spy {
            inner: scheduler::by_name("fcfs", &Default::default(), shape).unwrap(),
            max_wait_ns: 0,
        };
        let live = replay(
            &setup,
            &mut spy,
            sleepers(2, 5, 200, 1),
            None,
            Preload::Policy,
        )
        .unwrap();
        // Tenant 2's request waits for an instance and switches too.
        assert_eq!(
            live.load
                .iter()
                .filter(|&&l| l == ptm_sim::ledger::Load::Switch)
                .count(),
            3
        );
        assert!(
            spy.max_wait_ns > 200_000_000,
            "two 200 ms copies queued, seen: {} ns",
            spy.max_wait_ns
        );
    }

    fn workload(requests: u32, gap_ms: f64) -> workload::Workload {
        let spec = WorkloadSpec::Sequence {
            repeat: (requests / 3) as usize,
            types: 3,
            shuffle: true,
            gap_ms,
        };
        workload::build(&spec, &RequestDefaults::default(), "bert-base", 5, &NoFiles).unwrap()
    }

    #[test]
    fn live_and_simulated_dispatch_the_same_sequence_through_the_ledger() {
        // Constant costs, equal in the profile and the executors: 120 ms cold load, 80 ms
        // switch, 16 × 8 ms inference; arrivals 180 ms apart, so that every event is at least
        // 40 ms from any other and the wall clock's jitter cannot reorder them (at half these
        // figures a loaded 2-core machine once overslept a 20 ms margin).
        let profile = constant_profile(120.0, 80.0, 8.0);
        let w = workload(9, 180.0);
        let serving = Serving {
            instances: 2,
            loading: LoadingMode::Split,
            forward_batch: 1,
            ..Serving::default()
        };
        let setup = Setup::new(&profile, "p", &w, serving).unwrap();
        let shape = Shape {
            instances: 2,
            tenants: 3,
        };
        for policy in ["fcfs-rr", "fcfs", "edf", "affinity"] {
            let mut s = scheduler::by_name(policy, &Default::default(), shape).unwrap();
            let sim = engine::simulate(&setup, s.as_mut(), 1, Default::default()).unwrap();
            let mut s = scheduler::by_name(policy, &Default::default(), shape).unwrap();
            let live = replay(
                &setup,
                s.as_mut(),
                sleepers(2, 120, 80, 128),
                None,
                Preload::Policy,
            )
            .unwrap();
            assert_eq!(
                live.served_by, sim.served_by,
                "{policy}: which instance ran each request"
            );
            assert_eq!(
                live.load, sim.load,
                "{policy}: the load each dispatch needed"
            );
            assert_eq!(live.tenant_loads, sim.tenant_loads, "{policy}");
            let order = |run: &Run| {
                let mut ids: Vec<usize> = (0..run.start_ns.len()).collect();
                ids.sort_by_key(|&i| (run.start_ns[i], i));
                ids
            };
            assert_eq!(order(&live), order(&sim), "{policy}: the dispatch order");
        }
    }

    #[test]
    fn tiers_and_batches_book_alike_live_and_simulated() {
        // A pool of 2 slots for 3 tenants (evictions), batches of up to 32 rows (2 requests
        // of 16), a 0.5 ms pool load; arrivals in pairs 60 ms apart so that batches form.
        let mut profile = constant_profile(30.0, 20.0, 1.0);
        let m = profile.models.get_mut("bert-base").unwrap();
        m.pool_switch = Some(ptm_sim::profile::Cost::flat(Dist::Constant(5.0)));
        let spec = WorkloadSpec::Sequence {
            repeat: 4,
            types: 3,
            shuffle: true,
            gap_ms: 30.0,
        };
        let mut w =
            workload::build(&spec, &RequestDefaults::default(), "bert-base", 5, &NoFiles).unwrap();
        for (i, r) in w.requests.iter_mut().enumerate() {
            // Pairs of one tenant arriving together.
            r.arrival_ns = (i as u64 / 2) * 60_000_000;
            r.tenant = [0, 1, 0, 2, 0, 1][(i / 2) % 6];
        }
        let serving = Serving {
            instances: 1,
            forward_batch: 32,
            gpu_pool: Some(ptm_sim::ledger::Capacity::Tenants(2)),
            batching: Some(ptm_sim::engine::Batching { max_wait_ms: 0.0 }),
            ..Serving::default()
        };
        let setup = Setup::new(&profile, "p", &w, serving).unwrap();
        let shape = Shape {
            instances: 1,
            tenants: 3,
        };
        let mut s = scheduler::by_name("fcfs", &Default::default(), shape).unwrap();
        let sim = engine::simulate(&setup, s.as_mut(), 1, Default::default()).unwrap();
        let mut s = scheduler::by_name("fcfs", &Default::default(), shape).unwrap();
        // Inference of a batch of 2 × 16 rows: 32 × 1 ms (the example's linear table).
        let executors = vec![Box::new(Sleeper {
            cold_ms: 30,
            switch_ms: 20,
            infer_ms: 32,
        }) as Box<dyn Executor>];
        let live = replay(&setup, s.as_mut(), executors, None, Preload::Empty).unwrap();
        assert!(
            sim.load.contains(&ptm_sim::ledger::Load::Pool),
            "{:?}",
            sim.load
        );
        assert!(sim.pool_evictions > 0);
        assert_eq!(live.load, sim.load, "loads by tier");
        assert_eq!(live.batch, sim.batch, "batch membership");
        assert_eq!(live.pool_evictions, sim.pool_evictions);
    }

    /// Answers no rows for one request: a lost answer.
    struct Dropper {
        inner: Sleeper,
        drop_request: RequestId,
        seen: RequestId,
    }

    impl Executor for Dropper {
        fn load(&mut self, tenant: TenantId, source: Source, promote: Option<u32>) -> Result<()> {
            self.inner.load(tenant, source, promote)
        }
        fn infer(&mut self, batch: &[Item<'_>]) -> Result<Vec<Vec<RowOutput>>> {
            let mut out = self.inner.infer(batch)?;
            self.seen += 1;
            if self.seen == self.drop_request {
                out[0].clear();
            }
            Ok(out)
        }
    }

    /// Panics on its second request.
    struct Crasher(u32);

    impl Executor for Crasher {
        fn load(
            &mut self,
            _tenant: TenantId,
            _source: Source,
            _promote: Option<u32>,
        ) -> Result<()> {
            Ok(())
        }
        fn infer(&mut self, batch: &[Item<'_>]) -> Result<Vec<Vec<RowOutput>>> {
            self.0 += 1;
            if self.0 == 2 {
                panic!("a faulty executor");
            }
            Ok(batch.iter().map(|i| outputs(i.request.samples)).collect())
        }
    }

    #[test]
    fn a_faulty_executor_makes_the_replay_fail_naming_the_instance_and_request() {
        let profile = constant_profile(2.0, 1.0, 0.1);
        let w = workload(6, 5.0);
        let serving = Serving {
            instances: 1,
            loading: LoadingMode::Split,
            forward_batch: 1,
            ..Serving::default()
        };
        let setup = Setup::new(&profile, "p", &w, serving).unwrap();
        let shape = Shape {
            instances: 1,
            tenants: 3,
        };
        let mut s = scheduler::by_name("fcfs", &Default::default(), shape).unwrap();
        let dropper: Box<dyn Executor> = Box::new(Dropper {
            inner: Sleeper {
                cold_ms: 2,
                switch_ms: 1,
                infer_ms: 1,
            },
            drop_request: 3,
            seen: 0,
        });
        let err = replay(&setup, s.as_mut(), vec![dropper], None, Preload::Empty)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("instance 0") && err.contains("request 2") && err.contains("0 of 16 rows"),
            "{err}"
        );
        let mut s = scheduler::by_name("fcfs", &Default::default(), shape).unwrap();
        let err = replay(
            &setup,
            s.as_mut(),
            vec![Box::new(Crasher(0))],
            None,
            Preload::Empty,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("instance 0") && err.contains("request 1") && err.contains("panicked"),
            "{err}"
        );
    }
}
