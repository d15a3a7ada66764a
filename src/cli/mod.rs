//! Subcommands of `ptm`, one module each.

pub mod bench;
pub mod infer;
pub mod zoo;
