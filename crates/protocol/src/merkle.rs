//! The state root as a light client sees it: the tables of the replicated state, how an entity's
//! key is laid out, the hash of the Merkle tree, and the check of a proof that a value is (or is
//! not) in the state under a root.
//!
//! The state is a set of entities keyed by table and id. The root over them is a Jellyfish Merkle
//! tree (the `jmt` crate, from Diem via Penumbra) hashed with BLAKE3: a leaf's key is the BLAKE3 of
//! the entity's [`state_key`] (table tag ‖ key), its value the entity's canonical (borsh) encoding.
//! The node builds and stores the tree (`gpunet-store`); anyone who holds a root checks a proof here
//! without trusting the node that sent it.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::{Address, Balances, Hash, LeaseId, OrderId};

/// An account's money and its next nonce: the value of an entity in [`StateTable::Accounts`],
/// which a light client decodes after checking its proof.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct Account {
    pub balances: Balances,
    /// The nonce its next transaction must carry.
    pub nonce: u64,
    /// Provider stake on its way back (gpn), oldest first, released to the balance at its
    /// height; a slash of the account's provider, while it is registered, reaches it.
    #[serde(default)]
    pub unbonding: Vec<Unbonding>,
}

/// Stake leaving a provider: `amount` gpn, paid to the balance at the end of block
/// `release_height`.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct Unbonding {
    pub amount: crate::Amount,
    pub release_height: u64,
}

impl Account {
    /// Everything unbonding, in all.
    pub fn unbonding_total(&self) -> crate::Amount {
        self.unbonding.iter().fold(crate::Amount::ZERO, |sum, u| {
            sum.checked_add(u.amount).unwrap_or(crate::Amount::MAX)
        })
    }
}

/// BLAKE3 as the tree's hash, for nodes and leaf keys alike.
pub struct Blake3Hasher(blake3::Hasher);

impl jmt::SimpleHasher for Blake3Hasher {
    fn new() -> Self {
        Blake3Hasher(blake3::Hasher::new())
    }

    fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    fn finalize(self) -> [u8; 32] {
        *self.0.finalize().as_bytes()
    }
}

/// A proof that a key holds a value, or holds none, under a root.
pub type SparseProof = jmt::proof::SparseMerkleProof<Blake3Hasher>;

/// The tables of the replicated state. The tag is the first byte of every key in the table and
/// is part of the format: never renumber one.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    BorshSerialize,
    BorshDeserialize,
)]
#[serde(rename_all = "snake_case")]
#[borsh(use_discriminant = true)]
#[repr(u8)]
pub enum StateTable {
    /// Chain-wide singletons: `chain` (height, time, treasury, supply, id counters), `params`.
    Chain = 0,
    /// Address → account (balances, nonce).
    Accounts = 1,
    /// Address → provider.
    Providers = 2,
    /// Order id (big-endian u64) → order, bids included.
    Orders = 3,
    /// Lease id (big-endian u64) → lease.
    Leases = 4,
}

impl StateTable {
    pub const ALL: [StateTable; 5] = [
        StateTable::Chain,
        StateTable::Accounts,
        StateTable::Providers,
        StateTable::Orders,
        StateTable::Leases,
    ];

    pub fn tag(self) -> u8 {
        self as u8
    }

    pub fn from_tag(tag: u8) -> Option<StateTable> {
        StateTable::ALL.into_iter().find(|t| t.tag() == tag)
    }

    /// The name used in the API's paths (`/v1/state/{table}/{key}`).
    pub fn name(self) -> &'static str {
        match self {
            StateTable::Chain => "chain",
            StateTable::Accounts => "accounts",
            StateTable::Providers => "providers",
            StateTable::Orders => "orders",
            StateTable::Leases => "leases",
        }
    }

    pub fn from_name(name: &str) -> Option<StateTable> {
        StateTable::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The key bytes of an entity of this table written as people write it: an address
    /// (`gpn1…`), an order or lease id (`42`, `order-42`), or `chain` / `params` for the
    /// [`StateTable::Chain`] singletons.
    pub fn parse_key(self, text: &str) -> Result<Vec<u8>, String> {
        match self {
            StateTable::Chain => match text {
                "chain" => Ok(CHAIN_KEY.to_vec()),
                "params" => Ok(PARAMS_KEY.to_vec()),
                _ => Err(format!(
                    "{text:?} is not a key of the chain table: use `chain` or `params`"
                )),
            },
            StateTable::Accounts | StateTable::Providers => text
                .parse::<Address>()
                .map(|a| a.0.to_vec())
                .map_err(|e| e.to_string()),
            StateTable::Orders => text
                .parse::<OrderId>()
                .map(|id| id_key(id.0).to_vec())
                .map_err(|e| e.to_string()),
            StateTable::Leases => text
                .parse::<LeaseId>()
                .map(|id| id_key(id.0).to_vec())
                .map_err(|e| e.to_string()),
        }
    }
}

impl std::fmt::Display for StateTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Key of the chain's counters, height and supply in [`StateTable::Chain`].
pub const CHAIN_KEY: &[u8] = b"chain";
/// Key of the chain's parameters in [`StateTable::Chain`].
pub const PARAMS_KEY: &[u8] = b"params";

/// An order or lease id as a key: big-endian, so keys sort in id order.
pub fn id_key(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

/// One entity a block wrote: its full key ([`state_key`]) and its new encoding, or `None` when
/// the block removed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateWrite {
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

/// The most entities one [`StateChunk`] holds.
pub const MAX_CHUNK_ENTITIES: usize = 4096;

/// One chunk of a state snapshot, as state sync moves it between nodes: entities in leaf-key
/// order (the tree's order) after the previous chunk's last, and the proof that they, with every
/// entity before them, are the leftmost leaves of the tree whose root the snapshot names. The
/// receiver derives each leaf key from the state key itself, so a sender cannot pair a value
/// with another entity's place in the tree.
#[derive(Debug, Clone, PartialEq, Eq, borsh::BorshSerialize, borsh::BorshDeserialize)]
pub struct StateChunk {
    /// (state key, encoding), in increasing [`leaf_key`] order; never empty.
    pub entities: Vec<(Vec<u8>, Vec<u8>)>,
    /// Borsh of the `jmt` range proof (the right siblings of the path to the last entity).
    pub proof: Vec<u8>,
    /// No entity follows the last one: the snapshot is complete with this chunk.
    pub last: bool,
}

/// The range proof a [`StateChunk`] carries.
pub type RangeProof = jmt::proof::SparseMerkleRangeProof<Blake3Hasher>;

/// The full key of an entity: its table's tag, then its key.
pub fn state_key(table: StateTable, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + key.len());
    out.push(table.tag());
    out.extend_from_slice(key);
    out
}

/// The key of an account's entity.
pub fn account_key(address: &Address) -> Vec<u8> {
    state_key(StateTable::Accounts, &address.0)
}

/// The leaf key an entity has in the tree.
pub fn leaf_key(state_key: &[u8]) -> jmt::KeyHash {
    jmt::KeyHash::with::<Blake3Hasher>(state_key)
}

/// Why a state proof does not show what it was offered for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("the proof is not a Merkle proof this client reads: {0}")]
    Malformed(String),
    #[error("the proof does not match root {root}: {why}")]
    Mismatch { root: Hash, why: String },
}

/// Checks that, under `root`, the entity `state_key` holds `value` (its encoding), or holds
/// nothing when `value` is `None`. `proof` is the borsh encoding of a [`SparseProof`], as the
/// node's `GET /v1/state/{table}/{key}?proof=true` sends it (hex-decoded).
pub fn verify_proof(
    root: Hash,
    state_key: &[u8],
    value: Option<&[u8]>,
    proof: &[u8],
) -> Result<(), ProofError> {
    let proof: SparseProof =
        borsh::from_slice(proof).map_err(|e| ProofError::Malformed(e.to_string()))?;
    proof
        .verify(jmt::RootHash(root.0), leaf_key(state_key), value)
        .map_err(|e| ProofError::Mismatch {
            root,
            why: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_round_trip_by_tag_and_name_and_tags_are_fixed() {
        for t in StateTable::ALL {
            assert_eq!(StateTable::from_tag(t.tag()), Some(t));
            assert_eq!(StateTable::from_name(t.name()), Some(t));
        }
        // The tags are part of the format: a renumbering changes every root.
        let tags: Vec<u8> = StateTable::ALL.iter().map(|t| t.tag()).collect();
        assert_eq!(tags, [0, 1, 2, 3, 4]);
        assert_eq!(StateTable::from_tag(5), None);
        assert_eq!(StateTable::from_name("bids"), None);
    }

    #[test]
    fn keys_parse_from_what_people_write_and_bad_keys_say_what_is_expected() {
        assert_eq!(
            StateTable::Orders.parse_key("order-258"),
            Ok(vec![0, 0, 0, 0, 0, 0, 1, 2])
        );
        assert_eq!(StateTable::Leases.parse_key("7"), Ok(id_key(7).to_vec()));
        assert_eq!(
            StateTable::Chain.parse_key("params"),
            Ok(b"params".to_vec())
        );
        let e = StateTable::Chain
            .parse_key("height")
            .expect_err("not a key");
        assert!(e.contains("`chain` or `params`"), "{e}");
        let e = StateTable::Accounts
            .parse_key("alice")
            .expect_err("not an address");
        assert!(e.contains("gpn1"), "{e}");
        assert!(StateTable::Orders.parse_key("order-x").is_err());
    }

    #[test]
    fn id_keys_sort_bytewise_in_numeric_order() {
        let ids = [0u64, 1, 255, 256, 65_536, 1 << 40, u64::MAX];
        for pair in ids.windows(2) {
            assert!(id_key(pair[0]) < id_key(pair[1]));
        }
    }

    #[test]
    fn a_garbled_proof_is_refused_as_malformed() {
        let e =
            verify_proof(Hash([1; 32]), b"\x01abc", Some(b"v"), &[0xff; 7]).expect_err("garbled");
        assert!(matches!(e, ProofError::Malformed(_)), "{e}");
    }
}
