//! The element-wise functions applied after a bias: the feed-forward activation a
//! `config.json` names (`hidden_act`), the pooler's tanh, and none. One definition for the CPU
//! reference and the GPU kernels: the kernels are compiled with the `ACT_*` constants that
//! [`Activation::cuda_definitions`] writes from this enum, and decode them in one device
//! function (`activate` in `gpu/kernels.cu`).

use crate::error::{Error, Result};

/// An element-wise function; the discriminant is the code the GPU kernels receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum Activation {
    /// `x` (a bias alone).
    Identity = 0,
    /// Exact GELU, `x/2 (1 + erf(x/√2))` (HF `gelu`).
    GeluErf = 1,
    /// The tanh approximation of GELU (HF `gelu_new`, `gelu_pytorch_tanh`, `gelu_fast`).
    GeluTanh = 2,
    /// ReLU.
    Relu = 3,
    /// tanh (the sequence-classification pooler).
    Tanh = 4,
}

impl Activation {
    /// Every activation, in code order.
    pub const ALL: [Activation; 5] = [
        Activation::Identity,
        Activation::GeluErf,
        Activation::GeluTanh,
        Activation::Relu,
        Activation::Tanh,
    ];

    /// The feed-forward activation a `config.json`'s `hidden_act` names.
    pub fn from_hidden_act(name: &str) -> Result<Self> {
        match name {
            "gelu" => Ok(Activation::GeluErf),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Ok(Activation::GeluTanh),
            "relu" => Ok(Activation::Relu),
            other => Err(Error::BadOption {
                what: "hidden_act",
                value: other.to_string(),
                expected: "gelu, gelu_new, gelu_pytorch_tanh, gelu_fast or relu",
            }),
        }
    }

    /// The code a kernel receives (the enum's discriminant).
    pub fn code(self) -> i32 {
        self as i32
    }

    /// The name of the kernels' constant for this activation, e.g. `ACT_GELU_ERF`.
    pub fn cuda_name(self) -> &'static str {
        match self {
            Activation::Identity => "ACT_IDENTITY",
            Activation::GeluErf => "ACT_GELU_ERF",
            Activation::GeluTanh => "ACT_GELU_TANH",
            Activation::Relu => "ACT_RELU",
            Activation::Tanh => "ACT_TANH",
        }
    }

    /// The kernels' constants, one `#define` per activation, prepended to `kernels.cu`.
    pub fn cuda_definitions() -> String {
        Activation::ALL
            .iter()
            .map(|a| format!("#define {} {}\n", a.cuda_name(), a.code()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_in_order() {
        for (i, a) in Activation::ALL.iter().enumerate() {
            assert_eq!(a.code(), i as i32);
        }
        let defs = Activation::cuda_definitions();
        assert!(defs.contains("#define ACT_IDENTITY 0\n"), "{defs}");
        assert!(defs.contains("#define ACT_TANH 4\n"), "{defs}");
        assert_eq!(defs.lines().count(), Activation::ALL.len());
    }

    #[test]
    fn hidden_act_names_map_and_unknown_ones_are_named() {
        assert_eq!(
            Activation::from_hidden_act("gelu").unwrap(),
            Activation::GeluErf
        );
        assert_eq!(
            Activation::from_hidden_act("gelu_pytorch_tanh").unwrap(),
            Activation::GeluTanh
        );
        let e = Activation::from_hidden_act("swish")
            .unwrap_err()
            .to_string();
        assert!(e.contains("swish") && e.contains("gelu"), "{e}");
    }
}
