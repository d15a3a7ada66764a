//! Helpers shared by the runtime's numeric tests (`gpu_equals_cpu`, `half_error_budget`,
//! `pet_gpu`).
// Each test binary uses its own subset.
#![allow(dead_code)]

use ptm_runtime::{Batch, Config};
use rand::{Rng, SeedableRng};

/// ‖a − b‖ / ‖b‖ over the whole slice.
pub fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum();
    let den: f64 = b.iter().map(|y| f64::from(*y).powi(2)).sum();
    (num / den.max(1e-30)).sqrt()
}

/// A batch of `lengths.len()` rows with seeded random ids, padded to the longest.
pub fn batch(cfg: &Config, lengths: &[usize], seed: u64) -> Batch {
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
    let rows: Vec<Vec<u32>> = lengths
        .iter()
        .map(|&n| {
            (0..n)
                .map(|_| rng.random_range(1..cfg.vocab_size as u32))
                .collect()
        })
        .collect();
    Batch::from_rows(&rows, cfg.pad_token_id, None).expect("batch")
}
