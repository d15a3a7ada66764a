//! The transfer A/B flags that `ptm serve`, `ptm run --live` and `ptm bench infer` share —
//! `--pageable-staging` (a model's outputs through pageable memory instead of its pinned
//! staging) and `--pinned-uploads` (its inputs through the pinned staging too) — turned into
//! kernel options once, for all three.

use ptm_runtime::KernelOptions;

/// The default kernel options with the transfer A/B flags applied.
pub fn kernel_options(pageable_staging: bool, pinned_uploads: bool) -> KernelOptions {
    let d = KernelOptions::default();
    KernelOptions {
        pinned_staging: d.pinned_staging && !pageable_staging,
        pinned_uploads: d.pinned_uploads || pinned_uploads,
        ..d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_flag_changes_its_one_option() {
        let d = KernelOptions::default();
        assert_eq!(kernel_options(false, false), d);
        for (flags, field) in [
            ((true, false), "pinned_staging"),
            ((false, true), "pinned_uploads"),
        ] {
            let o = kernel_options(flags.0, flags.1);
            for ((name, on), (_, default)) in o.fields().iter().zip(d.fields()) {
                assert_eq!(*on != default, *name == field, "{flags:?}: {name}");
            }
        }
    }
}
