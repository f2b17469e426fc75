//! Sharing one allocation among equal values, for caches that hold many copies of few distinct ones.

use std::collections::HashSet;
use std::hash::Hash;
use std::sync::Arc;

/// Shares one allocation among equal values: most ServiceAccounts of a cluster carry the same registry,
/// audience and principals, so a cache of 10,000 keeps a handful of copies, not 10,000. Values nobody holds
/// any more are dropped once the set has doubled since the last sweep.
#[derive(Debug)]
pub(crate) struct Interner<T: ?Sized> {
    values: HashSet<Arc<T>>,
    swept_at: usize,
}

impl<T: ?Sized> Default for Interner<T> {
    fn default() -> Self {
        Interner {
            values: HashSet::new(),
            swept_at: 0,
        }
    }
}

impl<T: ?Sized + Eq + Hash> Interner<T> {
    /// The shared copy of `value`.
    pub(crate) fn intern(&mut self, value: Arc<T>) -> Arc<T> {
        if let Some(shared) = self.values.get(&value) {
            return shared.clone();
        }
        if self.values.len() >= 2 * self.swept_at + 64 {
            self.values.retain(|v| Arc::strong_count(v) > 1);
            self.swept_at = self.values.len();
        }
        self.values.insert(value.clone());
        value
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.values.len()
    }
}

impl Interner<str> {
    /// The shared copy of `value`, allocated only the first time it is seen.
    pub(crate) fn intern_str(&mut self, value: &str) -> Arc<str> {
        match self.values.get(value) {
            Some(shared) => shared.clone(),
            None => self.intern(Arc::from(value)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interned_names_are_one_allocation() {
        let mut names = Interner::<str>::default();
        let a = names.intern_str("team-a");
        let b = names.intern_str("team-a");
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(&*names.intern_str("team-b"), "team-b");
        assert_eq!(names.len(), 2);
    }

    #[test]
    fn equal_values_share_one_copy_and_unused_ones_are_swept() {
        let mut interner: Interner<str> = Interner::default();
        let a = interner.intern(Arc::from("gcr.io"));
        let b = interner.intern(Arc::from("gcr.io"));
        assert!(Arc::ptr_eq(&a, &b));
        for i in 0..200 {
            interner.intern(Arc::from(format!("unused-{i}").as_str()));
        }
        assert!(interner.len() < 200, "swept: {}", interner.len());
        assert!(
            Arc::ptr_eq(&interner.intern(Arc::from("gcr.io")), &a),
            "held values survive"
        );
    }
}
