//! Reading a tenant's `model.safetensors` straight into its place in a packed buffer: the
//! header is parsed once, then every tensor (cut into pieces of at most [`PIECE_BYTES`]) is
//! read with positioned reads by several threads into its offset of the [`ArchLayout`].
//! Tensors in another dtype are converted on the way; padding is zeroed. As in
//! [`crate::checkpoint`], tensors the configuration does not use and NaN or infinite weights
//! are refused, naming them.
//!
//! [`read_into_with`] also reports every byte range of the destination once it is final (a
//! zeroed gap, or a piece read and checked), from the thread that finished it: the GPU's cold
//! path copies a region to the device as soon as every range in it has landed, overlapping the
//! copies with the reads still running.

use super::ArchLayout;
use crate::config::Config;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::layout::Layout;
use std::collections::BTreeMap;
use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Largest piece one thread reads at a time.
pub const PIECE_BYTES: usize = 8 << 20;

/// One tensor as the file header describes it.
#[derive(Debug, serde::Deserialize)]
struct Info {
    dtype: safetensors::Dtype,
    shape: Vec<usize>,
    data_offsets: (usize, usize),
}

/// A piece of work: file bytes at `file_off` (in dtype `from`) to the next destination slice,
/// element `first` onwards of tensor `name`.
struct Piece<'a> {
    file_off: u64,
    from: DType,
    dst: &'a mut [u8],
    /// Where `dst` starts in the whole destination, bytes.
    at: usize,
    name: &'a str,
    first: usize,
}

fn bad(path: &Path, message: impl Into<String>) -> Error {
    Error::Safetensors {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Reads the header: the offset of the data section and the tensors by name.
fn header(path: &Path, f: &File) -> Result<(u64, BTreeMap<String, Info>)> {
    let len = f.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut n8 = [0u8; 8];
    f.read_exact_at(&mut n8, 0)
        .map_err(|_| bad(path, "shorter than the 8-byte header length"))?;
    let n = u64::from_le_bytes(n8);
    if n > 100 << 20 || 8 + n > len {
        return Err(bad(
            path,
            format!("header length {n} does not fit a {len}-byte file"),
        ));
    }
    let mut h = vec![0u8; n as usize];
    f.read_exact_at(&mut h, 8).map_err(|e| Error::io(path, e))?;
    let map: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&h).map_err(|e| bad(path, format!("header: {e}")))?;
    let data = 8 + n;
    let mut out = BTreeMap::new();
    for (name, v) in map {
        if name == "__metadata__" {
            continue;
        }
        let info: Info =
            serde_json::from_value(v).map_err(|e| bad(path, format!("tensor `{name}`: {e}")))?;
        let end = data.checked_add(info.data_offsets.1 as u64);
        if info.data_offsets.0 > info.data_offsets.1 || end.is_none_or(|end| end > len) {
            return Err(bad(path, format!("tensor `{name}` lies outside the file")));
        }
        out.insert(name, info);
    }
    Ok((data, out))
}

/// Reads the tenant at `path` (configuration `cfg`) into `dst`, laid out by `arch`, with
/// `threads` threads. Names a missing tensor, a wrong shape or dtype.
pub fn read_into(
    path: &Path,
    cfg: &Config,
    arch: &ArchLayout,
    dst: &mut [u8],
    threads: usize,
) -> Result<()> {
    read_into_pieces(path, cfg, arch, dst, threads, PIECE_BYTES)
}

/// [`read_into`] with pieces of at most `piece_bytes` (tests use small pieces).
pub fn read_into_pieces(
    path: &Path,
    cfg: &Config,
    arch: &ArchLayout,
    dst: &mut [u8],
    threads: usize,
    piece_bytes: usize,
) -> Result<()> {
    read_into_with(path, cfg, arch, dst, threads, piece_bytes, &|_| Ok(()))
}

/// [`read_into_pieces`], calling `landed(range)` for every byte range of `dst` once its bytes
/// are final: each zeroed gap (before any read starts) and each piece once read, converted and
/// checked. Without an error the ranges tile `dst` exactly once. An error of `landed` stops the
/// read like a read error: after the first error no further piece is read.
pub fn read_into_with(
    path: &Path,
    cfg: &Config,
    arch: &ArchLayout,
    dst: &mut [u8],
    threads: usize,
    piece_bytes: usize,
    landed: &(dyn Fn(Range<usize>) -> Result<()> + Sync),
) -> Result<()> {
    if dst.len() != arch.bytes() {
        return Err(Error::Input(format!(
            "destination of {} bytes, the layout needs {}",
            dst.len(),
            arch.bytes()
        )));
    }
    let f = File::open(path).map_err(|e| Error::io(path, e))?;
    let (data, tensors) = header(path, &f)?;
    let esz = arch.dtype.size_bytes();
    // (destination byte offset, elements, file offset, file dtype, name), sorted by destination.
    let mut jobs = Vec::new();
    let mut read = std::collections::BTreeSet::new();
    for e in Layout::for_config(cfg)?.entries() {
        let (name, info) = e
            .candidates
            .iter()
            .find_map(|n| tensors.get_key_value(n.as_str()))
            .ok_or_else(|| Error::MissingTensor {
                name: e.name.clone(),
                tried: e.candidates.join(", "),
                expected: e.shape.clone(),
            })?;
        let from = DType::from_safetensors(info.dtype).ok_or_else(|| Error::UnsupportedDtype {
            name: name.clone(),
            found: format!("{:?}", info.dtype),
        })?;
        if info.shape != e.shape {
            return Err(Error::WrongShape {
                name: name.clone(),
                expected: e.shape.clone(),
                found: info.shape.clone(),
            });
        }
        if info.data_offsets.1 - info.data_offsets.0 != e.elements() * from.size_bytes() {
            return Err(bad(
                path,
                format!("tensor `{name}`: data size does not match its shape"),
            ));
        }
        let at = arch.byte_offset(&e.name)?;
        read.insert(name.as_str());
        jobs.push((
            at,
            e.elements(),
            data + info.data_offsets.0 as u64,
            from,
            name.as_str(),
        ));
    }
    crate::checkpoint::check_unused(path, cfg, tensors.keys().map(String::as_str), &read)?;
    jobs.sort_by_key(|j| j.0);
    // Carve `dst` into disjoint pieces; zero the gaps (padding) on the way.
    let total = dst.len();
    let mut gaps = Vec::new();
    let mut pieces = Vec::new();
    let mut rest: &mut [u8] = dst;
    let mut pos = 0usize;
    for (at, elements, file_off, from, name) in jobs {
        let (gap, r) = std::mem::take(&mut rest).split_at_mut(at - pos);
        gap.fill(0);
        if at > pos {
            gaps.push(pos..at);
        }
        let (mut body, r) = r.split_at_mut(elements * esz);
        rest = r;
        pos = at + elements * esz;
        let step = (piece_bytes / esz / 4 * 4).max(4);
        let mut done = 0usize;
        while !body.is_empty() {
            let n = step.min(body.len() / esz);
            let (p, b) = std::mem::take(&mut body).split_at_mut(n * esz);
            pieces.push(Piece {
                file_off: file_off + (done * from.size_bytes()) as u64,
                from,
                dst: p,
                at: at + done * esz,
                name,
                first: done,
            });
            body = b;
            done += n;
        }
    }
    rest.fill(0);
    if pos < total {
        gaps.push(pos..total);
    }
    for g in gaps {
        landed(g)?;
    }
    let to = arch.dtype;
    let queue = Mutex::new(pieces);
    let failure: Mutex<Option<Error>> = Mutex::new(None);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                let mut tmp = Vec::new();
                let mut conv = Vec::new();
                // The guard is dropped inside `pop`: the lock is not held while reading.
                let pop = || {
                    if stop.load(Ordering::Acquire) {
                        return None;
                    }
                    queue.lock().ok().and_then(|mut q| q.pop())
                };
                while let Some(p) = pop() {
                    let r = if p.from == to {
                        f.read_exact_at(p.dst, p.file_off)
                    } else {
                        let n = p.dst.len() / to.size_bytes() * p.from.size_bytes();
                        tmp.resize(n, 0);
                        f.read_exact_at(&mut tmp, p.file_off).map(|()| {
                            conv.clear();
                            to.convert_from(p.from, &tmp, &mut conv);
                            p.dst.copy_from_slice(&conv);
                        })
                    };
                    let range = p.at..p.at + p.dst.len();
                    let r = r.map_err(|e| Error::io(path, e)).and_then(|()| {
                        crate::checkpoint::check_finite(path, p.name, to, p.dst, p.first)
                    });
                    // The piece is not touched again: its range is final.
                    let r = r.and_then(|()| landed(range));
                    if let Err(e) = r {
                        stop.store(true, Ordering::Release);
                        if let Ok(mut slot) = failure.lock() {
                            slot.get_or_insert(e);
                        }
                        break;
                    }
                }
            });
        }
    });
    match failure.into_inner() {
        Ok(None) => Ok(()),
        Ok(Some(e)) => Err(e),
        Err(_) => Err(Error::Input("a reader thread panicked".into())),
    }
}

/// Threads to read with: the machine's parallelism, at most 8.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(4, |n| n.get().min(8))
}
