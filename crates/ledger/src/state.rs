//! The whole replicated state, its genesis, and its root.
//!
//! Every collection is a `BTreeMap` or `BTreeSet`, so iteration order — and with it every
//! outcome and the borsh encoding the root is hashed from — is the same on every machine.

use std::collections::{BTreeMap, BTreeSet};

use borsh::{BorshDeserialize, BorshSerialize};
use gpunet_protocol::{
    Address, Amount, Balances, Denom, Free, Hash, LeaseEndReason, LeaseId, LeaseResult, OrderId,
    OrderTerms, ProviderProfile, Resources,
};
use serde::{Deserialize, Serialize};

use crate::Params;

/// An account's money and its next nonce.
#[derive(Debug, Clone, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct Account {
    pub balances: Balances,
    /// The nonce its next transaction must carry.
    pub nonce: u64,
}

/// A registered provider.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct Provider {
    pub address: Address,
    pub profile: ProviderProfile,
    /// Locked gpn.
    pub stake: Amount,
    pub registered_height: u64,
    /// Leases not yet ended.
    pub live_leases: BTreeSet<LeaseId>,
    /// Track record, the seed of reputation.
    pub leases_completed: u64,
    pub leases_failed: u64,
    /// Height of its last heartbeat (its registration until the first).
    pub last_heartbeat_height: u64,
    /// It announced it is leaving: it takes no new leases.
    pub leaving: bool,
}

/// One provider's offer on an order.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct Bid {
    pub provider: Address,
    pub price_per_hour: Amount,
    pub height: u64,
    /// Order of arrival within the order: earlier wins a tie on price.
    pub seq: u32,
}

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum OrderStatus {
    /// Taking bids.
    Open,
    /// Matched; the lease holds the work.
    Leased { lease: LeaseId },
    /// No provider matched before the order's time-to-live ran out.
    Expired,
    /// The tenant cancelled it before a match.
    Cancelled,
    /// Its last lease ended and no retry followed.
    Closed { lease: LeaseId },
}

/// A tenant's request for work, holding the deposit in escrow.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct Order {
    pub id: OrderId,
    pub tenant: Address,
    pub terms: OrderTerms,
    pub created_height: u64,
    pub created_ms: u64,
    pub status: OrderStatus,
    /// Usd held for this order; zero once it ends.
    pub escrow: Amount,
    /// Usd added to the escrow after the deposit, by anyone.
    pub topped_up: Amount,
    pub bids: Vec<Bid>,
    next_bid_seq: u32,
    /// Every lease the order has had, one per attempt, oldest first.
    pub attempts: Vec<LeaseId>,
    /// Providers of failed or lost attempts, sorted: their bids are refused.
    pub excluded: Vec<Address>,
    /// Height the order (re)opened at: its bid window and time-to-live count from here.
    pub open_since_height: u64,
    /// No match before this block time (the recovery backoff after a failed attempt).
    pub not_before_ms: u64,
}

/// Where a lease is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum LeaseStatus {
    /// Created; waiting for the provider to start the workload. Not billed.
    Pending,
    /// Running since `started_ms`; billed every block up to its last proof of life.
    Running,
    /// The escrow ran out: the workload is stopped, billing stopped, until a top-up or the
    /// end of the grace period.
    Paused {
        since_height: u64,
    },
    Ended {
        reason: LeaseEndReason,
    },
}

/// A provider's commitment to run an order at a price.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct Lease {
    pub id: LeaseId,
    pub order: OrderId,
    pub tenant: Address,
    pub provider: Address,
    pub price_per_hour: Amount,
    pub resources: Resources,
    /// Indices into the provider's GPU list held by this lease.
    pub gpu_slots: Vec<u32>,
    pub created_height: u64,
    pub created_ms: u64,
    pub started_ms: Option<u64>,
    pub ended_ms: Option<u64>,
    pub status: LeaseStatus,
    /// Which attempt of its order this is, from 1.
    pub attempt: u32,
    /// Block time of the provider's last proof that the workload runs (start, a heartbeat
    /// listing it, its completion): billing never passes it.
    pub last_proof_ms: u64,
    /// Height of that proof (or of a resume): `liveness_timeout_blocks` count from here.
    pub last_proof_height: u64,
    /// Proven running time of the segments before the current one (a pause closes one).
    pub accrued_ms: u64,
    /// Block time the current running segment began (start or resume).
    pub segment_start_ms: u64,
    /// An `escrow_low` warning went out and no top-up came since.
    pub warned_low: bool,
    /// Milliseconds billed so far.
    pub billed_ms: u64,
    /// Paid out of escrow so far, fee included.
    pub paid: Amount,
    /// The protocol's share of `paid`.
    pub fee: Amount,
    /// Returned to the tenant when the lease ended.
    pub refund: Amount,
    pub result: Option<LeaseResult>,
}

impl Lease {
    pub fn is_live(&self) -> bool {
        !matches!(self.status, LeaseStatus::Ended { .. })
    }

    /// Running time proven by the provider's proofs of life: the closed segments plus the
    /// running one up to the last proof. Billing never passes this (nor the max duration).
    pub fn proven_ms(&self) -> u64 {
        let open = match self.status {
            LeaseStatus::Running => self.last_proof_ms.saturating_sub(self.segment_start_ms),
            _ => 0,
        };
        self.accrued_ms.saturating_add(open)
    }
}

/// Money ever created and destroyed, per denomination.
#[derive(Debug, Clone, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct Supply {
    pub minted: Balances,
    pub burned: Balances,
}

/// The starting point of a chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Genesis {
    pub chain_id: String,
    pub genesis_time_ms: u64,
    pub params: Params,
    /// Initial balances; the only money ever minted outside a transaction.
    pub accounts: Vec<GenesisAccount>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenesisAccount {
    pub address: Address,
    pub balances: Balances,
}

/// Why a genesis cannot start a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GenesisError {
    DuplicateAccount(Address),
    SupplyOverflow(Denom),
    EmptyChainId,
    BadParams(&'static str),
}

impl std::fmt::Display for GenesisError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GenesisError::DuplicateAccount(a) => write!(f, "genesis lists account {a} twice"),
            GenesisError::SupplyOverflow(d) => write!(f, "genesis {d} balances overflow"),
            GenesisError::EmptyChainId => write!(f, "genesis chain_id is empty"),
            GenesisError::BadParams(why) => write!(f, "genesis params: {why}"),
        }
    }
}

impl std::error::Error for GenesisError {}

/// The replicated state.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct State {
    pub chain_id: String,
    /// Height of the last applied block (0 at genesis).
    pub height: u64,
    /// Time of the last applied block.
    pub time_ms: u64,
    pub params: Params,
    pub accounts: BTreeMap<Address, Account>,
    pub providers: BTreeMap<Address, Provider>,
    pub orders: BTreeMap<OrderId, Order>,
    pub leases: BTreeMap<LeaseId, Lease>,
    /// Index: orders with status Open.
    pub open_orders: BTreeSet<OrderId>,
    /// Index: leases not ended.
    pub live_leases: BTreeSet<LeaseId>,
    pub treasury: Balances,
    pub supply: Supply,
    pub next_order_id: u64,
    pub next_lease_id: u64,
}

impl State {
    /// The state at height 0.
    pub fn from_genesis(g: &Genesis) -> Result<State, GenesisError> {
        if g.chain_id.is_empty() {
            return Err(GenesisError::EmptyChainId);
        }
        g.params.validate().map_err(GenesisError::BadParams)?;
        let mut accounts = BTreeMap::new();
        let mut minted = Balances::default();
        for a in &g.accounts {
            for d in Denom::ALL {
                let total = minted.get(d).checked_add(a.balances.get(d));
                *minted.get_mut(d) = total.ok_or(GenesisError::SupplyOverflow(d))?;
            }
            let prev = accounts.insert(
                a.address,
                Account {
                    balances: a.balances,
                    nonce: 0,
                },
            );
            if prev.is_some() {
                return Err(GenesisError::DuplicateAccount(a.address));
            }
        }
        Ok(State {
            chain_id: g.chain_id.clone(),
            height: 0,
            time_ms: g.genesis_time_ms,
            params: g.params.clone(),
            accounts,
            providers: BTreeMap::new(),
            orders: BTreeMap::new(),
            leases: BTreeMap::new(),
            open_orders: BTreeSet::new(),
            live_leases: BTreeSet::new(),
            treasury: Balances::default(),
            supply: Supply {
                minted,
                burned: Balances::default(),
            },
            next_order_id: 1,
            next_lease_id: 1,
        })
    }

    /// Canonical encoding of the whole state.
    pub fn encode(&self) -> Vec<u8> {
        borsh::to_vec(self).expect("borsh encoding into a Vec cannot fail")
    }

    /// Decodes a state the node stored itself.
    pub fn decode(bytes: &[u8]) -> Result<State, std::io::Error> {
        borsh::from_slice(bytes)
    }

    /// BLAKE3 of the canonical encoding: equal roots mean equal states.
    pub fn root(&self) -> Hash {
        Hash::of(&self.encode())
    }

    pub fn balance(&self, who: &Address, denom: Denom) -> Amount {
        self.accounts
            .get(who)
            .map_or(Amount::ZERO, |a| a.balances.get(denom))
    }

    pub fn nonce(&self, who: &Address) -> u64 {
        self.accounts.get(who).map_or(0, |a| a.nonce)
    }

    /// What a provider has free now: its capacity less its live leases.
    pub fn provider_free(&self, provider: &Provider) -> Free {
        let mut free = Free::all_of(&provider.profile.capacity);
        for id in &provider.live_leases {
            if let Some(l) = self.leases.get(id) {
                free.take(&l.resources, &l.gpu_slots);
            }
        }
        free
    }
}

impl Order {
    pub(crate) fn new(
        id: OrderId,
        tenant: Address,
        terms: OrderTerms,
        height: u64,
        time_ms: u64,
    ) -> Order {
        Order {
            id,
            tenant,
            escrow: terms.deposit,
            topped_up: Amount::ZERO,
            terms,
            created_height: height,
            created_ms: time_ms,
            status: OrderStatus::Open,
            bids: Vec::new(),
            next_bid_seq: 0,
            attempts: Vec::new(),
            excluded: Vec::new(),
            open_since_height: height,
            not_before_ms: time_ms,
        }
    }

    pub(crate) fn take_bid_seq(&mut self) -> u32 {
        let s = self.next_bid_seq;
        self.next_bid_seq = self.next_bid_seq.saturating_add(1);
        s
    }
}
