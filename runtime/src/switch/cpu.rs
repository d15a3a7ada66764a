//! The CPU twin of a GPU slot: a plain buffer in the [`ArchLayout`] that a switch copies a
//! tenant's packed bytes into; the candle model is built from that buffer on the first
//! inference after a switch. It exists to prove the switching logic (layout, head padding,
//! reading, cache, sequences of switches) gives exactly the outputs of a fresh load.

use super::read::{default_threads, read_into};
use super::{ArchLayout, HostCache, TenantInfo};
use crate::bert::{self, Bert, HeadOutput};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::tokenize::Batch;
use std::path::Path;

/// One slot on the CPU.
pub struct CpuSlot {
    arch: ArchLayout,
    buf: Vec<u8>,
    tenant: Option<TenantInfo>,
    model: Option<Bert>,
}

impl CpuSlot {
    /// An empty slot for tenants of `arch`.
    pub fn new(arch: &ArchLayout) -> Self {
        CpuSlot {
            buf: vec![0u8; arch.bytes()],
            arch: arch.clone(),
            tenant: None,
            model: None,
        }
    }

    /// The tenant it holds.
    pub fn tenant(&self) -> Option<&TenantInfo> {
        self.tenant.as_ref()
    }

    /// Copies tenant `name` from the cache into the slot's buffer.
    pub fn switch(&mut self, cache: &mut HostCache, name: &str) -> Result<()> {
        if cache.arch() != &self.arch {
            return Err(Error::Input(format!(
                "host cache layout does not match the slot's (switching in `{name}`)"
            )));
        }
        let (info, block) = cache.get(name)?;
        self.buf.copy_from_slice(block.as_slice());
        self.tenant = Some(info.clone());
        self.model = None;
        Ok(())
    }

    /// Copies a tenant's packed `bytes` (from a GPU pool slot's twin) into the slot's buffer.
    pub fn load_bytes(&mut self, info: &TenantInfo, bytes: &[u8]) -> Result<()> {
        if bytes.len() != self.buf.len() {
            return Err(Error::Input(format!(
                "`{}`: {} packed bytes where the slot's layout has {}",
                info.name,
                bytes.len(),
                self.buf.len()
            )));
        }
        self.buf.copy_from_slice(bytes);
        self.tenant = Some(info.clone());
        self.model = None;
        Ok(())
    }

    /// The packed bytes it holds.
    pub fn packed(&self) -> &[u8] {
        &self.buf
    }

    /// Reads tenant `name` from its checkpoint in `dir` straight into the slot's buffer (a cold
    /// load: no host cache involved). A checkpoint that fails a check leaves the slot holding
    /// no tenant (its buffer is partly overwritten).
    pub fn load_file(&mut self, name: &str, dir: &Path) -> Result<()> {
        let cfg = Config::from_file(&dir.join("config.json"))?;
        self.arch.check_tenant(name, &cfg)?;
        self.tenant = None;
        self.model = None;
        read_into(
            &dir.join("model.safetensors"),
            &cfg,
            &self.arch,
            &mut self.buf,
            default_threads(),
        )?;
        self.tenant = Some(TenantInfo {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            cfg,
        });
        self.model = None;
        Ok(())
    }

    /// Builds the candle model of the tenant it holds now (else the first inference after a
    /// switch does).
    pub fn prepare(&mut self) -> Result<()> {
        let t = self
            .tenant
            .as_ref()
            .ok_or_else(|| Error::Input("the slot holds no tenant yet".into()))?;
        if self.model.is_none() {
            let w = self.arch.tenant_weights(&self.buf, &t.cfg)?;
            self.model = Some(bert::load(&w, &t.cfg)?);
        }
        Ok(())
    }

    /// Runs the tenant it holds on a batch.
    pub fn forward(&mut self, batch: &Batch) -> Result<HeadOutput> {
        self.prepare()?;
        match &self.model {
            Some(m) => m.forward(batch),
            None => Err(Error::Input("model not built".into())),
        }
    }
}
