//! How many GPU slots fit beside each other: the device bytes one slot takes (weight arena,
//! activations, GEMM workspace) against the device's free memory, with headroom kept free;
//! how many weight-pool slots fit beside a number of executors; and the copy size of a switch.
//! No CUDA here (the free memory is asked for in `slots/`).

/// Bytes per host→device copy of a switch (≥ 16 MB keeps PCIe at full speed).
pub const CHUNK_BYTES: usize = 32 << 20;

/// Device memory kept free beside the slots (context, modules, graphs), in bytes.
pub const HEADROOM_BYTES: usize = 512 << 20;

/// The cuBLAS / cuBLASLt workspace of one GPU model (one slot), in bytes.
pub const BLAS_WORKSPACE_BYTES: usize = 64 << 20;

/// How many slots fit on a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotBudget {
    /// Free device memory now, in bytes.
    pub free_bytes: usize,
    /// Bytes of one weight arena.
    pub arena_bytes: usize,
    /// Device bytes one slot needs (arena, activations of the largest bucket, cuBLAS).
    pub per_slot_bytes: usize,
    /// Slots that fit, [`HEADROOM_BYTES`] kept free.
    pub fit: usize,
}

impl SlotBudget {
    /// The budget of slots whose arena takes `arena_bytes` and activations `workspace_bytes`,
    /// with `free_bytes` free on the device.
    pub fn new(free_bytes: usize, arena_bytes: usize, workspace_bytes: usize) -> Self {
        let per_slot_bytes = arena_bytes + workspace_bytes + BLAS_WORKSPACE_BYTES;
        SlotBudget {
            free_bytes,
            arena_bytes,
            per_slot_bytes,
            fit: free_bytes.saturating_sub(HEADROOM_BYTES) / per_slot_bytes,
        }
    }
}

/// How many tenants a GPU weight pool holds beside `executors` slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolBudget {
    /// The executors' budget (free memory, bytes per executor).
    pub executors: SlotBudget,
    /// Executors the pool leaves room for.
    pub executor_count: usize,
    /// Bytes of one pool slot (one tenant's packed weights).
    pub slot_bytes: usize,
    /// Pool slots that fit after the executors, [`HEADROOM_BYTES`] kept free.
    pub fit: usize,
}

impl PoolBudget {
    /// The pool slots that fit beside `executor_count` executors of `executors`.
    pub fn new(executors: SlotBudget, executor_count: usize) -> Self {
        let slot_bytes = executors.arena_bytes.max(1);
        let left = executors
            .free_bytes
            .saturating_sub(HEADROOM_BYTES)
            .saturating_sub(executor_count.saturating_mul(executors.per_slot_bytes));
        PoolBudget {
            executors,
            executor_count,
            slot_bytes,
            fit: left / slot_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headroom_is_kept_and_nothing_fits_below_it() {
        let b = SlotBudget::new(HEADROOM_BYTES, 600, 400);
        assert_eq!(b.per_slot_bytes, 1000 + BLAS_WORKSPACE_BYTES);
        assert_eq!(b.fit, 0);
        assert_eq!(SlotBudget::new(HEADROOM_BYTES / 2, 1, 1).fit, 0);
        let per = b.per_slot_bytes;
        let exact = SlotBudget::new(HEADROOM_BYTES + 3 * per, 600, 400);
        assert_eq!(exact.fit, 3);
        assert_eq!(
            SlotBudget::new(HEADROOM_BYTES + 3 * per - 1, 600, 400).fit,
            2
        );
    }

    #[test]
    fn the_pool_gets_what_the_executors_leave() {
        let per = 1000 + BLAS_WORKSPACE_BYTES;
        let free = HEADROOM_BYTES + 3 * per + 10 * 600 + 599;
        let b = PoolBudget::new(SlotBudget::new(free, 600, 400), 3);
        assert_eq!((b.slot_bytes, b.fit), (600, 10));
        assert_eq!(PoolBudget::new(SlotBudget::new(free, 600, 400), 4).fit, 0);
        assert_eq!(
            PoolBudget::new(SlotBudget::new(free, 600, 400), 0).fit,
            (3 * per + 6599) / 600
        );
    }
}
