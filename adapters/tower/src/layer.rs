//! The `Layer` that puts sessions in front of a service.

use session_core::SessionManager;
use tower_layer::Layer;

use crate::SessionService;

/// Adds a session to every request of the services it wraps.
///
/// Build it from a [`SessionManager`]; clones share the manager, so one layer
/// can wrap many routers.
///
/// ```
/// use session_core::{Key, SessionManager, memory::MemoryStore};
/// use session_tower::SessionLayer;
///
/// let manager = SessionManager::builder(MemoryStore::new(), Key::generate()).build().unwrap();
/// let layer = SessionLayer::new(manager);
/// # let _ = layer;
/// ```
#[derive(Debug, Clone)]
pub struct SessionLayer {
    manager: SessionManager,
}

impl SessionLayer {
    /// A layer running `manager`'s lifecycle on every request.
    #[must_use]
    pub fn new(manager: SessionManager) -> Self {
        Self { manager }
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService::new(inner, self.manager.clone())
    }
}
