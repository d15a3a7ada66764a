//! The example profile with contention figures, for the integration tests of the simulator's
//! resource model (`contention.rs`, `pool_copy.rs`).

use ptm_sim::profile::{Contention, Profile, Sharing};

/// The example profile (4 ms forwards at batch 1, 2.5 ms pool loads, 100 ms switches, 1 s cold
/// loads) with contention figures: SMs shared by `sm` (passes of 128 tokens), copies FIFO, cold
/// loads shared, no cross factors.
pub fn shared_profile(sm: Vec<f64>) -> Profile {
    let mut p = Profile::example();
    let m = p
        .models
        .get_mut("bert-base")
        .expect("the example profile has bert-base");
    m.contention = Some(Contention {
        sm: Sharing::Shared(sm),
        sm_tokens: 128,
        sm_large: None,
        sm_sizes: Vec::new(),
        link: Sharing::Fifo,
        host: Sharing::Shared(vec![1.0, 1.5]),
        forward_during_copy: 1.0,
        copy_during_forward: 1.0,
        copy_during_forward_sizes: Vec::new(),
        link_occupancy: None,
    });
    p
}
