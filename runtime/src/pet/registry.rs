//! A backbone and the tenants registered over it (the CPU reference's view of a PET zoo):
//! register tenant folders (each refused by name if it does not fit the backbone), then run
//! batches whose rows belong to several of them. [`PetSet::single`] is one tenant ready to run
//! alone (what `ptm infer` uses on a tenant folder).

use super::backbone::Backbone;
use super::forward::{forward_mixed, Segment};
use super::tenant::{backbone_of, PetTenant};
use crate::bert::Rounding;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::tokenize::Batch;
use crate::HeadOutput;
use std::collections::BTreeMap;
use std::path::Path;

/// A backbone plus registered tenants.
pub struct PetSet {
    /// The shared backbone.
    pub backbone: Backbone,
    tenants: Vec<PetTenant>,
    by_name: BTreeMap<String, usize>,
    capacity: usize,
}

impl PetSet {
    /// An empty set over `backbone` that holds at most `capacity` tenants.
    pub fn new(backbone: Backbone, capacity: usize) -> Self {
        PetSet {
            backbone,
            tenants: Vec::new(),
            by_name: BTreeMap::new(),
            capacity,
        }
    }

    /// The backbone that the tenant folder `dir` names, loaded in `dtype`, with that tenant
    /// registered.
    pub fn single(dir: &Path, dtype: DType) -> Result<Self> {
        let backbone = Backbone::load(&backbone_of(dir)?, dtype)?;
        let mut set = PetSet::new(backbone, 1);
        set.register(dir)?;
        Ok(set)
    }

    /// Reads the tenant in `dir` and registers it under its folder name; returns its index.
    pub fn register(&mut self, dir: &Path) -> Result<usize> {
        if self.tenants.len() >= self.capacity {
            return Err(Error::pet(
                dir,
                "tenant",
                format!(
                    "the set holds at most {} tenants and is full",
                    self.capacity
                ),
            ));
        }
        let t = PetTenant::load(dir, &self.backbone)?;
        if self.by_name.contains_key(&t.name) {
            return Err(Error::pet(
                dir,
                "name",
                format!("tenant `{}` is already registered", t.name),
            ));
        }
        let i = self.tenants.len();
        self.by_name.insert(t.name.clone(), i);
        self.tenants.push(t);
        Ok(i)
    }

    /// The tenant registered at index `i`.
    pub fn tenant(&self, i: usize) -> Option<&PetTenant> {
        self.tenants.get(i)
    }

    /// The index of the tenant named `name`.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// Registered tenants.
    pub fn len(&self) -> usize {
        self.tenants.len()
    }

    /// Whether no tenant is registered.
    pub fn is_empty(&self) -> bool {
        self.tenants.is_empty()
    }

    /// Runs a batch whose consecutive rows belong to the segments' tenants (indices of this
    /// set); one output per segment.
    pub fn forward(&self, batch: &Batch, segments: &[Segment]) -> Result<Vec<HeadOutput>> {
        self.forward_rounding(batch, segments, Rounding::ALL)
    }

    /// [`PetSet::forward`] with the rounding points of `r`.
    pub fn forward_rounding(
        &self,
        batch: &Batch,
        segments: &[Segment],
        r: Rounding,
    ) -> Result<Vec<HeadOutput>> {
        let refs: Vec<&PetTenant> = self.tenants.iter().collect();
        forward_mixed(&self.backbone, &refs, batch, segments, r)
    }

    /// Runs the whole batch through tenant `i` alone.
    pub fn forward_one(&self, i: usize, batch: &Batch) -> Result<HeadOutput> {
        let mut out = self.forward(
            batch,
            &[Segment {
                tenant: i,
                rows: batch.batch,
            }],
        )?;
        out.pop()
            .ok_or_else(|| Error::Input("no output for the batch".into()))
    }
}
