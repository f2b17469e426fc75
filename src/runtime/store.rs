//! What every cache of watched objects shares, whatever the objects: the order of resourceVersions, UIDs and
//! versions kept small, and relist bookkeeping.
//!
//! What must stay true: a cache never goes back to an older version of an object than one it holds (a
//! reconcile puts what it wrote into the cache before the watch echoes it, and an event from before that
//! write may still be on its way); after a relist, objects that were not listed are gone from the cache.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};

/// Whether `candidate` is an older resourceVersion than `held`. Kubernetes calls resourceVersions opaque,
/// but every apiserver backed by etcd issues them as increasing integers (client-go's watch cache relies on
/// it too); anything that does not parse is never called older, so the newest event simply wins.
pub fn is_older(candidate: &str, held: &str) -> bool {
    match (candidate.parse::<u64>(), held.parse::<u64>()) {
        (Ok(candidate), Ok(held)) => candidate < held,
        _ => false,
    }
}

/// A UID or resourceVersion kept small: Kubernetes issues UIDs as lower-case UUIDs and etcd-backed
/// resourceVersions as decimal integers, which fit in 16 and 8 bytes instead of a 36- or 8-character string
/// on the heap. Anything else is kept as it is; the text always comes back exactly as it was. The UUID is kept
/// as bytes, not a `u128`, whose 16-byte alignment would make every `CompactStr` 32 bytes instead of 24.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) enum CompactStr {
    Number(u64),
    Uuid([u8; 16]),
    Text(Box<str>),
}

impl CompactStr {
    pub(crate) fn new(text: &str) -> Self {
        let canonical_number = !text.is_empty()
            && text.len() <= 19
            && text.bytes().all(|b| b.is_ascii_digit())
            && (text == "0" || !text.starts_with('0'));
        if canonical_number {
            if let Ok(number) = text.parse() {
                return CompactStr::Number(number);
            }
        }
        let bytes = text.as_bytes();
        let uuid_shape = bytes.len() == 36
            && bytes.iter().enumerate().all(|(i, b)| match i {
                8 | 13 | 18 | 23 => *b == b'-',
                _ => b.is_ascii_digit() || (b'a'..=b'f').contains(b),
            });
        if uuid_shape {
            let hex: String = text.chars().filter(|c| *c != '-').collect();
            if let Ok(value) = u128::from_str_radix(&hex, 16) {
                return CompactStr::Uuid(value.to_be_bytes());
            }
        }
        CompactStr::Text(text.into())
    }

    /// Whether this is `text`.
    pub(crate) fn is(&self, text: &str) -> bool {
        *self == CompactStr::new(text)
    }
}

impl std::fmt::Display for CompactStr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CompactStr::Number(n) => write!(f, "{n}"),
            CompactStr::Uuid(bytes) => {
                let hex = format!("{:032x}", u128::from_be_bytes(*bytes));
                write!(
                    f,
                    "{}-{}-{}-{}-{}",
                    &hex[0..8],
                    &hex[8..12],
                    &hex[12..16],
                    &hex[16..20],
                    &hex[20..32]
                )
            }
            CompactStr::Text(text) => f.write_str(text),
        }
    }
}

impl std::fmt::Debug for CompactStr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.to_string())
    }
}

/// Whether version `candidate` is older than `held` (see [`is_older`]).
pub(crate) fn is_older_version(candidate: &CompactStr, held: &CompactStr) -> bool {
    match (candidate, held) {
        (CompactStr::Number(c), CompactStr::Number(h)) => c < h,
        _ => false,
    }
}

/// The keys seen since a list started, to find what disappeared while no watch was open. Only a 64-bit hash
/// of each key is kept: a list of 50,000 pods must not cost 50,000 copies of their names.
#[derive(Debug, Default)]
pub(crate) struct Relist {
    listed: Option<Listed>,
}

/// The keys one list delivered.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Listed(HashSet<u64>);

impl Listed {
    pub(crate) fn contains(&self, namespace: &str, name: &str) -> bool {
        self.0.contains(&key_hash(namespace, name))
    }
}

/// A 64-bit hash of a namespaced key, for what is only ever compared within this process.
pub(crate) fn key_hash(namespace: &str, name: &str) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (namespace, name).hash(&mut hasher);
    hasher.finish()
}

impl Relist {
    pub(crate) fn start(&mut self) {
        self.listed = Some(Listed::default());
    }

    pub(crate) fn saw(&mut self, namespace: &str, name: &str) {
        if let Some(listed) = self.listed.as_mut() {
            listed.0.insert(key_hash(namespace, name));
        }
    }

    /// Ends the list; returns the keys seen, or `None` when no list was running.
    pub(crate) fn finish(&mut self) -> Option<Listed> {
        self.listed.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_strings_come_back_exactly() {
        for text in [
            "0b6e5c1e-5d2f-4a57-9c8e-0a1b2c3d4e5f",
            "0B6E5C1E-5D2F-4A57-9C8E-0A1B2C3D4E5F",
            "1234567",
            "0",
            "007",
            "99999999999999999999",
            "",
            "abc",
        ] {
            assert_eq!(CompactStr::new(text).to_string(), text);
            assert!(CompactStr::new(text).is(text));
        }
        assert!(matches!(CompactStr::new("42"), CompactStr::Number(42)));
        assert!(matches!(
            CompactStr::new("0b6e5c1e-5d2f-4a57-9c8e-0a1b2c3d4e5f"),
            CompactStr::Uuid(_)
        ));
        assert!(is_older_version(
            &CompactStr::new("9"),
            &CompactStr::new("10")
        ));
        assert!(!is_older_version(
            &CompactStr::new("x"),
            &CompactStr::new("10")
        ));
        assert_eq!(
            std::mem::size_of::<CompactStr>(),
            24,
            "three words, no more"
        );
    }

    #[test]
    fn older_only_when_both_are_numbers() {
        assert!(is_older("9", "10"));
        assert!(!is_older("10", "10"));
        assert!(!is_older("11", "10"));
        assert!(!is_older("abc", "10"));
        assert!(!is_older("9", ""));
    }

    #[test]
    fn relist_collects_between_start_and_finish() {
        let mut relist = Relist::default();
        relist.saw("n", "a");
        assert_eq!(relist.finish(), None);
        relist.start();
        relist.saw("n", "b");
        let listed = relist.finish().unwrap();
        assert!(listed.contains("n", "b"));
        assert!(!listed.contains("n", "a") && !listed.contains("m", "b"));
    }
}
