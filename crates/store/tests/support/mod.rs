//! A synthetic chain of entity writes, derived from the height alone, and the entities it leaves.

#![allow(dead_code)] // Each test binary uses its own part of it.

use std::collections::BTreeMap;

use gpunet_protocol::merkle::StateWrite;

pub const CHAIN_ID: &str = "gpunet-test-1";
pub const GENESIS: &[u8] = b"genesis bytes";

/// An entity key: a table tag, then a big-endian id.
pub fn key(table: u8, id: u64) -> Vec<u8> {
    let mut k = vec![table];
    k.extend_from_slice(&id.to_be_bytes());
    k
}

fn set(table: u8, id: u64, value: String) -> StateWrite {
    StateWrite {
        key: key(table, id),
        value: Some(value.into_bytes()),
    }
}

/// Ten accounts and the chain singleton.
pub fn genesis_entities() -> Vec<StateWrite> {
    let mut out = vec![set(0, 0, "chain at 0".to_owned())];
    out.extend((0..10).map(|i| set(1, i, format!("account {i} at genesis"))));
    out
}

/// What height `height` writes: the chain singleton, one account (new or changed), and in table 3
/// one entity set and, every fourth height, another removed. Each key at most once.
pub fn changes_at(height: u64) -> Vec<StateWrite> {
    let mut out = vec![
        set(0, 0, format!("chain at {height}")),
        // Values of varying length, so that a torn write cannot pass for a whole one.
        set(
            1,
            height % 13,
            format!(
                "account {} at {height} {}",
                height % 13,
                "x".repeat((height % 7) as usize * 40)
            ),
        ),
        set(3, 100 + (height + 2) % 5, format!("order at {height}")),
    ];
    if height.is_multiple_of(4) {
        out.push(StateWrite {
            key: key(3, 100 + height % 5),
            value: None,
        });
    }
    out
}

/// The entities after `height`.
pub fn model_at(height: u64) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut m = BTreeMap::new();
    let heights = std::iter::once(genesis_entities()).chain((1..=height).map(changes_at));
    for writes in heights {
        for w in writes {
            match w.value {
                Some(v) => m.insert(w.key, v),
                None => m.remove(&w.key),
            };
        }
    }
    m
}

/// Every entity the store holds at its head.
pub fn entities(store: &gpunet_store::Store) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut m = BTreeMap::new();
    store
        .for_each_entity(|k, v| {
            m.insert(k.to_vec(), v.to_vec());
            Ok::<(), gpunet_store::StoreError>(())
        })
        .expect("read entities");
    m
}
