//! `ptm profile refit`: a profile's fitted figures made again with this build's estimators
//! from what the profile recorded, without the device.
//!
//! A profile keeps, for each calibrated cost, the summary of its repeats (`measured`: the
//! median, mean, standard deviation, tail percentiles), not the repeats themselves. What can be
//! made again from that:
//! - **centre**: the robust fit ([`crate::stats`]) centres a cost on its sample median; a
//!   refit moves each fitted distribution's centre (a log-normal's median, a normal's mean, a
//!   constant) to the recorded `median_ms`. Its spread is kept as fitted: the median absolute
//!   deviation the robust fit would take needs the repeats, which older profiles do not hold
//!   (the kept spread is the maximum-likelihood one, never narrower than the robust one for a
//!   sample with a slow tail). Figures without `measured` (the host overhead, the contention
//!   factors) are left as they are.
//! - **link occupancy**: where the copy engine was measured FIFO and the profile does not give
//!   `link_occupancy`, it is taken from the host-cache switch's stretch curve (median latency
//!   of `k` switches started at once over one alone; for a FIFO link of latency `L` and link
//!   time `X` per copy the median of `k` ends at `L + (k + 1)/2·X`, so `stretch[k-1] = 1 +
//!   (k − 1)/2·o`): `o` is twice the curve's least-squares slope through `(1, 1)`
//!   ([`occupancy_from_median_curve`]). A fresh calibration measures it from the last-finish
//!   curve instead ([`crate::contention::fifo_occupancy`]).

use crate::contention::fifo_occupancy;
use ptm_sim::profile::{Cost, Dist, Profile, Sharing};

/// The link occupancy `o` of a FIFO copy engine from a median-latency stretch curve (see the
/// module doc); `None` when the curve has fewer than two points or no positive slope.
pub fn occupancy_from_median_curve(stretch: &[f64]) -> Option<f64> {
    // stretch[k-1] − 1 = (k − 1)·o/2: the last-finish form `1 + (k − 1)·o` is 1 + 2(s − 1).
    let last: Vec<f64> = stretch.iter().map(|s| 1.0 + 2.0 * (s - 1.0)).collect();
    fifo_occupancy(&last)
}

/// `dist` moved to centre on `median_ms`, its spread kept; `None` when it has no centre to move
/// (an empirical distribution) or the median is not a valid duration.
fn recentred(dist: &Dist, median_ms: f64) -> Option<Dist> {
    if !(median_ms.is_finite() && median_ms > 0.0) {
        return None;
    }
    match dist {
        Dist::Constant(_) => Some(Dist::Constant(median_ms)),
        Dist::Normal { std, .. } => Some(Dist::Normal {
            mean: median_ms,
            std: *std,
        }),
        Dist::LogNormal { sigma, .. } => Some(Dist::LogNormal {
            median: median_ms,
            sigma: *sigma,
        }),
        Dist::Empirical(_) => None,
    }
}

fn refit_dist(dist: &mut Dist, median_ms: Option<f64>, what: String, notes: &mut Vec<String>) {
    let Some(new) = median_ms.and_then(|m| recentred(dist, m)) else {
        return;
    };
    if &new != dist {
        notes.push(format!(
            "{what}: mean {:.6} → {:.6} ms (centred on the sample median)",
            dist.mean(),
            new.mean()
        ));
        *dist = new;
    }
}

fn refit_cost(cost: &mut Cost, what: String, notes: &mut Vec<String>) {
    let median = cost.measured.as_ref().map(|m| m.median_ms);
    refit_dist(&mut cost.ms, median, what, notes);
}

/// Refits `profile` in place (see the module doc); returns one line per figure changed.
pub fn refit(profile: &mut Profile) -> Vec<String> {
    let mut notes = Vec::new();
    for (name, m) in profile.models.iter_mut() {
        refit_cost(&mut m.cold_load, format!("{name} cold load"), &mut notes);
        refit_cost(
            &mut m.switch.split,
            format!("{name} switch split"),
            &mut notes,
        );
        refit_cost(
            &mut m.switch.full,
            format!("{name} switch full"),
            &mut notes,
        );
        if let Some(c) = &mut m.switch.fastptm {
            refit_cost(c, format!("{name} switch fastptm"), &mut notes);
        }
        if let Some(c) = &mut m.pool_switch {
            refit_cost(c, format!("{name} pool switch"), &mut notes);
        }
        for p in &mut m.forward.points {
            let median = p.measured.as_ref().map(|s| s.median_ms);
            let what = format!("{name} forward b{} s{}", p.batch, p.seq_len);
            refit_dist(&mut p.ms, median, what, &mut notes);
        }
        for (key, pet) in m.pet.iter_mut() {
            refit_cost(
                &mut pet.load_host,
                format!("{name} pet {key} load host"),
                &mut notes,
            );
            refit_cost(
                &mut pet.load_file,
                format!("{name} pet {key} load file"),
                &mut notes,
            );
        }
        if let Some(c) = &mut m.contention {
            if c.link == Sharing::Fifo && c.link_occupancy.is_none() {
                if let Some(o) = occupancy_from_median_curve(&m.switch.split.stretch) {
                    notes.push(format!(
                        "{name} contention link_occupancy: {o:.4} (from the host-cache switch's FIFO stretch curve)"
                    ));
                    c.link_occupancy = Some(o);
                }
            }
        }
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn occupancy_from_a_fifo_median_curve() {
        // Latency 0.12 ms, 4.05 on the link: the median of k ends at 0.12 + (k + 1)/2·4.05.
        let alone = 4.17;
        let curve: Vec<f64> = (1..=8)
            .map(|k| (0.12 + (k as f64 + 1.0) / 2.0 * 4.05) / alone)
            .collect();
        let o = occupancy_from_median_curve(&curve).unwrap();
        assert!((o - 4.05 / alone).abs() < 1e-12, "{o}");
        assert_eq!(occupancy_from_median_curve(&[1.0]), None);
        assert_eq!(occupancy_from_median_curve(&[]), None);
    }

    #[test]
    fn recentring_keeps_the_spread_and_refuses_what_has_no_centre() {
        let d = Dist::LogNormal {
            median: 4.2457,
            sigma: 0.054,
        };
        assert_eq!(
            recentred(&d, 4.1716),
            Some(Dist::LogNormal {
                median: 4.1716,
                sigma: 0.054
            })
        );
        let n = Dist::Normal {
            mean: 18.45,
            std: 1.6,
        };
        assert_eq!(
            recentred(&n, 19.29),
            Some(Dist::Normal {
                mean: 19.29,
                std: 1.6
            })
        );
        assert_eq!(
            recentred(&Dist::Constant(1.0), 2.0),
            Some(Dist::Constant(2.0))
        );
        assert_eq!(recentred(&n, f64::NAN), None);
        assert_eq!(recentred(&n, 0.0), None);
        assert_eq!(
            recentred(&Dist::Empirical(vec![(0.0, 1.0), (100.0, 2.0)]), 1.5),
            None
        );
    }
}
