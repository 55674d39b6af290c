//! Maps scheme and chain ids to plugins. The node builds one from its configuration.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::chain::ChainPlugin;
use crate::scheme::SchemePlugin;

/// The schemes and chains a node offers, by id.
#[derive(Default, Clone)]
pub struct Registry {
    schemes: BTreeMap<&'static str, Arc<dyn SchemePlugin>>,
    chains: BTreeMap<&'static str, Arc<dyn ChainPlugin>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a scheme; a second plugin with the same id replaces the first.
    pub fn register(&mut self, plugin: Arc<dyn SchemePlugin>) {
        self.schemes.insert(plugin.id().0, plugin);
    }

    /// Adds a chain; a second plugin with the same id replaces the first.
    pub fn register_chain(&mut self, plugin: Arc<dyn ChainPlugin>) {
        self.chains.insert(plugin.id(), plugin);
    }

    /// The chain plugin for an id.
    pub fn chain(&self, id: &str) -> Option<Arc<dyn ChainPlugin>> {
        self.chains.get(id).cloned()
    }

    /// Registered chain ids, sorted.
    pub fn chain_ids(&self) -> Vec<&'static str> {
        self.chains.keys().copied().collect()
    }

    /// The plugin for an id.
    pub fn scheme(&self, id: &str) -> Option<Arc<dyn SchemePlugin>> {
        self.schemes.get(id).cloned()
    }

    /// Registered ids, sorted.
    pub fn ids(&self) -> Vec<&'static str> {
        self.schemes.keys().copied().collect()
    }
}
