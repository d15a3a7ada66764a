//! `ptm`: the command-line interface (placeholder while the workspace is set up).
fn main() {}
