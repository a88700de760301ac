//! The whole replicated state, its genesis, and the entities it is stored and proven as.
//!
//! Every collection is ordered (a [`Table`], an `imbl::OrdSet`, a `BTreeSet`), so iteration
//! order — and with it every outcome — is the same on every machine.
//!
//! The state is a set of entities keyed by table and id ([`StateTable`]): one per account,
//! provider, order and lease, and the chain's singletons (`chain`, `params`). Each is encoded
//! with borsh on its own. [`State::take_changes`] hands the node the entities a block wrote; the
//! node stores those and folds them into the Merkle root. The ledger never sees the root.

use std::collections::{BTreeMap, BTreeSet};

use borsh::{BorshDeserialize, BorshSerialize};
use gpunet_protocol::merkle::{CHAIN_KEY, PARAMS_KEY, StateTable, StateWrite, id_key, state_key};
use gpunet_protocol::{
    Account, Address, Amount, Balances, Denom, Free, Hash, LeaseEndReason, LeaseId, LeaseResult,
    OrderId, OrderTerms, ProviderProfile, Resources,
};
use imbl::OrdSet;
use serde::{Deserialize, Serialize};

use crate::Params;
use crate::table::Table;

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
    /// It takes no new leases before this height (a slash jails it).
    pub jailed_until_height: u64,
    /// Its decaying record of verified results and liveness ([`Reputation::score_ppm`]).
    pub reputation: Reputation,
    /// Verified runs per GPU class (family, or `cpu`), sorted by class: probation ends in a
    /// class at `probation_runs`.
    pub verified_runs: Vec<(String, u32)>,
    /// Its runs still under comparison: it cannot deregister (taking its stake) until they are
    /// decided.
    pub runs_under_verification: u32,
    /// Stake it has lost to slashes, in all.
    pub slashed: Amount,
    /// Its hardware claim's challenges ([`crate::challenges`], ADR 0009).
    pub hardware: Hardware,
    /// The `compare: tensors` orders it was asked to judge and has not yet (ascending, at most
    /// [`crate::checks::MAX_JUDGING`]).
    pub judging: Vec<OrderId>,
    /// Its record of being there while it held leases ([`crate::uptime`]).
    pub uptime: Uptime,
}

/// A provider's record of being there while it held leases, kept as its leases end
/// ([`crate::uptime`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct Uptime {
    /// Blocks its ended leases were held, from each one's creation to its end.
    pub leased_blocks: u64,
    /// Of those, the blocks after its last proof of life of the leases it lost by silence.
    pub lost_blocks: u64,
    /// Leases it lost by silence (`provider_lost` at the liveness timeout).
    pub outages: u64,
}

/// Where a provider's hardware claim stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct Hardware {
    /// Its claim as it lists it passed its last challenge: it may bid (when a band covers it).
    pub proven: bool,
    /// The challenge in flight, if any.
    pub challenge: Option<Challenge>,
    /// Challenges issued so far (the next one's id is this plus one).
    pub issued: u64,
    pub passed: u64,
    pub failed: u64,
    /// The height from which it is due its next challenge (once idle and out of jail).
    pub next_at_height: u64,
}

/// A hardware challenge in flight.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct Challenge {
    pub id: u64,
    /// The matrices' seed.
    pub seed: Hash,
    pub n: u32,
    pub issued_height: u64,
    /// The commitment must be in a block whose time is at most this.
    pub deadline_ms: u64,
    /// The committed root, and the height of its block.
    pub root: Option<Hash>,
    pub committed_height: u64,
    /// The seed the sampled entries were drawn from (the block after the commitment's).
    pub draw: Option<Hash>,
    /// The leaves must be opened by this height, once drawn.
    pub open_until_height: u64,
    /// Leaves opened and checked so far, ascending.
    pub opened: Vec<u64>,
}

/// A provider's evidence, in thousandths of a run, decaying by half every
/// `reputation_half_life_blocks` ([`crate::trust`]). Integers only.
#[derive(Debug, Clone, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct Reputation {
    /// Verified runs that agreed with the majority (1000 each).
    pub good_milli: u64,
    /// Wrong or unrevealed runs (10 000 each) and lost leases (1000 each).
    pub bad_milli: u64,
    /// Height the two were last decayed to.
    pub at_height: u64,
}

/// One run of a verified order that reported success, with the tag it reported.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct Run {
    pub lease: LeaseId,
    pub provider: Address,
    pub tag: Hash,
    /// GPU class it ran in (family of its first GPU, or `cpu`).
    pub class: String,
    /// What the tenant paid for it (usd).
    pub paid: Amount,
    /// It must reveal its digest: its tag equals an earlier run's, so it could have copied.
    pub reveal_due: bool,
    pub revealed: bool,
    /// Judged wrong (another result won, or it did not reveal) and its provider slashed.
    pub wrong: bool,
}

/// Where a verified order's comparison is.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize,
)]
#[serde(tag = "stage", rename_all = "snake_case")]
pub enum VerifyStage {
    /// Runs are being gathered (or none is needed yet).
    #[default]
    Running,
    /// The first run reported; whether to check it is drawn at the end of `at_height`.
    Drawing { at_height: u64 },
    /// Every run needed is in; the runs asked to reveal have until `deadline_height`.
    Revealing { deadline_height: u64 },
    /// The spot check was not drawn: the tenant may dispute the result (`Dispute`) until
    /// `until_height`, when the order closes `unchecked`. The escrow waits with it, to pay a
    /// disputed rerun.
    Disputable { until_height: u64 },
    /// A `compare: tensors` order: `verifier` compares the runs' declared outputs and posts
    /// its verdict by `deadline_height`.
    Judging {
        verifier: Address,
        deadline_height: u64,
    },
}

/// A verified order's runs and the comparison's stage (ADR 0010). Empty for an order without
/// verification.
#[derive(Debug, Clone, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct Verifying {
    pub runs: Vec<Run>,
    /// Runs the comparison needs now: 1 until a spot check is drawn, then 2; `replicas`; one
    /// more for each referee or replacement.
    pub needed: u8,
    pub stage: VerifyStage,
    /// How the comparison ended, once it has.
    pub outcome: Option<gpunet_protocol::VerificationOutcome>,
    /// The verifiers asked so far (`compare: tensors`), in order, over every round: none is
    /// asked twice, and none may run the order (it has seen the runs' outputs).
    pub verifiers: Vec<Address>,
    /// Verifiers asked in the current round (since the last run came in), at most
    /// [`crate::checks::MAX_VERIFIERS`].
    pub round_verifiers: u8,
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
    /// A verified order whose runs are being compared: a spot check being drawn, or digests
    /// being revealed. It reopens for another run, or closes.
    Verifying,
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
    /// The runs of a verified order and their comparison.
    pub verifying: Verifying,
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
    /// Where the provider says the lease's service is reached (`PublishEndpoints`); empty for
    /// a job that exposes nothing, or until the provider says.
    pub endpoints: Vec<String>,
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    pub chain_id: String,
    /// Height of the last applied block (0 at genesis).
    pub height: u64,
    /// Time of the last applied block.
    pub time_ms: u64,
    pub params: Params,
    pub accounts: Table<Address, Account>,
    pub providers: Table<Address, Provider>,
    pub orders: Table<OrderId, Order>,
    pub leases: Table<LeaseId, Lease>,
    /// Index: orders with status Open. Derived from `orders`; not stored.
    pub open_orders: OrdSet<OrderId>,
    /// Index: leases not ended. Derived from `leases`; not stored.
    pub live_leases: OrdSet<LeaseId>,
    /// Which open orders the end-of-block rules must look at, by height. Derived; not stored.
    pub due_orders: DueOrders,
    /// Which live leases settlement must look at, by height. Derived; not stored.
    pub due_leases: DueLeases,
    /// Which verifying orders the end-of-block rules must look at (a draw, a reveal deadline,
    /// every reveal in), by height. Derived; not stored.
    pub due_checks: Due<OrderId>,
    /// Which providers the hardware-challenge rules must look at (one due a challenge, one
    /// whose challenge's deadline, draw or opening window comes), by height. Derived; not
    /// stored.
    pub due_challenges: Due<Address>,
    /// Which accounts have unbonding stake to release, by height. Derived; not stored.
    pub due_unbonding: Due<Address>,
    pub treasury: Balances,
    pub supply: Supply,
    pub next_order_id: u64,
    pub next_lease_id: u64,
    /// Orders and leases that ended for good since the last [`State::take_changes`] and left
    /// the tables. Not state: history the node keeps outside it.
    archive: Archive,
}

/// Orders and leases that ended for good and left the state: an order expired, cancelled or
/// closed after its last attempt, a lease ended. Nothing the ledger decides reads an ended
/// order or lease again (an id below `next_order_id`/`next_lease_id` that the tables lack is
/// one that ended, which is all a rejection needs to know), so the state that consensus carries
/// and proves holds only live entities, and the node keeps these as history for lookups.
///
/// They leave at the end of the block they ended in, so later transactions of that block still
/// see them as before. Equality ignores the archive: it is bookkeeping, like the touched keys.
#[derive(Debug, Clone, Default)]
pub struct Archive {
    orders: BTreeMap<OrderId, Order>,
    leases: BTreeMap<LeaseId, Lease>,
}

impl PartialEq for Archive {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Archive {}

impl Archive {
    pub fn orders(&self) -> &BTreeMap<OrderId, Order> {
        &self.orders
    }

    pub fn leases(&self) -> &BTreeMap<LeaseId, Lease> {
        &self.leases
    }
}

/// What a block did to the state, as [`State::take_changes`] hands it to the node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Every entity written, in state-key order, each once: its encoding now, or `None` when it
    /// left the state (archived orders and leases among them). The store writes exactly these
    /// and folds them into the Merkle root.
    pub state: Vec<StateWrite>,
    /// The orders and leases that ended for good and left the state, for the node's history.
    pub archived: Archive,
}

impl Changes {
    /// The archived entities under their state keys (table tag ‖ id), encoded as in the state.
    pub fn history(&self) -> Vec<StateWrite> {
        let orders = self
            .archived
            .orders
            .iter()
            .map(|(id, o)| entity_write(StateTable::Orders, &id_key(id.0), Some(o)));
        let leases = self
            .archived
            .leases
            .iter()
            .map(|(id, l)| entity_write(StateTable::Leases, &id_key(id.0), Some(l)));
        orders.chain(leases).collect()
    }
}

/// Entities the end-of-block rules must visit, by the height they are due at: the
/// *candidates* behind [`DueOrders`] and [`DueLeases`].
///
/// An entity visited when nothing is due for it is left as it was, so a superset gives the same
/// outcome as the exact set, and the outcome never depends on how the index came to be (built
/// block by block, or rebuilt at a restart with every entity due at once). That is why equality
/// ignores it. What must hold is that no entity with something due is missing.
#[derive(Debug, Clone)]
pub struct Due<K: Ord + Clone>(OrdSet<(u64, K)>);

/// The open orders the end-of-block rules must visit, by the height they are due at, so that a
/// block touches the orders whose bid window closes, whose exclusions lapse or whose
/// time-to-live runs out — not every open order.
///
/// A set of candidates ([`Due`]): an order is marked when it is created, reopened, bid on or
/// loses bids, and after each visit at the next height its rules name ([`crate::market`]'s
/// `next_due`).
pub type DueOrders = Due<OrderId>;

/// The live leases settlement must visit, by the height they are due at, so that a block
/// touches the leases that have something due — billing for a new proof of life, a changed
/// escrow, a silent provider, a start timeout, the end of a pause's grace — not every live lease.
///
/// A set of candidates ([`Due`]): a lease visited with nothing due pays nothing and changes
/// nothing, so a superset (a restart marks every live lease) changes no outcome. A lease is
/// marked for this block's end by every transaction that changes what its next visit would do
/// (start, a heartbeat listing it, a top-up of its order, which may resume it), at its first
/// deadline when it is created, and after each visit at the next height its rules name
/// ([`crate::leases`]'s `rule_due`); the marks a transaction makes obsolete are dropped, so a
/// live lease waits under one height.
pub type DueLeases = Due<LeaseId>;

impl<K: Ord + Clone> Default for Due<K> {
    fn default() -> Self {
        Due(OrdSet::new())
    }
}

impl<K: Ord + Clone> PartialEq for Due<K> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl<K: Ord + Clone> Eq for Due<K> {}

impl<K: Ord + Clone> Due<K> {
    /// Marks `id` for a visit at the end of block `height` (or the next block's end, if that
    /// block has ended).
    pub(crate) fn mark(&mut self, height: u64, id: K) {
        self.0.insert((height, id));
    }

    /// Drops the mark of `id` at `height`, if there is one: for a mark that what changed has
    /// made obsolete (keeping it would only cost a visit that finds nothing due).
    pub(crate) fn unmark(&mut self, height: u64, id: K) {
        self.0.remove(&(height, id));
    }

    /// The entities due at or before `height`, each once, in id order; forgets them.
    pub(crate) fn take_due(&mut self, height: u64) -> BTreeSet<K> {
        let mut out = BTreeSet::new();
        while let Some((h, id)) = self.0.get_min().cloned() {
            if h > height {
                break;
            }
            self.0.remove(&(h, id.clone()));
            out.insert(id);
        }
        out
    }

    /// How many visits are pending.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many of the pending visits are due at or before `height`: what the end of block
    /// `height` visits, less what that block's transactions add.
    pub fn due_by(&self, height: u64) -> usize {
        self.0.iter().take_while(|(h, _)| *h <= height).count()
    }

    /// Every pending visit, by height then id.
    pub fn iter(&self) -> impl Iterator<Item = &(u64, K)> {
        self.0.iter()
    }
}

/// The chain's singleton entity (`chain` in [`StateTable::Chain`]): everything in [`State`]
/// that is not a table, an index, or the params.
#[derive(BorshSerialize, BorshDeserialize, Serialize)]
struct ChainEntity {
    chain_id: String,
    height: u64,
    time_ms: u64,
    treasury: Balances,
    supply: Supply,
    next_order_id: u64,
    next_lease_id: u64,
}

/// Why stored entities do not make a state.
#[derive(Debug, thiserror::Error)]
pub enum EntityError {
    #[error("entity key {key:?} (hex) has no table tag this build knows")]
    UnknownTable { key: String },
    #[error("{table} entity {key} does not decode: {why}")]
    Decode {
        table: StateTable,
        key: String,
        why: String,
    },
    #[error("the stored state has no `{0}` entity")]
    Missing(&'static str),
}

fn encode<T: BorshSerialize>(value: &T) -> Vec<u8> {
    borsh::to_vec(value).expect("borsh encoding into a Vec cannot fail")
}

fn entity_write<T: BorshSerialize>(table: StateTable, key: &[u8], value: Option<&T>) -> StateWrite {
    StateWrite {
        key: state_key(table, key),
        value: value.map(encode),
    }
}

/// The writes for every key of `table` touched since the last call: the value now, or none.
fn drain_touched<K: Ord + Clone, V: Clone + BorshSerialize>(
    out: &mut Vec<StateWrite>,
    table_id: StateTable,
    table: &mut Table<K, V>,
    key_bytes: impl Fn(&K) -> Vec<u8>,
) {
    for k in table.take_touched() {
        out.push(entity_write(table_id, &key_bytes(&k), table.get(&k)));
    }
}

impl State {
    /// The state at height 0.
    pub fn from_genesis(g: &Genesis) -> Result<State, GenesisError> {
        if g.chain_id.is_empty() {
            return Err(GenesisError::EmptyChainId);
        }
        g.params.validate().map_err(GenesisError::BadParams)?;
        let mut accounts = Table::default();
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
                    unbonding: Vec::new(),
                },
            );
            if prev.is_some() {
                return Err(GenesisError::DuplicateAccount(a.address));
            }
        }
        accounts.take_touched();
        Ok(State {
            chain_id: g.chain_id.clone(),
            height: 0,
            time_ms: g.genesis_time_ms,
            params: g.params.clone(),
            accounts,
            providers: Table::default(),
            orders: Table::default(),
            leases: Table::default(),
            open_orders: OrdSet::new(),
            live_leases: OrdSet::new(),
            due_orders: DueOrders::default(),
            due_leases: DueLeases::default(),
            due_checks: Due::default(),
            due_challenges: Due::default(),
            due_unbonding: Due::default(),
            treasury: Balances::default(),
            supply: Supply {
                minted,
                burned: Balances::default(),
            },
            next_order_id: 1,
            next_lease_id: 1,
            archive: Archive::default(),
        })
    }

    fn chain_entity(&self) -> ChainEntity {
        ChainEntity {
            chain_id: self.chain_id.clone(),
            height: self.height,
            time_ms: self.time_ms,
            treasury: self.treasury,
            supply: self.supply.clone(),
            next_order_id: self.next_order_id,
            next_lease_id: self.next_lease_id,
        }
    }

    /// What the blocks since the last call did (the last block, for the node): the entities they
    /// wrote, in (table, key) order, with the chain singletons, which every block changes, and
    /// the orders and leases they archived; forgets both. The node stores exactly these, folds
    /// the state writes into the root and keeps the archived ones as history.
    pub fn take_changes(&mut self) -> Changes {
        let mut out = vec![
            entity_write(StateTable::Chain, CHAIN_KEY, Some(&self.chain_entity())),
            entity_write(StateTable::Chain, PARAMS_KEY, Some(&self.params)),
        ];
        drain_touched(&mut out, StateTable::Accounts, &mut self.accounts, |a| {
            a.0.to_vec()
        });
        drain_touched(&mut out, StateTable::Providers, &mut self.providers, |a| {
            a.0.to_vec()
        });
        drain_touched(&mut out, StateTable::Orders, &mut self.orders, |id| {
            id_key(id.0).to_vec()
        });
        drain_touched(&mut out, StateTable::Leases, &mut self.leases, |id| {
            id_key(id.0).to_vec()
        });
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Changes {
            state: out,
            archived: std::mem::take(&mut self.archive),
        }
    }

    /// Moves the orders and leases written since the last [`State::take_changes`] that have
    /// ended for good out of the tables into the archive: O(entities written), run at the end
    /// of every block. An order ends for good when it expires, is cancelled or closes after its
    /// last attempt (its escrow is zero then); a lease when it ends (its order, if retried,
    /// lists it among its attempts and stays).
    pub(crate) fn archive_ended(&mut self) {
        for id in self.orders.touched() {
            let ended = self.orders.get(&id).is_some_and(|o| {
                matches!(
                    o.status,
                    OrderStatus::Expired | OrderStatus::Cancelled | OrderStatus::Closed { .. }
                )
            });
            if ended && let Some(o) = self.orders.remove(&id) {
                self.archive.orders.insert(id, o);
            }
        }
        for id in self.leases.touched() {
            if self.leases.get(&id).is_some_and(|l| !l.is_live())
                && let Some(l) = self.leases.remove(&id)
            {
                self.archive.leases.insert(id, l);
            }
        }
    }

    /// The orders and leases archived since the last [`State::take_changes`].
    pub fn archived(&self) -> &Archive {
        &self.archive
    }

    /// Whether order `id` existed and has ended for good (left the state for history).
    pub fn order_ended(&self, id: OrderId) -> bool {
        (1..self.next_order_id).contains(&id.0) && !self.orders.contains_key(&id)
    }

    /// Whether lease `id` existed and has ended (left the state for history).
    pub fn lease_ended(&self, id: LeaseId) -> bool {
        (1..self.next_lease_id).contains(&id.0) && !self.leases.contains_key(&id)
    }

    /// Every entity of the state, in (table, key) order: what a store holds for it.
    pub fn entities(&self) -> Vec<StateWrite> {
        let mut out = vec![
            entity_write(StateTable::Chain, CHAIN_KEY, Some(&self.chain_entity())),
            entity_write(StateTable::Chain, PARAMS_KEY, Some(&self.params)),
        ];
        out.extend(
            self.accounts
                .iter()
                .map(|(k, v)| entity_write(StateTable::Accounts, &k.0, Some(v))),
        );
        out.extend(
            self.providers
                .iter()
                .map(|(k, v)| entity_write(StateTable::Providers, &k.0, Some(v))),
        );
        out.extend(
            self.orders
                .iter()
                .map(|(k, v)| entity_write(StateTable::Orders, &id_key(k.0), Some(v))),
        );
        out.extend(
            self.leases
                .iter()
                .map(|(k, v)| entity_write(StateTable::Leases, &id_key(k.0), Some(v))),
        );
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }

    /// The state the entities describe (as [`State::entities`] or a store gives them, in any
    /// order), with its indexes rebuilt. See [`StateLoader`] to feed them one at a time.
    pub fn from_entities(
        entities: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>,
    ) -> Result<State, EntityError> {
        let mut loader = StateLoader::default();
        for (key, value) in entities {
            loader.add(&key, &value)?;
        }
        loader.finish()
    }

    /// The JSON view of an entity's encoding (as [`State::take_changes`] makes it), for people
    /// and the API; `key` is the full state key (table tag first).
    pub fn entity_json(key: &[u8], value: &[u8]) -> Result<serde_json::Value, EntityError> {
        let (table, rest) = split_key(key)?;
        let bad = |why: String| EntityError::Decode {
            table,
            key: hex::encode(rest),
            why,
        };
        fn json<T: BorshDeserialize + Serialize>(
            value: &[u8],
        ) -> Result<serde_json::Value, String> {
            let v: T = decode(value)?;
            serde_json::to_value(v).map_err(|e| e.to_string())
        }
        match table {
            StateTable::Chain if rest == CHAIN_KEY => json::<ChainEntity>(value),
            StateTable::Chain if rest == PARAMS_KEY => json::<Params>(value),
            StateTable::Chain => Err("no such chain singleton".to_owned()),
            StateTable::Accounts => json::<Account>(value),
            StateTable::Providers => json::<Provider>(value),
            StateTable::Orders => json::<Order>(value),
            StateTable::Leases => json::<Lease>(value),
        }
        .map_err(bad)
    }

    /// BLAKE3 over every entity in order: equal digests mean equal states. For tests and
    /// tools; it is not the chain's state root (the Merkle root the store computes) and costs a
    /// pass over the whole state.
    pub fn digest(&self) -> Hash {
        let mut h = blake3::Hasher::new();
        for e in self.entities() {
            h.update(&(e.key.len() as u64).to_le_bytes());
            h.update(&e.key);
            let v = e.value.unwrap_or_default();
            h.update(&(v.len() as u64).to_le_bytes());
            h.update(&v);
        }
        Hash(*h.finalize().as_bytes())
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

/// Builds a [`State`] from its entities one at a time (a store's rows as it reads them), so
/// that nothing holds the raw rows of the whole state at once.
#[derive(Default)]
pub struct StateLoader {
    chain: Option<ChainEntity>,
    params: Option<Params>,
    accounts: Vec<(Address, Account)>,
    providers: Vec<(Address, Provider)>,
    orders: Vec<(OrderId, Order)>,
    leases: Vec<(LeaseId, Lease)>,
}

impl StateLoader {
    /// Decodes one entity: its full state key (table tag first) and its encoding.
    pub fn add(&mut self, key: &[u8], value: &[u8]) -> Result<(), EntityError> {
        let (table, rest) = split_key(key)?;
        let bad = |why: String| EntityError::Decode {
            table,
            key: hex::encode(rest),
            why,
        };
        let id = || -> Result<u64, EntityError> {
            let bytes: [u8; 8] = rest
                .try_into()
                .map_err(|_| bad(format!("{} key bytes, not 8", rest.len())))?;
            Ok(u64::from_be_bytes(bytes))
        };
        let address = || -> Result<Address, EntityError> {
            let bytes: [u8; 32] = rest
                .try_into()
                .map_err(|_| bad(format!("{} key bytes, not 32", rest.len())))?;
            Ok(Address(bytes))
        };
        match table {
            StateTable::Chain if rest == CHAIN_KEY => {
                self.chain = Some(decode(value).map_err(bad)?);
            }
            StateTable::Chain if rest == PARAMS_KEY => {
                self.params = Some(decode(value).map_err(bad)?);
            }
            StateTable::Chain => return Err(bad("no such chain singleton".to_owned())),
            StateTable::Accounts => {
                let entry = (address()?, decode(value).map_err(bad)?);
                self.accounts.push(entry);
            }
            StateTable::Providers => {
                let entry = (address()?, decode(value).map_err(bad)?);
                self.providers.push(entry);
            }
            StateTable::Orders => {
                let entry = (OrderId(id()?), decode(value).map_err(bad)?);
                self.orders.push(entry);
            }
            StateTable::Leases => {
                let entry = (LeaseId(id()?), decode(value).map_err(bad)?);
                self.leases.push(entry);
            }
        }
        Ok(())
    }

    /// The state, its indexes rebuilt; refused if a chain singleton never came.
    pub fn finish(self) -> Result<State, EntityError> {
        let chain = self.chain.ok_or(EntityError::Missing("chain"))?;
        let params = self.params.ok_or(EntityError::Missing("params"))?;
        let orders: Table<OrderId, Order> = self.orders.into_iter().collect();
        let leases: Table<LeaseId, Lease> = self.leases.into_iter().collect();
        let open_orders: OrdSet<OrderId> = orders
            .iter()
            .filter(|(_, o)| matches!(o.status, OrderStatus::Open))
            .map(|(id, _)| *id)
            .collect();
        // Every open order is visited once at the next block's end, which finds each one's
        // next due height.
        let mut due_orders = DueOrders::default();
        for id in &open_orders {
            due_orders.mark(chain.height, *id);
        }
        let live_leases: OrdSet<LeaseId> = leases
            .iter()
            .filter(|(_, l)| l.is_live())
            .map(|(id, _)| *id)
            .collect();
        // Likewise every live lease: a visit with nothing due changes nothing, and each visit
        // marks the lease's next due height.
        let mut due_leases = DueLeases::default();
        for id in &live_leases {
            due_leases.mark(chain.height, *id);
        }
        // And every verifying order: a visit before its draw or deadline finds nothing due.
        let mut due_checks = Due::default();
        for (id, o) in orders.iter() {
            if o.status == OrderStatus::Verifying {
                due_checks.mark(chain.height, *id);
            }
        }
        // And every account's unbondings, at their heights.
        let mut due_unbonding = Due::default();
        for (address, account) in &self.accounts {
            for u in &account.unbonding {
                due_unbonding.mark(u.release_height, *address);
            }
        }
        // And every provider a band may cover: a visit with nothing due changes nothing.
        let mut due_challenges = Due::default();
        for (address, _) in &self.providers {
            due_challenges.mark(chain.height, *address);
        }
        Ok(State {
            chain_id: chain.chain_id,
            height: chain.height,
            time_ms: chain.time_ms,
            params,
            accounts: self.accounts.into_iter().collect(),
            providers: self.providers.into_iter().collect(),
            orders,
            leases,
            open_orders,
            live_leases,
            due_orders,
            due_leases,
            due_checks,
            due_challenges,
            due_unbonding,
            treasury: chain.treasury,
            supply: chain.supply,
            next_order_id: chain.next_order_id,
            next_lease_id: chain.next_lease_id,
            archive: Archive::default(),
        })
    }
}

/// A state key's table and the entity's key within it.
fn split_key(key: &[u8]) -> Result<(StateTable, &[u8]), EntityError> {
    key.split_first()
        .and_then(|(&tag, rest)| Some((StateTable::from_tag(tag)?, rest)))
        .ok_or_else(|| EntityError::UnknownTable {
            key: hex::encode(key),
        })
}

fn decode<T: BorshDeserialize>(bytes: &[u8]) -> Result<T, String> {
    borsh::from_slice(bytes).map_err(|e| e.to_string())
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
            verifying: Verifying::default(),
        }
    }

    pub(crate) fn take_bid_seq(&mut self) -> u32 {
        let s = self.next_bid_seq;
        self.next_bid_seq = self.next_bid_seq.saturating_add(1);
        s
    }
}
