//! Calibration: measures a GPU with the real runtime and writes the simulator's profile.
//!
//! Not built yet: until it is, profiles are written by hand from published measurements
//! (see `scenarios/profiles/`). The README's status table says what works today.
