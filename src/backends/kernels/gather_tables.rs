//! The convolution gathers' K tables, cached per device: one buffer per distinct [`GatherKey`],
//! each built the first time its key is seen (by `conv2d_gather_table`, see the conv2d op's
//! wrapper) and then reused, so a steady-state training step launches no table kernel and
//! allocates nothing. Inputs of varying width (whole-utterance and crop evaluation) add keys, so
//! past [`GatherTables::MAX_TABLES`] the cache is emptied and refilled.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::backends::device::Device;
use crate::Result;

/// What a K table depends on: the direction, the gathered tensor's channels and plane, and the
/// kernel window (not the batch: a short last batch reuses its full batch's table).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GatherKey {
    pub backward_data: bool,
    pub channels: i32,
    pub h: i32,
    pub w: i32,
    pub k_h: i32,
    pub k_w: i32,
}

/// The cache.
pub struct GatherTables<D: Device> {
    tables: Mutex<HashMap<GatherKey, D::Buffer<f32>>>,
}

impl<D: Device> Default for GatherTables<D> {
    fn default() -> Self {
        GatherTables {
            tables: Mutex::new(HashMap::new()),
        }
    }
}

impl<D: Device> GatherTables<D> {
    /// Most tables kept at once: a network has two per convolution, far fewer than this; the
    /// tables are K·16 bytes each (100 KiB for the paper's largest layer), so the bound caps the
    /// cache at a few MiB.
    pub const MAX_TABLES: usize = 64;

    pub fn new() -> Self {
        Self::default()
    }

    /// Run `f` with the table of `key`, made by `build` first if there is none yet.
    pub fn with<R>(
        &self,
        key: GatherKey,
        build: impl FnOnce() -> Result<D::Buffer<f32>>,
        f: impl FnOnce(&D::Buffer<f32>) -> Result<R>,
    ) -> Result<R> {
        let mut tables = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        if !tables.contains_key(&key) {
            if tables.len() >= Self::MAX_TABLES {
                tables.clear();
            }
            let table = build()?;
            tables.insert(key, table);
        }
        f(&tables[&key])
    }

    /// Tables currently held.
    pub fn len(&self) -> usize {
        self.tables.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
