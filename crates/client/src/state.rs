//! Reading the replicated state with Merkle proofs, so that a value the node serves is checked
//! against the state root the chain committed rather than taken on the node's word.
//!
//! What is checked: the proof that the entity holds exactly these bytes (or nothing) under the
//! root of a height, and that this root is the one the node's block record for that height
//! carries. What is not (yet): that the block record is the one the validators signed. A single
//! node can therefore still lie about a root, but it cannot serve a value that differs from the
//! state it committed; comparing roots across nodes, or checking the commit certificate, closes
//! that gap.

use gpunet_api::node::{BlockView, StateEntryView};
use gpunet_protocol::merkle::{self, StateTable};
use gpunet_protocol::{Account, Address, Hash};

use crate::{ClientError, NodeClient};

/// An account read with a checked proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAccount {
    pub height: u64,
    /// The state root the proof was checked against.
    pub root: Hash,
    /// `None`: the proof shows the account does not exist (nothing was ever sent to it).
    pub account: Option<Account>,
}

fn unverified(what: impl Into<String>, why: impl Into<String>) -> ClientError {
    ClientError::Unverified {
        what: what.into(),
        why: why.into(),
    }
}

fn hex_field(what: &str, field: &str, value: Option<&str>) -> Result<Vec<u8>, ClientError> {
    let text = value.ok_or_else(|| unverified(what, format!("the answer has no {field}")))?;
    hex::decode(text).map_err(|e| unverified(what, format!("{field} is not hex: {e}")))
}

impl NodeClient {
    /// `GET /v1/state/{table}/{key}`: an entity at the latest (or a kept) height, with its
    /// proof if asked. Nothing is checked here; see [`NodeClient::verified_account`].
    pub async fn state_entry(
        &self,
        table: StateTable,
        key: &str,
        proof: bool,
        height: Option<u64>,
    ) -> Result<StateEntryView, ClientError> {
        let mut path = format!("/v1/state/{}/{key}?proof={proof}", table.name());
        if let Some(h) = height {
            path.push_str(&format!("&height={h}"));
        }
        self.get(&path).await
    }

    pub async fn block(&self, height: u64) -> Result<BlockView, ClientError> {
        self.get(&format!("/v1/blocks/{height}")).await
    }

    /// An account's balances and nonce, proven: the node's Merkle proof is checked against the
    /// state root of the block record at that height, and the value decoded from the proven
    /// bytes (not from the node's JSON).
    pub async fn verified_account(
        &self,
        address: &Address,
    ) -> Result<VerifiedAccount, ClientError> {
        let what = format!("account {address}");
        let entry = self
            .state_entry(StateTable::Accounts, &address.to_string(), true, None)
            .await?;
        let key = merkle::account_key(address);
        let key_hex = hex::encode(&key);
        if entry.key_hex != key_hex {
            return Err(unverified(
                &what,
                format!("the node answered for key {} instead", entry.key_hex),
            ));
        }
        if entry.height == 0 {
            return Err(unverified(
                &what,
                "the chain has no block yet whose root could be checked; try again after block 1",
            ));
        }
        let root_bytes = hex_field(&what, "root", entry.root.as_deref())?;
        let root = Hash(
            root_bytes
                .try_into()
                .map_err(|_| unverified(&what, "the root is not 32 bytes"))?,
        );
        let block = self.block(entry.height).await?;
        if block.state_root != root {
            return Err(unverified(
                &what,
                format!(
                    "the proof is against root {root} but block {} committed root {}",
                    entry.height, block.state_root
                ),
            ));
        }
        let proof = hex_field(&what, "proof_hex", entry.proof_hex.as_deref())?;
        let value = match (entry.found, entry.value_hex.as_deref()) {
            (true, Some(v)) => {
                Some(hex::decode(v).map_err(|e| unverified(&what, format!("value_hex: {e}")))?)
            }
            (false, None) => None,
            _ => {
                return Err(unverified(
                    &what,
                    "`found` and `value_hex` disagree in the answer",
                ));
            }
        };
        merkle::verify_proof(root, &key, value.as_deref(), &proof)
            .map_err(|e| unverified(&what, e.to_string()))?;
        let account = value
            .map(|v| {
                borsh::from_slice::<Account>(&v).map_err(|e| {
                    unverified(&what, format!("the proven value does not decode: {e}"))
                })
            })
            .transpose()?;
        Ok(VerifiedAccount {
            height: entry.height,
            root,
            account,
        })
    }
}
