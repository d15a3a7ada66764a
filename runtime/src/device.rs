//! Where a model runs: `cpu`, or `cuda` / `cuda:N`.

use crate::error::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// A compute device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    /// candle on the CPU.
    #[default]
    Cpu,
    /// The cudarc backend on GPU `N`.
    Cuda(usize),
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl FromStr for Device {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::BadOption {
            what: "device",
            value: s.to_string(),
            expected: "cpu, cuda or cuda:N",
        };
        match s {
            "cpu" => Ok(Device::Cpu),
            "cuda" | "gpu" => Ok(Device::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Device::Cuda)
                .ok_or_else(bad),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        assert_eq!("cuda:3".parse::<Device>().unwrap(), Device::Cuda(3));
        assert_eq!("cpu".parse::<Device>().unwrap(), Device::Cpu);
        assert!("tpu"
            .parse::<Device>()
            .unwrap_err()
            .to_string()
            .contains("tpu"));
    }
}
