//! Live replay: a workload's arrivals released at their trace times into the [`Core`], on real
//! executors; the result is the simulator's [`Run`], so it is reported by the same code.

use crate::coordinator::{Core, Msg};
use crate::executor::Executor;
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
/// instance), returning what happened (request ids as in the workload).
pub fn replay(
    setup: &Setup<'_>,
    scheduler: &mut dyn Scheduler,
    executors: Vec<Box<dyn Executor>>,
    preload: Preload,
) -> anyhow::Result<Run> {
    let workload = &setup.workload.requests;
    let (tx, rx) = mpsc::channel::<Msg>();
    std::thread::scope(|scope| {
        let mut core = Core::start(scope, setup, scheduler, executors, preload, &tx)?;
        drop(tx);
        let mut released = 0;
        while core.completed < workload.len() {
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
                None => Some(rx.recv()?),
            };
            let mut changed = false;
            for msg in first.into_iter().chain(rx.try_iter()) {
                changed |= core.worker(msg)?;
            }
            let now = core.now();
            while released < workload.len() && workload[released].arrival_ns <= now {
                core.arrive(workload[released], None, None);
                released += 1;
                changed = true;
            }
            core.decide(changed, released < workload.len())?;
        }
        let run = std::mem::take(&mut core.run);
        Ok(run)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::RowOutput;
    use ptm_sim::engine::{self, LoadingMode, Serving, SpanKind};
    use ptm_sim::metrics::Report;
    use ptm_sim::profile::{Dist, Profile};
    use ptm_sim::scheduler::{self, Shape};
    use ptm_sim::workload::{self, NoFiles, RequestDefaults, WorkloadSpec};
    use ptm_sim::workload::{Request, TenantId};

    /// Sleeps for the example profile's costs.
    struct Sleeper {
        cold_ms: u64,
        switch_ms: u64,
        infer_ms: u64,
    }

    impl Executor for Sleeper {
        fn load(&mut self, _tenant: TenantId, cold: bool) -> Result<(), String> {
            std::thread::sleep(Duration::from_millis(if cold {
                self.cold_ms
            } else {
                self.switch_ms
            }));
            Ok(())
        }
        fn infer(
            &mut self,
            _request: &Request,
            _rows: Option<&[Vec<u32>]>,
        ) -> Result<Vec<RowOutput>, String> {
            std::thread::sleep(Duration::from_millis(self.infer_ms));
            Ok(Vec::new())
        }
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
            let executors: Vec<Box<dyn Executor>> = (0..2)
                .map(|_| {
                    Box::new(Sleeper {
                        cold_ms: 30,
                        switch_ms: 20,
                        infer_ms: 32,
                    }) as Box<dyn Executor>
                })
                .collect();
            let live = replay(&setup, s.as_mut(), executors, Preload::Policy).unwrap();
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
}
