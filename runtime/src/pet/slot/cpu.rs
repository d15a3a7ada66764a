//! The CPU twin of the GPU PET slot: the same registry, tiers and loads (blocks in plain host
//! memory for the host tier; for the "GPU pool", tenants unpacked from their blocks, so every
//! pass runs what the block format holds), and passes through the CPU reference's
//! mixed-tenant forward ([`crate::pet::forward_mixed`]).

use super::{Backend, Core, PetSlotConfig, Src, Store};
use crate::bert::{HeadOutput, Rounding};
use crate::error::{Error, Result};
use crate::pet::backbone::Backbone;
use crate::pet::block::BlockLayout;
use crate::pet::forward::{forward_mixed, Segment};
use crate::pet::tenant::PetTenant;
use crate::tokenize::Batch;

/// The tiers' contents on the CPU.
struct CpuStore {
    host: Vec<Option<Vec<u8>>>,
    device: Vec<Option<PetTenant>>,
}

impl Store for CpuStore {
    fn write_host(&mut self, slot: u32, bytes: &[u8]) -> Result<()> {
        let s = self
            .host
            .get_mut(slot as usize)
            .ok_or_else(|| Error::Input(format!("host slot {slot} does not exist")))?;
        *s = Some(bytes.to_vec());
        Ok(())
    }

    fn to_device(&mut self, layout: &BlockLayout, slot: u32, src: Src) -> Result<()> {
        let t = match &src {
            Src::Host(h) => {
                let b = self
                    .host
                    .get(*h as usize)
                    .and_then(Option::as_ref)
                    .ok_or_else(|| Error::Input(format!("host slot {h} holds no block")))?;
                layout.unpack(b)?
            }
            Src::Bytes(b) => layout.unpack(b)?,
        };
        let d = self
            .device
            .get_mut(slot as usize)
            .ok_or_else(|| Error::Input(format!("pool slot {slot} does not exist")))?;
        *d = Some(t);
        Ok(())
    }
}

/// The CPU twin of a PET slot.
pub struct CpuPetSlot {
    core: Core,
    store: CpuStore,
}

impl CpuPetSlot {
    /// A slot over `backbone` with tiers of `config`'s sizes.
    pub(crate) fn new(backbone: Backbone, config: PetSlotConfig) -> Result<Self> {
        let store = CpuStore {
            host: vec![None; config.host_slots],
            device: (0..config.gpu_slots).map(|_| None).collect(),
        };
        Ok(CpuPetSlot {
            core: Core::new(backbone, config)?,
            store,
        })
    }
}

impl Backend for CpuPetSlot {
    fn core(&self) -> &Core {
        &self.core
    }

    fn parts(&mut self) -> (&mut Core, &mut dyn Store) {
        (&mut self.core, &mut self.store)
    }

    fn run(&mut self, batch: &Batch, segments: &[(u32, usize)]) -> Result<Vec<HeadOutput>> {
        let mut tenants: Vec<&PetTenant> = Vec::with_capacity(segments.len());
        let mut segs = Vec::with_capacity(segments.len());
        for (k, &(t, rows)) in segments.iter().enumerate() {
            let slot = self.core.residency.gpu.slot(t).ok_or_else(|| {
                Error::Input(format!("tenant {t} is not in the pool for this pass"))
            })?;
            let tenant = self
                .store
                .device
                .get(slot as usize)
                .and_then(Option::as_ref)
                .ok_or_else(|| Error::Input(format!("pool slot {slot} holds no tenant")))?;
            tenants.push(tenant);
            segs.push(Segment { tenant: k, rows });
        }
        forward_mixed(&self.core.backbone, &tenants, batch, &segs, Rounding::ALL)
    }

    fn wait_loads(&mut self) -> Result<()> {
        Ok(())
    }

    fn device_bytes(&self) -> (usize, usize) {
        (self.core.backbone.weights.bytes.len(), 0)
    }
}
