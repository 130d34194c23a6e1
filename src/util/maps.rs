//! Sorted maps built pair by pair.
//!
//! `collect()` into a `BTreeMap` (and so into a `serde_json::Map`) gathers its input into a vector
//! and sorts it first; that sort is compiled anew for every iterator type collected, some
//! kilobytes each across the crate. Inserting pair by pair shares one `insert` per map type and
//! gives the same map: keys sorted, the last of equal keys kept.

use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// A JSON object from `(key, value)` pairs.
pub fn object<K: Into<String>, V: Into<Value>>(pairs: impl IntoIterator<Item = (K, V)>) -> Map<String, Value> {
    let mut map = Map::new();
    for (key, value) in pairs {
        map.insert(key.into(), value.into());
    }
    map
}

/// A `BTreeMap` from `(key, value)` pairs.
pub fn sorted<K: Ord, V>(pairs: impl IntoIterator<Item = (K, V)>) -> BTreeMap<K, V> {
    let mut map = BTreeMap::new();
    for (key, value) in pairs {
        map.insert(key, value);
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_sorts_keys_and_keeps_the_last_of_equal_keys() {
        let map = object([("b", 1), ("a", 2), ("b", 3)]);
        assert_eq!(serde_json::to_string(&map).unwrap(), r#"{"a":2,"b":3}"#);
    }

    #[test]
    fn sorted_matches_collect() {
        let pairs = [("z", 1), ("m", 2), ("z", 4), ("a", 3)];
        assert_eq!(sorted(pairs), pairs.into_iter().collect::<BTreeMap<_, _>>());
    }
}
