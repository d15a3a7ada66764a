//! Shutdown past the grace period: requests admitted but still waiting for (or running on) a
//! slow instance when the grace period ends are refused with 503 (counted as abandoned), and
//! the server returns once the running inference ends, not after the queue.

use ptm_live::executor::{Executor, Item, RowOutput, Source};
use ptm_live::serve::{serve_with, Hooks, HttpOptions, ServeOptions, Stop};
use ptm_runtime::zoo::{make_zoo, Arch};
use ptm_runtime::{DType, Device};
use ptm_sim::profile::{Dist, Profile};
use ptm_sim::workload::TenantId;
use std::time::{Duration, Instant};

/// An instance whose inferences take 400 ms (and the profile says so).
struct Slow;

impl Executor for Slow {
    fn load(&mut self, _: TenantId, _: Source, _: Option<u32>) -> ptm_live::Result<()> {
        Ok(())
    }
    fn infer(&mut self, batch: &[Item<'_>]) -> ptm_live::Result<Vec<Vec<RowOutput>>> {
        std::thread::sleep(Duration::from_millis(400));
        Ok(batch
            .iter()
            .map(|item| {
                vec![
                    RowOutput {
                        shape: vec![1],
                        values: vec![0.0],
                    };
                    item.rows.map_or(0, <[_]>::len)
                ]
            })
            .collect())
    }
}

#[test]
fn requests_still_waiting_when_the_grace_period_ends_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    make_zoo(Arch::Tiny, 2, dir.path(), DType::Fp32, 3).unwrap();
    let mut profile = Profile::example();
    let m = profile.models.get_mut("bert-base").unwrap();
    m.cold_load.ms = Dist::Constant(0.0);
    m.forward.points[0].ms = Dist::Constant(400.0);
    let grace = Duration::from_millis(300);
    let options = ServeOptions {
        gpu_sync: Default::default(),
        kernel_options: Default::default(),
        listen: "127.0.0.1:0".parse().unwrap(),
        zoo: dir.path().to_path_buf(),
        device: Device::Cpu,
        dtype: DType::Fp32,
        policy: "fcfs-rr".into(),
        instances: 1,
        forward_batch: 8,
        gpu_pool: None,
        eviction: Default::default(),
        batching: None,
        // The example profile describes no zoo: the check would refuse it.
        allow_profile_mismatch: true,
        queue: 64,
        deadline_ms: 3000.0,
        profile: Some((profile, "slow".into(), "bert-base".into())),
        http: HttpOptions {
            grace,
            ..HttpOptions::default()
        },
        token: None,
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let hooks = Hooks {
        executors: Some(vec![Box::new(Slow)]),
        stop: Stop::Channel(stop_rx),
        listening: Some(addr_tx),
    };
    let server = std::thread::spawn(move || serve_with(options, hooks));
    let base = format!(
        "http://{}",
        addr_rx.recv_timeout(Duration::from_secs(60)).unwrap()
    );
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    let post = |agent: &ureq::Agent| {
        let body = serde_json::json!({"tenant": "tiny-t000", "token_ids": [[101, 7, 102]]});
        let mut r = agent
            .post(&format!("{base}/v1/infer"))
            .content_type("application/json")
            .send(&body.to_string())
            .unwrap();
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
    };
    // One request first, so that its service time is measured.
    assert_eq!(post(&agent).0, 200);
    let (answers, took) = std::thread::scope(|scope| {
        // Four more of 400 ms on one instance: 1.6 s of work, all admitted; the stop comes
        // 200 ms later and the grace period ends while one runs and two wait.
        let clients: Vec<_> = (0..4)
            .map(|_| {
                let agent = agent.clone();
                scope.spawn(move || post(&agent))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        let t = Instant::now();
        stop_tx.send(()).unwrap();
        let metrics = server.join().unwrap().unwrap();
        let took = t.elapsed();
        let answers: Vec<(u16, String)> = clients.into_iter().map(|h| h.join().unwrap()).collect();
        ((answers, metrics), took)
    });
    let (answers, metrics) = answers;
    // The grace period, then the inference running at its end (400 ms), then a margin.
    assert!(took < grace + Duration::from_secs(5), "{took:?}");
    let refused: Vec<_> = answers
        .iter()
        .filter(|(s, b)| *s == 503 && b.contains("grace period ended"))
        .collect();
    assert!(refused.len() >= 2, "{answers:?}");
    assert!(
        answers.iter().all(|(s, _)| [200, 429, 503].contains(s)),
        "{answers:?}"
    );
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(metrics.abandoned.load(Relaxed), refused.len() as u64);
    assert_eq!(
        metrics.accepted.load(Relaxed),
        metrics.completed.load(Relaxed) + metrics.abandoned.load(Relaxed),
        "{answers:?}"
    );
    assert_eq!(
        metrics.responses(0, 503),
        answers.iter().filter(|(s, _)| *s == 503).count() as u64
    );
    assert_eq!(
        metrics.responses(0, 200),
        1 + answers.iter().filter(|(s, _)| *s == 200).count() as u64
    );
}
