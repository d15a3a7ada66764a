//! Live mode of ptm: the simulator's schedulers drive real executors on the wall clock.
//!
//! The same [`ptm_sim::scheduler::Scheduler`] code that decides in the simulator decides here.
//! A [`Core`] (owned by one coordinating thread) holds the scheduler and the instances' state;
//! each instance is a worker thread owning an [`Executor`]: on the runtime, a switching slot
//! ([`slot::SlotExecutor`]). Two drivers use the core:
//!
//! - [`replay`] releases a scenario's workload at its trace times and returns the simulator's
//!   `Run`, so the same report code summarises it; [`fidelity`] replays every cell of a
//!   scenario and compares it with the simulation of the same cell;
//! - [`serve`] feeds it requests as they come over HTTP/JSON on loopback.

pub mod coordinator;
pub mod error;
pub mod executor;
pub mod fidelity;
pub mod fleet;
pub mod latch;
pub mod load;
pub mod pet;
pub mod replay;
pub mod serve;
pub mod slot;

pub use coordinator::{Core, CoreOptions, Msg, Refusal, Reply, Rows, Served};
pub use error::{Error, Result};
pub use executor::{Executor, RowOutput};
pub use replay::replay;
