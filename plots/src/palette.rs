//! Colours: one per policy, the same in every figure; one per timeline phase.

use plotters::style::RGBColor;
use ptm_sim::scheduler::POLICIES;

/// Colours of the known policies, in the order of [`POLICIES`] (Tableau 10).
const POLICY_COLOURS: [RGBColor; 11] = [
    RGBColor(31, 119, 180),  // fcfs-rr: blue
    RGBColor(255, 127, 14),  // fcfs-mod: orange
    RGBColor(44, 160, 44),   // fcfs: green
    RGBColor(214, 39, 40),   // omls: red
    RGBColor(148, 103, 189), // edf: purple
    RGBColor(140, 86, 75),   // sjf: brown
    RGBColor(227, 119, 194), // affinity: pink
    RGBColor(23, 190, 207),  // deadline-batch: cyan
    RGBColor(188, 189, 34),  // tier-affinity: olive
    RGBColor(31, 60, 110),   // pets: navy
    RGBColor(150, 20, 80),   // deadline-mixed: wine
];

/// Colours for names that are not known policies, chosen by a hash of the name.
const OTHER_COLOURS: [RGBColor; 3] = [
    RGBColor(127, 127, 127),
    RGBColor(90, 90, 90),
    RGBColor(170, 170, 170),
];

/// The colour of `policy` in every figure (a known policy's is fixed; another name's depends
/// only on the name).
pub fn policy_colour(policy: &str) -> RGBColor {
    match POLICIES.iter().position(|p| *p == policy) {
        Some(i) => POLICY_COLOURS[i % POLICY_COLOURS.len()],
        None => {
            let h = policy
                .bytes()
                .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
            OTHER_COLOURS[h as usize % OTHER_COLOURS.len()]
        }
    }
}

/// The colour of a timeline phase: `cold_load`, `switch`, `pool_load`, `inference`.
pub fn phase_colour(kind: &str) -> RGBColor {
    match kind {
        "cold_load" => RGBColor(110, 30, 30),
        "switch" => RGBColor(240, 150, 40),
        "pool_load" => RGBColor(120, 190, 90),
        _ => RGBColor(60, 110, 170),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_policy_has_its_own_colour() {
        assert_eq!(
            POLICY_COLOURS.len(),
            POLICIES.len(),
            "a colour for every policy"
        );
        let colours: Vec<RGBColor> = POLICIES.iter().map(|p| policy_colour(p)).collect();
        for (i, a) in colours.iter().enumerate() {
            for b in &colours[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(policy_colour("omls"), policy_colour("omls"));
        assert_eq!(policy_colour("mine"), policy_colour("mine"));
    }
}
