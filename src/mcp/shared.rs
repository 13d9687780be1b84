//! The current catalog, shared: the hub swaps in a new one on every change and readers take a
//! snapshot without a lock; a read-only view of it, and a view of the servers' resources, for
//! the built-in tools.

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use super::Catalog;

/// The current catalog, shared: the hub swaps in a new one on every change, readers take a
/// cheap snapshot. Made before the hub, so what the hub serves can see the catalog without a
/// setter after construction.
#[derive(Clone)]
pub struct SharedCatalog {
    current: Arc<ArcSwap<Catalog>>,
    /// Bumped on every swap, for those who announce changes (the MCP facade).
    version: Arc<watch::Sender<u64>>,
}

impl Default for SharedCatalog {
    fn default() -> Self {
        Self { current: Arc::default(), version: Arc::new(watch::channel(0).0) }
    }
}

impl SharedCatalog {
    /// The current snapshot.
    pub fn load(&self) -> Arc<Catalog> {
        self.current.load_full()
    }

    /// A read-only view of it.
    pub fn view(&self) -> CatalogView {
        CatalogView(self.current.clone())
    }

    /// A receiver that changes whenever a new catalog is swapped in.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    pub(super) fn store(&self, catalog: Catalog) {
        self.current.store(Arc::new(catalog));
        self.version.send_modify(|v| *v = v.wrapping_add(1));
    }
}

/// Read-only access to the current catalog (for the built-in tools' `list_mcp_tools`).
#[derive(Clone)]
pub struct CatalogView(Arc<ArcSwap<Catalog>>);

impl CatalogView {
    /// The current snapshot.
    pub fn load(&self) -> Arc<Catalog> {
        self.0.load_full()
    }
}

/// The servers' resources, for the built-in tools (`list_resources`, `read_resource`): made
/// before the hub, bound to it once it runs (unbound, it shows nothing).
#[derive(Clone, Default)]
pub struct ResourceView(Arc<std::sync::OnceLock<std::sync::Weak<super::Hub>>>);

impl ResourceView {
    /// Shows `hub`'s resources from now on.
    pub fn bind(&self, hub: &Arc<super::Hub>) {
        let _ = self.0.set(Arc::downgrade(hub));
    }

    fn hub(&self) -> Option<Arc<super::Hub>> {
        self.0.get().and_then(std::sync::Weak::upgrade)
    }

    /// The resources and templates of the servers `may_use` admits.
    pub async fn list(
        &self,
        may_use: impl Fn(&str) -> bool,
    ) -> (Vec<super::ExposedResource>, Vec<super::ExposedTemplate>) {
        let Some(hub) = self.hub() else { return (Vec::new(), Vec::new()) };
        futures_util::future::join(hub.resources(&may_use), hub.resource_templates(&may_use)).await
    }

    /// Reads an exposed `uri` (among the servers `may_use` admits).
    pub async fn read(
        &self,
        uri: &str,
        may_use: impl Fn(&str) -> bool,
    ) -> Result<rmcp::model::ReadResourceResult, super::McpError> {
        let hub = self.hub().ok_or_else(|| super::McpError::UnknownResource { uri: uri.to_owned() })?;
        hub.read_resource(uri, may_use).await
    }
}
