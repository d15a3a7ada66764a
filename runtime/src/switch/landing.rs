//! Which regions of a buffer being filled by several threads are complete: the buffer is cut
//! into chunks of equal size (the last one shorter); threads report byte ranges as they land
//! ([`super::read::read_into_with`]) and learn which chunks those ranges completed, each chunk
//! exactly once. The GPU's cold path copies a chunk of pinned staging to the device as soon as
//! it is complete, while the other threads still read: no CUDA here, so the bookkeeping is
//! tested on the CPU.

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Chunks of a buffer and the bytes each still waits for.
pub struct Landing {
    chunk_bytes: usize,
    total: usize,
    /// Per chunk: bytes not yet landed.
    missing: Vec<AtomicUsize>,
}

impl Landing {
    /// A buffer of `total` bytes in chunks of `chunk_bytes` (at least 1).
    pub fn new(total: usize, chunk_bytes: usize) -> Self {
        let chunk_bytes = chunk_bytes.max(1);
        let n = total.div_ceil(chunk_bytes);
        Landing {
            chunk_bytes,
            total,
            missing: (0..n)
                .map(|i| AtomicUsize::new(chunk_bytes.min(total - i * chunk_bytes)))
                .collect(),
        }
    }

    /// Chunks in the buffer.
    pub fn chunks(&self) -> usize {
        self.missing.len()
    }

    /// The byte range of chunk `i`.
    pub fn chunk(&self, i: usize) -> Range<usize> {
        let start = i * self.chunk_bytes;
        start..(start + self.chunk_bytes).min(self.total)
    }

    /// Books `range` as landed (it must not overlap a range booked before) and calls
    /// `complete(chunk)` for every chunk it completed. Its bytes happen-before the call: a
    /// thread that completes a chunk sees every other thread's writes into it.
    pub fn landed<E>(
        &self,
        range: Range<usize>,
        mut complete: impl FnMut(usize) -> Result<(), E>,
    ) -> Result<(), E> {
        debug_assert!(range.end <= self.total, "{range:?} beyond {}", self.total);
        if range.is_empty() {
            return Ok(());
        }
        let first = range.start / self.chunk_bytes;
        let last = (range.end - 1) / self.chunk_bytes;
        for i in first..=last {
            let c = self.chunk(i);
            let overlap = range.end.min(c.end) - range.start.max(c.start);
            let before = self.missing[i].fetch_sub(overlap, Ordering::AcqRel);
            debug_assert!(before >= overlap, "chunk {i} landed twice");
            if before == overlap {
                complete(i)?;
            }
        }
        Ok(())
    }

    /// Whether every chunk has landed.
    pub fn all_landed(&self) -> bool {
        self.missing.iter().all(|m| m.load(Ordering::Acquire) == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_chunk_completes_once_whatever_the_order() {
        let total = 1000;
        let l = Landing::new(total, 64);
        assert_eq!(l.chunks(), 16);
        assert_eq!(l.chunk(15), 960..1000);
        // Ranges of varied sizes tiling the buffer, booked back to front.
        let mut cuts = vec![0, 3, 64, 65, 200, 333, 640, 641, 999, 1000];
        cuts.dedup();
        let mut done = Vec::new();
        for w in cuts.windows(2).rev() {
            l.landed::<()>(w[0]..w[1], |c| {
                done.push(c);
                Ok(())
            })
            .unwrap();
        }
        done.sort_unstable();
        assert_eq!(done, (0..16).collect::<Vec<_>>());
        assert!(l.all_landed());
    }

    #[test]
    fn a_chunk_is_complete_only_when_all_its_bytes_are() {
        let l = Landing::new(100, 50);
        let mut done = Vec::new();
        let mut book = |r: Range<usize>| {
            l.landed::<()>(r, |c| {
                done.push(c);
                Ok(())
            })
            .unwrap();
        };
        book(0..30);
        book(60..100);
        book(30..49);
        assert!(!l.all_landed());
        book(49..60);
        assert_eq!(done, vec![0, 1]);
        assert!(l.all_landed());
        let empty = Landing::new(0, 8);
        assert_eq!(empty.chunks(), 0);
        assert!(empty.all_landed());
    }

    #[test]
    fn errors_of_the_callback_come_back() {
        let l = Landing::new(10, 5);
        assert_eq!(l.landed(0..10, Err), Err(0));
    }
}
