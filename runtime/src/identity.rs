//! This runtime's identity, recorded in the profiles it measures and compared by `ptm profile
//! check`: the crate version and a build identity (a content hash of the runtime's sources,
//! computed at build time by `build.rs`).

/// The runtime crate's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The build identity: 16 hex digits of a 64-bit FNV-1a hash over the runtime crate's sources
/// (`Cargo.toml`, `build.rs`, everything under `src/`), the same for the same sources on any
/// machine.
pub const BUILD: &str = env!("PTM_RUNTIME_BUILD");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_build_is_sixteen_hex_digits() {
        assert_eq!(BUILD.len(), 16);
        assert!(BUILD.chars().all(|c| c.is_ascii_hexdigit()), "{BUILD}");
        assert!(!VERSION.is_empty());
    }
}
