//! One keyed collection of the replicated state that remembers which keys a block wrote.
//!
//! The map is a persistent ordered map (`imbl::OrdMap`): cloning a [`Table`] is O(1) and the
//! clone shares every node until one side writes, so the node can publish a tip and check a
//! proposal on a copy of the state without copying the state. Iteration is in key order, as with
//! a `BTreeMap`, so nothing that decides an outcome depends on insertion or hashing order.
//!
//! Reads go through [`Deref`] to the map. Every write goes through [`Table::get_mut`],
//! [`Table::insert`], [`Table::remove`] or [`Table::get_or_default`], which record the key as
//! touched; [`Table::take_touched`] hands those keys over once per block, and the node writes
//! exactly those entities (their value now, or their removal) and nothing else. A key touched
//! without a change is written again with the same value, which changes no root.

use std::collections::BTreeSet;
use std::ops::Deref;

use imbl::OrdMap;

#[derive(Debug, Clone)]
pub struct Table<K: Ord + Clone, V: Clone> {
    map: OrdMap<K, V>,
    /// Every key written, in write order, repeats included: a push per write is cheaper than
    /// keeping a set; [`Table::take_touched`] sorts it once per block.
    touched: Vec<K>,
}

impl<K: Ord + Clone, V: Clone> Default for Table<K, V> {
    fn default() -> Self {
        Table {
            map: OrdMap::new(),
            touched: Vec::new(),
        }
    }
}

impl<K: Ord + Clone, V: Clone + PartialEq> PartialEq for Table<K, V> {
    /// Equal contents; which keys were touched is bookkeeping, not state.
    fn eq(&self, other: &Self) -> bool {
        self.map == other.map
    }
}

impl<K: Ord + Clone, V: Clone + Eq> Eq for Table<K, V> {}

impl<K: Ord + Clone, V: Clone> Deref for Table<K, V> {
    type Target = OrdMap<K, V>;

    fn deref(&self) -> &OrdMap<K, V> {
        &self.map
    }
}

impl<'a, K: Ord + Clone, V: Clone> IntoIterator for &'a Table<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = imbl::ordmap::Iter<'a, K, V, imbl::shared_ptr::DefaultSharedPtr>;

    fn into_iter(self) -> Self::IntoIter {
        self.map.iter()
    }
}

impl<K: Ord + Clone, V: Clone> FromIterator<(K, V)> for Table<K, V> {
    /// A table holding these entries with nothing touched (as loaded from the store).
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Table {
            map: iter.into_iter().collect(),
            touched: Vec::new(),
        }
    }
}

impl<K: Ord + Clone, V: Clone> Table<K, V> {
    /// The value under `key`, to change; touches the key if it is there.
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let value = self.map.get_mut(key)?;
        self.touched.push(key.clone());
        Some(value)
    }

    /// The value under `key`, inserted as `V::default()` if absent; touches the key.
    pub fn get_or_default(&mut self, key: K) -> &mut V
    where
        V: Default,
    {
        self.touched.push(key.clone());
        self.map.entry(key).or_default()
    }

    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        self.touched.push(key.clone());
        self.map.insert(key, value)
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        let old = self.map.remove(key)?;
        self.touched.push(key.clone());
        Some(old)
    }

    /// The keys written since the last call, each once, in key order; the table forgets them.
    pub fn take_touched(&mut self) -> BTreeSet<K> {
        std::mem::take(&mut self.touched).into_iter().collect()
    }

    /// The keys written since the last [`Table::take_touched`], each once, in key order.
    pub fn touched(&self) -> BTreeSet<K> {
        self.touched.iter().cloned().collect()
    }

    /// Whether any key was written since the last [`Table::take_touched`].
    pub fn is_touched(&self) -> bool {
        !self.touched.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_write_path_touches_its_key_and_reads_do_not() {
        let mut t: Table<u32, u64> = [(1, 10), (2, 20)].into_iter().collect();
        assert!(!t.is_touched());
        assert_eq!(t.get(&1), Some(&10));
        assert!(t.get_mut(&9).is_none(), "an absent key is not touched");
        assert!(!t.is_touched());

        *t.get_mut(&1).expect("present") += 1;
        t.insert(3, 30);
        t.remove(&2);
        assert!(t.remove(&8).is_none());
        *t.get_or_default(4) += 4;
        assert_eq!(
            t.take_touched().into_iter().collect::<Vec<_>>(),
            [1, 2, 3, 4]
        );
        assert!(!t.is_touched());
        assert_eq!(
            t.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>(),
            [(1, 11), (3, 30), (4, 4)]
        );
    }

    #[test]
    fn a_clone_shares_until_written_and_writes_on_one_side_do_not_show_on_the_other() {
        let a: Table<u32, u64> = (0..1000).map(|i| (i, u64::from(i))).collect();
        let mut b = a.clone();
        *b.get_mut(&7).expect("present") = 70;
        b.remove(&8);
        assert_eq!(a.get(&7), Some(&7));
        assert_eq!(a.get(&8), Some(&8));
        assert_eq!(b.get(&7), Some(&70));
        assert_ne!(a, b);
        assert!(!a.is_touched());
    }

    #[test]
    fn equality_ignores_what_was_touched() {
        let mut a: Table<u32, u64> = [(1, 10)].into_iter().collect();
        let b = a.clone();
        *a.get_mut(&1).expect("present") = 10;
        assert_eq!(a, b);
    }
}
