//! `Attrs`, the flat attribute map every mapped object is: path → value, kept
//! compact because a cycle holds one or two per object (a million users).
//!
//! A sorted vector instead of a `BTreeMap` (a B-tree leaf is sized for eleven
//! entries; an object has six or so), and paths interned: a cycle names a few
//! dozen distinct paths a million times, so each is one shared allocation. It
//! reads, iterates, compares and serializes exactly as the map did (in path order).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};

/// Distinct paths shared at most; past this (a script inventing paths per
/// object), a path is its own allocation.
const MAX_INTERNED: usize = 4096;

/// An attribute path, shared between every map that names it.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Path(Arc<str>);

impl Path {
    pub fn new(s: &str) -> Path {
        static PATHS: OnceLock<Mutex<HashSet<Arc<str>>>> = OnceLock::new();
        let paths = PATHS.get_or_init(Default::default);
        let Ok(mut paths) = paths.lock() else {
            return Path(Arc::from(s));
        };
        if let Some(p) = paths.get(s) {
            return Path(Arc::clone(p));
        }
        let p: Arc<str> = Arc::from(s);
        if paths.len() < MAX_INTERNED {
            paths.insert(Arc::clone(&p));
        }
        Path(p)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for Path {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Path {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Path {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Debug for Path {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&*self.0, f)
    }
}

impl PartialEq<Path> for String {
    fn eq(&self, other: &Path) -> bool {
        **self == *other.0
    }
}

impl AsRef<str> for Path {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Mapped attributes of one object: path → value, in path order.
/// `Value::Null` means "clear it".
#[derive(Clone, Default, PartialEq)]
pub struct Attrs(Vec<(Path, Value)>);

impl Attrs {
    pub fn new() -> Attrs {
        Attrs(Vec::new())
    }

    fn find(&self, k: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(p, _)| (**p).cmp(k))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, k: &str) -> Option<&Value> {
        self.find(k).ok().map(|i| &self.0[i].1)
    }

    pub fn get_mut(&mut self, k: &str) -> Option<&mut Value> {
        self.find(k).ok().map(|i| &mut self.0[i].1)
    }

    pub fn contains_key(&self, k: &str) -> bool {
        self.find(k).is_ok()
    }

    /// Sets a path's value; the value it had, if any.
    pub fn insert(&mut self, k: impl AsRef<str>, v: Value) -> Option<Value> {
        let k = k.as_ref();
        match self.find(k) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, v)),
            Err(i) => {
                self.0.insert(i, (Path::new(k), v));
                None
            }
        }
    }

    pub fn remove(&mut self, k: &str) -> Option<Value> {
        self.find(k).ok().map(|i| self.0.remove(i).1)
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&Path, &Value)> + ExactSizeIterator {
        self.0.iter().map(|(p, v)| (p, v))
    }

    pub fn iter_mut(
        &mut self,
    ) -> impl DoubleEndedIterator<Item = (&Path, &mut Value)> + ExactSizeIterator {
        self.0.iter_mut().map(|(p, v)| (&*p, v))
    }

    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &Path> + ExactSizeIterator {
        self.0.iter().map(|(p, _)| p)
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &Value> + ExactSizeIterator {
        self.0.iter().map(|(_, v)| v)
    }

    /// Gives back what a whole map of this size needs no more of.
    fn shrink_to_fit(&mut self) {
        self.0.shrink_to_fit();
    }
}

impl<K: AsRef<str>> Extend<(K, Value)> for Attrs {
    fn extend<I: IntoIterator<Item = (K, Value)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

impl<K: AsRef<str>> FromIterator<(K, Value)> for Attrs {
    fn from_iter<I: IntoIterator<Item = (K, Value)>>(iter: I) -> Attrs {
        let mut a = Attrs::new();
        a.extend(iter);
        a.shrink_to_fit();
        a
    }
}

impl<K: AsRef<str>, const N: usize> From<[(K, Value); N]> for Attrs {
    fn from(items: [(K, Value); N]) -> Attrs {
        items.into_iter().collect()
    }
}

impl IntoIterator for Attrs {
    type Item = (Path, Value);
    type IntoIter = std::vec::IntoIter<(Path, Value)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a Attrs {
    type Item = (&'a Path, &'a Value);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (Path, Value)>,
        fn(&'a (Path, Value)) -> (&'a Path, &'a Value),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(p, v)| (p, v))
    }
}

impl std::fmt::Debug for Attrs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for Attrs {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter().map(|(p, v)| (p.as_str(), v)))
    }
}

impl<'de> Deserialize<'de> for Attrs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Attrs, D::Error> {
        let map = std::collections::BTreeMap::<String, Value>::deserialize(d)?;
        Ok(map.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The compact map behaves as the `BTreeMap` it replaces: path order,
    /// last write wins, the same JSON.
    #[test]
    fn attrs_read_and_write_as_an_ordered_map() {
        let mut a = Attrs::new();
        assert_eq!(a.insert("userName", json!("a")), None);
        a.insert(String::from("active"), json!(true));
        a.insert("name.givenName", json!("Ann"));
        assert_eq!(a.insert("userName", json!("b")), Some(json!("a")));
        let keys: Vec<&str> = a.keys().map(|k| k.as_str()).collect();
        assert_eq!(keys, ["active", "name.givenName", "userName"]);
        assert_eq!(a.get("userName"), Some(&json!("b")));
        let text = serde_json::to_string(&a).unwrap_or_default();
        assert_eq!(
            text,
            r#"{"active":true,"name.givenName":"Ann","userName":"b"}"#
        );
        let back: Attrs = serde_json::from_str(&text).unwrap_or_default();
        assert_eq!(back, a);
        assert_eq!(a.remove("active"), Some(json!(true)));
        assert!(!a.contains_key("active"));
        let b: Attrs = [("userName", json!("b")), ("name.givenName", json!("Ann"))].into();
        assert_eq!(a, b);
        // One allocation per distinct path, shared by every map.
        let (x, y) = (
            Path::new("emails[type eq \"work\"].value"),
            Path::new("emails[type eq \"work\"].value"),
        );
        assert!(Arc::ptr_eq(&x.0, &y.0));
    }
}
