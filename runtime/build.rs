//! The runtime's build identity: a 64-bit FNV-1a hash of the runtime crate's sources —
//! `Cargo.toml`, this file and every file under `src/` (the GPU kernels included) but
//! `src/gpu/stub.rs`, in sorted path order, each as its path relative to the crate, a zero
//! byte, its length and its bytes — exported to the crate as `PTM_RUNTIME_BUILD` (16 hex
//! digits). The stub (the GPU API of a build without the CUDA backend, every call an error)
//! measures nothing: no profile depends on it, so it is not part of the identity. Deterministic: the same
//! sources give the same identity on any machine, with or without git, whatever the build
//! profile or target; any change to the runtime's code changes it. Dependencies' versions are
//! not part of it (they are pinned by `Cargo.lock`).

use std::hash::Hasher;
use std::path::{Path, PathBuf};

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into()));
    let mut files = vec![root.join("Cargo.toml"), root.join("build.rs")];
    files_under(&root.join("src"), &mut files);
    files.retain(|p| !p.ends_with("src/gpu/stub.rs"));
    let mut named: Vec<(String, PathBuf)> = files
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(&root).unwrap_or(&p);
            let name = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            (name, p)
        })
        .collect();
    named.sort();
    let mut hash = fnv::FnvHasher::default();
    for (name, path) in &named {
        let bytes = std::fs::read(path).unwrap_or_default();
        hash.write(name.as_bytes());
        hash.write(&[0]);
        hash.write(&(bytes.len() as u64).to_le_bytes());
        hash.write(&bytes);
    }
    println!("cargo:rustc-env=PTM_RUNTIME_BUILD={:016x}", hash.finish());
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=Cargo.toml");
    println!("cargo:rerun-if-changed=build.rs");
}
