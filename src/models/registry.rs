//! (to be written)

use super::{LoadOptions, ModelError};
use crate::embedder::Embedder;

/// A known model: short name and where its weights come from.
#[derive(Debug, Clone)]
pub struct RegistryEntry {
    pub name: &'static str,
}

pub fn lookup(_name: &str) -> Option<&'static RegistryEntry> {
    None
}

pub fn load_entry(entry: &RegistryEntry, _opts: &LoadOptions) -> Result<Box<dyn Embedder>, ModelError> {
    Err(ModelError::UnknownModel(entry.name.to_string()))
}
