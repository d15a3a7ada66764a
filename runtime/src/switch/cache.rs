//! The host cache: tenants of one architecture, each read once from its safetensors file into
//! a fixed block of host memory in the [`ArchLayout`]. All blocks are allocated (and, for the
//! GPU, pinned) when the cache is made, never on the switch path; when every block is taken,
//! registering another tenant either fails with a clear error or evicts the least recently
//! used tenant (after the copies reading its block have finished).

use super::read::{default_threads, read_into};
use super::ArchLayout;
use crate::config::Config;
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What registering does when the cache is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    /// Refuse with [`Error::CacheFull`].
    Refuse,
    /// Evict the least recently used tenant.
    Lru,
}

/// A registered tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantInfo {
    /// Its name (the zoo model name).
    pub name: String,
    /// The folder it was read from.
    pub dir: PathBuf,
    /// Its configuration (head included).
    pub cfg: Config,
}

/// Host memory of one tenant.
pub enum Block {
    /// Ordinary memory (the CPU backend).
    Plain(Vec<u8>),
    /// Page-locked memory the GPU copies from asynchronously.
    Pinned(crate::gpu::PinnedBuf),
}

impl Block {
    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Block::Plain(v) => v,
            Block::Pinned(p) => p.as_slice(),
        }
    }

    /// Records the event that completes the last asynchronous copy reading this block.
    pub fn set_fence(&mut self, event: std::sync::Arc<crate::gpu::slots::Event>) {
        if let Block::Pinned(p) = self {
            p.set_fence(event);
        }
    }

    /// The bytes, for writing: waits for asynchronous copies still reading them.
    fn writable(&mut self) -> Result<&mut [u8]> {
        match self {
            Block::Plain(v) => Ok(v),
            Block::Pinned(p) => p.writable(),
        }
    }
}

struct Entry {
    info: TenantInfo,
    block: usize,
    last_use: u64,
}

/// Tenants of one architecture in host memory, capacity-bounded.
pub struct HostCache {
    arch: ArchLayout,
    blocks: Vec<Block>,
    free: Vec<usize>,
    tenants: BTreeMap<String, Entry>,
    clock: u64,
    eviction: Eviction,
    threads: usize,
}

impl HostCache {
    /// A cache of `capacity` tenants in ordinary memory.
    pub fn plain(arch: ArchLayout, capacity: usize, eviction: Eviction) -> Result<Self> {
        let blocks = (0..capacity)
            .map(|_| Block::Plain(vec![0u8; arch.bytes()]))
            .collect();
        Self::with_blocks(arch, blocks, eviction)
    }

    /// A cache of `capacity` tenants in pinned memory of GPU `ordinal`'s context, allocated now
    /// (a build without the `cuda` feature refuses with [`Error::NoGpu`]).
    pub fn pinned(
        arch: ArchLayout,
        capacity: usize,
        ordinal: usize,
        eviction: Eviction,
    ) -> Result<Self> {
        let blocks = (0..capacity)
            .map(|_| crate::gpu::PinnedBuf::new(ordinal, arch.bytes()).map(Block::Pinned))
            .collect::<Result<Vec<_>>>()?;
        Self::with_blocks(arch, blocks, eviction)
    }

    fn with_blocks(arch: ArchLayout, blocks: Vec<Block>, eviction: Eviction) -> Result<Self> {
        if blocks.is_empty() {
            return Err(Error::Input(
                "a host cache needs a capacity of at least one tenant".into(),
            ));
        }
        Ok(HostCache {
            free: (0..blocks.len()).rev().collect(),
            arch,
            blocks,
            tenants: BTreeMap::new(),
            clock: 0,
            eviction,
            threads: default_threads(),
        })
    }

    /// Sets the number of reader threads.
    pub fn set_threads(&mut self, threads: usize) {
        self.threads = threads.max(1);
    }

    /// The layout of every block.
    pub fn arch(&self) -> &ArchLayout {
        &self.arch
    }

    /// Tenants the cache holds at most.
    pub fn capacity(&self) -> usize {
        self.blocks.len()
    }

    /// Names of the registered tenants.
    pub fn tenants(&self) -> Vec<String> {
        self.tenants.keys().cloned().collect()
    }

    /// Registers the tenant in `dir` (`config.json`, `model.safetensors`) as `name`, reading
    /// its weights into a block; a tenant already registered is left as it is. Returns the
    /// name of the tenant evicted to make room, if any.
    pub fn register(&mut self, name: &str, dir: &Path) -> Result<Option<String>> {
        if self.tenants.contains_key(name) {
            return Ok(None);
        }
        let cfg = Config::from_file(&dir.join("config.json"))?;
        self.arch.check_tenant(name, &cfg)?;
        let mut evicted = None;
        let block = match self.free.pop() {
            Some(b) => b,
            None if self.eviction == Eviction::Refuse => {
                return Err(Error::CacheFull {
                    tenant: name.to_string(),
                    capacity: self.blocks.len(),
                })
            }
            None => {
                let victim = self
                    .tenants
                    .iter()
                    .min_by_key(|(_, e)| e.last_use)
                    .map(|(n, _)| n.clone())
                    .ok_or_else(|| Error::Input("host cache has no tenant to evict".into()))?;
                let e = self
                    .tenants
                    .remove(&victim)
                    .ok_or_else(|| Error::NotRegistered(victim.clone()))?;
                evicted = Some(victim);
                e.block
            }
        };
        let dst = match self.blocks[block].writable() {
            Ok(d) => d,
            Err(e) => {
                self.free.push(block);
                return Err(e);
            }
        };
        if let Err(e) = read_into(
            &dir.join("model.safetensors"),
            &cfg,
            &self.arch,
            dst,
            self.threads,
        ) {
            self.free.push(block);
            return Err(e);
        }
        self.clock += 1;
        self.tenants.insert(
            name.to_string(),
            Entry {
                info: TenantInfo {
                    name: name.to_string(),
                    dir: dir.to_path_buf(),
                    cfg,
                },
                block,
                last_use: self.clock,
            },
        );
        Ok(evicted)
    }

    /// The tenant `name` and its packed bytes, marked as just used.
    pub fn get(&mut self, name: &str) -> Result<(&TenantInfo, &mut Block)> {
        self.clock += 1;
        let e = self
            .tenants
            .get_mut(name)
            .ok_or_else(|| Error::NotRegistered(name.to_string()))?;
        e.last_use = self.clock;
        Ok((&e.info, &mut self.blocks[e.block]))
    }
}
