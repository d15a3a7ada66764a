//! How a CPU thread waits for the GPU: the scheduling flag of the device's primary context
//! (`CU_CTX_SCHED_*`), set once per process before the context is first used.
//!
//! The driver's default (`auto`) spins while waiting when the process has fewer contexts than
//! logical processors — the lowest latency for one waiter, but every executor of a server then
//! holds a core busy while its passes run, cores its HTTP threads, tokenizer and load clients
//! also want. `block` sleeps on an OS primitive instead (a wake-up costs latency, frees the
//! core); `yield` spins but yields its time slice. Which serves more is measured, not assumed
//! (`runtime/bench/device-round2.sh h`).

use std::fmt;
use std::str::FromStr;

/// The wait of a CPU thread on the GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HostSync {
    /// The driver's heuristic (spins with fewer contexts than logical processors).
    #[default]
    Auto,
    /// Spin.
    Spin,
    /// Spin, yielding the time slice.
    Yield,
    /// Sleep on an OS synchronization primitive.
    Block,
}

impl HostSync {
    /// Every mode, in the order `--help` lists them.
    pub const ALL: [HostSync; 4] = [
        HostSync::Auto,
        HostSync::Spin,
        HostSync::Yield,
        HostSync::Block,
    ];

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            HostSync::Auto => "auto",
            HostSync::Spin => "spin",
            HostSync::Yield => "yield",
            HostSync::Block => "block",
        }
    }

    /// The driver's `CU_CTX_SCHED_*` flag (cuda.h: AUTO 0, SPIN 1, YIELD 2, BLOCKING_SYNC 4).
    pub fn ctx_flag(self) -> u32 {
        match self {
            HostSync::Auto => 0,
            HostSync::Spin => 1,
            HostSync::Yield => 2,
            HostSync::Block => 4,
        }
    }
}

impl fmt::Display for HostSync {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for HostSync {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        HostSync::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| format!("expected auto, spin, yield or block, got {s:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_flags_are_the_drivers() {
        for m in HostSync::ALL {
            assert_eq!(m.name().parse::<HostSync>(), Ok(m));
            assert_eq!(m.to_string().to_uppercase().parse::<HostSync>(), Ok(m));
        }
        assert_eq!(
            HostSync::ALL.map(HostSync::ctx_flag),
            [0, 1, 2, 4],
            "CU_CTX_SCHED_AUTO, _SPIN, _YIELD, _BLOCKING_SYNC"
        );
        assert!("busy".parse::<HostSync>().unwrap_err().contains("block"));
    }
}
