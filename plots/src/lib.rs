//! Charts of simulator reports (throughput, overtimes and switches against load, latency CDFs,
//! per-instance timelines).
//!
//! Not built yet: the README's status table says what works today.
