//! The name of a namespaced object: one [`ObjectKey`] for every ServiceAccount, secret and unit of work.
//!
//! What must stay true: a clone costs two reference-count increments, never an allocation; keys of one
//! namespace share one copy of its name, so 10,000 waiting keys of one namespace hold one copy of it, not
//! 10,000; two keys are equal only when both their namespaces and their names are.

use std::sync::{Arc, Mutex, OnceLock};

use crate::intern::Interner;

/// Namespace and name of an object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ObjectKey {
    namespace: Arc<str>,
    name: Arc<str>,
}

impl ObjectKey {
    /// The key of `namespace/name`; the namespace is shared with every other key of that namespace.
    pub(crate) fn new(namespace: &str, name: &str) -> Self {
        ObjectKey {
            namespace: shared_namespace(namespace),
            name: name.into(),
        }
    }

    /// The key of the object `name` in the same namespace.
    pub(crate) fn sibling(&self, name: &str) -> Self {
        ObjectKey {
            namespace: self.namespace.clone(),
            name: name.into(),
        }
    }

    pub(crate) fn namespace(&self) -> &str {
        &self.namespace
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Whether this is the key of `namespace/name`.
    #[cfg(test)]
    pub(crate) fn is(&self, namespace: &str, name: &str) -> bool {
        *self.namespace == *namespace && *self.name == *name
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The one copy of a namespace's name that keys share.
fn shared_namespace(namespace: &str) -> Arc<str> {
    static NAMESPACES: OnceLock<Mutex<Interner<str>>> = OnceLock::new();
    crate::sync::lock(NAMESPACES.get_or_init(Default::default)).intern_str(namespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_their_namespace_and_compare_both_parts() {
        let a = ObjectKey::new("team-a", "app");
        let b = ObjectKey::new("team-a", "web");
        assert!(Arc::ptr_eq(&a.namespace, &b.namespace));
        assert!(Arc::ptr_eq(&a.namespace, &a.sibling("x").namespace));
        assert_eq!(a, ObjectKey::new("team-a", "app"));
        assert_ne!(a, ObjectKey::new("team-b", "app"));
        assert_ne!(a, b);
        assert!(a.is("team-a", "app") && !a.is("team-b", "app") && !a.is("team-a", "web"));
        assert_eq!(a.to_string(), "team-a/app");
        assert_eq!((a.namespace(), a.name()), ("team-a", "app"));
        assert!(
            a < b && b < ObjectKey::new("team-b", "a"),
            "namespace first, then name"
        );
        assert_eq!(std::mem::size_of::<ObjectKey>(), 32, "four words, no more");
    }
}
