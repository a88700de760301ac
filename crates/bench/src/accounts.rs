//! The accounts the ledger and consensus benchmarks sign with: deterministic keys, a genesis
//! funding them all, and signed transactions on the `bench` chain.

use ed25519_dalek::SigningKey;
use gpunet_ledger::{Genesis, GenesisAccount, Params, State};
use gpunet_protocol::{Address, Amount, Balances, Msg, SignedTx, TxBody};

const CHAIN: &str = "bench";

/// Bench key `i` (the same key in every run).
pub(crate) fn key(i: u64) -> SigningKey {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&i.to_le_bytes());
    seed[8] = 0xbe;
    SigningKey::from_bytes(&seed)
}

pub(crate) fn addr(k: &SigningKey) -> Address {
    Address::from_key(&k.verifying_key())
}

pub(crate) fn units(n: u64) -> Amount {
    Amount::from_units(n).expect("bench constants fit")
}

/// The state at a genesis funding `keys`.
pub(crate) fn genesis(keys: &[SigningKey]) -> State {
    State::from_genesis(&ledger_genesis(keys)).expect("bench genesis is valid")
}

/// A genesis of the `bench` chain funding each of `keys` with 1,000,000 usd and gpn.
pub(crate) fn ledger_genesis(keys: &[SigningKey]) -> Genesis {
    Genesis {
        chain_id: CHAIN.into(),
        genesis_time_ms: 0,
        params: Params::default(),
        accounts: keys
            .iter()
            .map(|k| GenesisAccount {
                address: addr(k),
                balances: Balances {
                    usd: units(1_000_000),
                    gpn: units(1_000_000),
                },
            })
            .collect(),
    }
}

/// `msg` signed by `k` at `nonce`, paying the default minimum fee.
pub(crate) fn sign(k: &SigningKey, nonce: u64, msg: Msg) -> SignedTx {
    TxBody {
        chain_id: CHAIN.into(),
        signer: addr(k),
        nonce,
        fee: Params::default().min_tx_fee,
        msg,
    }
    .sign(k)
}
