//! Vertical split by module (垂直切分): each business module (users,
//! orders, content…) has its own database — its own primary, replicas and
//! [`Router`] — so modules scale, fail and are tuned independently.
//!
//! What it costs: a transaction can no longer span two modules (update the
//! order and the user's points in one commit); use an outbox / half
//! message through a queue, or a compensating step, instead. And log
//! positions belong to one database: keep one [`Session`](crate::Session)
//! per module (a token per module, or a map of them).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::{Node, Router, StoreError};

/// Routers by module name.
///
/// ```
/// use std::sync::Arc;
/// use kuai_core::SystemClock;
/// use kuai_store::{EmbeddedCluster, Modules, Router};
/// let users = EmbeddedCluster::<u64, String>::new(Arc::new(SystemClock));
/// let orders = EmbeddedCluster::<u64, String>::new(Arc::new(SystemClock));
/// let modules = Modules::builder()
///     .module("users", Router::builder().build(users.primary(), vec![]))
///     .module("orders", Router::builder().build(orders.primary(), vec![]))
///     .build()
///     .unwrap();
/// assert!(modules.get("orders").is_ok());
/// assert!(modules.get("billing").is_err());
/// ```
pub struct Modules<N> {
    routers: BTreeMap<String, Arc<Router<N>>>,
}

impl<N> fmt::Debug for Modules<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Modules")
            .field("modules", &self.routers.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Builds [`Modules`].
pub struct ModulesBuilder<N> {
    routers: Vec<(String, Arc<Router<N>>)>,
}

impl<N> fmt::Debug for ModulesBuilder<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModulesBuilder")
            .field(
                "modules",
                &self.routers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Modules<()> {
    /// An empty builder.
    pub fn builder<N: Node>() -> ModulesBuilder<N> {
        ModulesBuilder {
            routers: Vec::new(),
        }
    }
}

impl<N: Node> ModulesBuilder<N> {
    /// Adds a module with its own router.
    pub fn module(mut self, name: &str, router: Router<N>) -> Self {
        self.routers.push((name.to_string(), Arc::new(router)));
        self
    }

    /// The registry; an empty or repeated module name is `InvalidInput`.
    pub fn build(self) -> Result<Modules<N>, StoreError> {
        let mut routers = BTreeMap::new();
        for (name, r) in self.routers {
            if name.is_empty() {
                return Err(StoreError::InvalidInput("empty module name".into()));
            }
            if routers.insert(name.clone(), r).is_some() {
                return Err(StoreError::InvalidInput(format!(
                    "module {name:?} given twice"
                )));
            }
        }
        Ok(Modules { routers })
    }
}

impl<N: Node> Modules<N> {
    /// The router of `module`, or `NotFound`.
    pub fn get(&self, module: &str) -> Result<&Arc<Router<N>>, StoreError> {
        self.routers
            .get(module)
            .ok_or_else(|| StoreError::NotFound(format!("module {module:?}")))
    }

    /// The module names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.routers.keys().map(String::as_str)
    }
}
