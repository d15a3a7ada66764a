//! # ptm-sim — a deterministic simulator of many fine-tuned models sharing one GPU
//!
//! A provider serves hundreds to thousands of fine-tuned variants ("tenants") of a few
//! pre-trained encoders. One GPU runs `m` parallel *instances*; each holds one tenant's weights.
//! A request for another tenant costs a *switch* (a weight load) first, and an instance's very
//! first load is a *cold load*. A [`scheduler::Scheduler`] decides which waiting request each
//! idle instance starts. This crate replays a workload through a scheduler against costs taken
//! from a measured [`profile::Profile`] and reports exactly what happened.
//!
//! ## How a run goes
//!
//! 1. A [`scenario::Scenario`] (a `ron` file) names the workload, the profile, the number of
//!    instances, the loading mode, the policies and the seeds.
//! 2. [`workload`] turns the workload spec into a sorted list of [`workload::Request`]s: a
//!    FastPTM trace, a user's CSV/JSONL log, or a seeded generator.
//! 3. [`engine::simulate`] runs the discrete-event loop for one (policy, seed) cell.
//! 4. [`metrics::Report`] summarises it: throughput, switches, overtimes, latency percentiles.
//!
//! ## Time and determinism
//!
//! Time is integer nanoseconds ([`time::Nanos`]). Events at the same instant are handled in a
//! fixed order: arrivals first (in trace order), then phase completions (in the order they were
//! scheduled), then the scheduler's periodic tick; the scheduler then decides once, seeing the
//! whole instant. Every random draw comes from a stream seeded by the scenario seed and the
//! subsystem ([`rng::Stream`]), and service-time noise is keyed by request id, so two policies
//! replaying one workload see the same inference times (common random numbers). No hash-map
//! iteration decides anything. Same scenario and seed ⇒ byte-identical report.
//!
//! ```
//! use ptm_sim::{engine, metrics::Report, profile::Profile, scheduler, workload};
//!
//! let profile = Profile::example();
//! let spec: workload::WorkloadSpec =
//!     ron::from_str("Sequence(repeat: 2, types: 3, shuffle: false, gap_ms: 100.0)").unwrap();
//! let load = workload::build(&spec, &Default::default(), "bert-base", 7, &workload::NoFiles).unwrap();
//! let serving = engine::Serving { instances: 2, forward_batch: 1, ..Default::default() };
//! let setup = engine::Setup::new(&profile, "example", &load, serving).unwrap();
//! let shape = scheduler::Shape { instances: 2, tenants: load.tenants.len() };
//! let mut policy = scheduler::by_name("fcfs-rr", &Default::default(), shape).unwrap();
//! let run = engine::simulate(&setup, policy.as_mut(), 7, Default::default()).unwrap();
//! let report = Report::new("doc", "fcfs-rr", 7, &setup, &run);
//! assert_eq!(report.completed, 6);
//! assert_eq!(report.cold_loads, 2); // each instance's first load
//! //! ```

pub mod capacity;
pub mod compare;
pub mod engine;
pub mod error;
pub mod estimates;
pub mod fidelity;
pub mod ledger;
pub mod limits;
pub mod metrics;
pub mod offered;
pub mod plan;
pub mod profile;
pub mod record;
pub mod resimulate;
pub mod rng;
pub mod scenario;
pub mod scheduler;
pub mod sweep;
pub mod time;
pub mod workload;

pub use error::{Error, Result};
