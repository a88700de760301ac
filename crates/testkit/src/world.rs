//! A [`World`]: a ledger state with named, deterministic actors, transaction builders that
//! track each signer's nonce, and a block driver that checks every invariant after every block.
//!
//! Seeds: tenant `i` (from 0) has key seed `1 + i`, provider `i` has `101 + i`, stranger `i`
//! (never funded) has `201 + i`. The same builder always gives the same world, down to the
//! state root.

use std::collections::{BTreeMap, BTreeSet};

use ed25519_dalek::SigningKey;
use gpunet_ledger::{
    Genesis, GenesisAccount, Lease, LeaseStatus, Order, Params, Provider, State, apply_block,
    invariants,
};
use gpunet_protocol::{
    Address, Amount, Balances, BlockCtx, BlockOutcome, Denom, Event, Hash, LeaseId, LeaseResult,
    Msg, OrderId, OrderTerms, ProviderProfile, Rejection, SignedTx, TxBody, UsageReport,
    WorkloadOutcome,
};

use crate::fixtures::{h100, provider_profile, usd};
use crate::outcome::OutcomeExt;

/// Block time step unless a test picks another, in milliseconds.
pub const DEFAULT_STEP_MS: u64 = 500;
/// Genesis time: 2025-01-01T00:00:00Z, in milliseconds since the Unix epoch.
pub const GENESIS_TIME_MS: u64 = 1_735_689_600_000;
/// The chain id every world uses.
pub const CHAIN_ID: &str = "gpunet-test";

const TENANT_SEED_BASE: u64 = 1;
const PROVIDER_SEED_BASE: u64 = 101;
const STRANGER_SEED_BASE: u64 = 201;

/// The signing key of seed `seed`: its bytes are `seed` little-endian, padded with a constant.
pub fn key(seed: u64) -> SigningKey {
    let mut bytes = [0x47u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    SigningKey::from_bytes(&bytes)
}

fn address_of(k: &SigningKey) -> Address {
    Address::from_key(&k.verifying_key())
}

/// Builds a [`World`].
#[derive(Debug, Clone)]
pub struct WorldBuilder {
    params: Params,
    tenants: usize,
    tenant_balances: Balances,
    providers: Vec<Option<ProviderProfile>>,
    provider_balances: Balances,
    strangers: usize,
    step_ms: u64,
}

impl Default for WorldBuilder {
    fn default() -> Self {
        WorldBuilder {
            params: Params::default(),
            tenants: 1,
            tenant_balances: Balances {
                usd: usd(10_000),
                gpn: usd(1_000),
            },
            providers: Vec::new(),
            provider_balances: Balances {
                usd: Amount::ZERO,
                gpn: usd(1_000),
            },
            strangers: 2,
            step_ms: DEFAULT_STEP_MS,
        }
    }
}

impl WorldBuilder {
    /// Genesis parameters (default: [`Params::default`]).
    pub fn params(mut self, params: Params) -> Self {
        self.params = params;
        self
    }
    /// Changes some parameters.
    pub fn with_params(mut self, f: impl FnOnce(&mut Params)) -> Self {
        f(&mut self.params);
        self
    }
    /// How many tenants (default 1), each funded with `tenant_balances`.
    pub fn tenants(mut self, n: usize) -> Self {
        self.tenants = n;
        self
    }
    /// What each tenant holds at genesis (default 10 000 usd and 1 000 gpn).
    pub fn tenant_balances(mut self, b: Balances) -> Self {
        self.tenant_balances = b;
        self
    }
    /// What each provider holds at genesis, before staking (default 1 000 gpn).
    pub fn provider_balances(mut self, b: Balances) -> Self {
        self.provider_balances = b;
        self
    }
    /// A provider registered in block 1 with `profile` and the minimum stake.
    pub fn provider(mut self, profile: ProviderProfile) -> Self {
        self.providers.push(Some(profile));
        self
    }
    /// `n` providers, each with 16 cores, 64 GiB and two H100s.
    pub fn providers(mut self, n: usize) -> Self {
        for _ in 0..n {
            self = self.provider(provider_profile(16_000, 65_536, vec![h100(), h100()]));
        }
        self
    }
    /// A provider account funded at genesis but not registered.
    pub fn unregistered_provider(mut self) -> Self {
        self.providers.push(None);
        self
    }
    /// How many unfunded strangers have keys (default 2).
    pub fn strangers(mut self, n: usize) -> Self {
        self.strangers = n;
        self
    }
    /// Block time step (default 500 ms).
    pub fn step_ms(mut self, step_ms: u64) -> Self {
        self.step_ms = step_ms;
        self
    }

    /// Creates the genesis state and, if any provider has a profile, applies block 1 that
    /// registers them (panicking if a registration is rejected).
    pub fn build(self) -> World {
        let mut keys = BTreeMap::new();
        let mut accounts = Vec::new();
        let mut tenants = Vec::new();
        for i in 0..self.tenants {
            let k = key(TENANT_SEED_BASE + i as u64);
            let a = address_of(&k);
            accounts.push(GenesisAccount {
                address: a,
                balances: self.tenant_balances,
            });
            tenants.push(a);
            keys.insert(a, k);
        }
        let mut providers = Vec::new();
        for i in 0..self.providers.len() {
            let k = key(PROVIDER_SEED_BASE + i as u64);
            let a = address_of(&k);
            accounts.push(GenesisAccount {
                address: a,
                balances: self.provider_balances,
            });
            providers.push(a);
            keys.insert(a, k);
        }
        let mut strangers = Vec::new();
        for i in 0..self.strangers {
            let k = key(STRANGER_SEED_BASE + i as u64);
            let a = address_of(&k);
            strangers.push(a);
            keys.insert(a, k);
        }
        let genesis = Genesis {
            chain_id: CHAIN_ID.to_owned(),
            genesis_time_ms: GENESIS_TIME_MS,
            params: self.params.clone(),
            accounts,
        };
        let state = State::from_genesis(&genesis).expect("the testkit genesis is valid");
        let mut world = World {
            genesis,
            state,
            keys,
            pending_nonces: BTreeMap::new(),
            tenants,
            providers: providers.clone(),
            strangers,
            step_ms: self.step_ms,
            fee: self.params.min_tx_fee,
            silent: BTreeSet::new(),
            history_orders: BTreeMap::new(),
            history_leases: BTreeMap::new(),
        };
        let params = self.params.clone();
        let txs: Vec<SignedTx> = providers
            .iter()
            .zip(self.providers)
            .filter_map(|(a, p)| {
                p.map(|profile| {
                    // What its GPUs need (ADR 0010): the minimum, or more for many GPUs.
                    let stake =
                        gpunet_ledger::trust::required_stake(&params, profile.capacity.gpus.len());
                    world.register(*a, stake, profile)
                })
            })
            .collect();
        if !txs.is_empty() {
            world.block(txs).assert_all_applied();
        }
        world
    }
}

/// A ledger with named actors. See the module doc for seeds.
#[derive(Debug, Clone)]
pub struct World {
    pub genesis: Genesis,
    pub state: State,
    keys: BTreeMap<Address, SigningKey>,
    /// Next nonce per signer for transactions built but not yet applied in a block.
    pending_nonces: BTreeMap<Address, u64>,
    pub tenants: Vec<Address>,
    pub providers: Vec<Address>,
    /// Accounts with keys but no money.
    pub strangers: Vec<Address>,
    /// Time between blocks, in milliseconds.
    pub step_ms: u64,
    /// Fee every built transaction pays (default: the minimum).
    pub fee: Amount,
    /// Providers that send no heartbeats (see [`World::block`]).
    pub silent: BTreeSet<Address>,
    /// Orders and leases that ended and left the state, as the node keeps them: what
    /// [`World::order`] and [`World::lease`] fall back to.
    pub history_orders: BTreeMap<OrderId, Order>,
    pub history_leases: BTreeMap<LeaseId, Lease>,
}

impl World {
    pub fn builder() -> WorldBuilder {
        WorldBuilder::default()
    }

    pub fn tenant(&self, i: usize) -> Address {
        self.tenants[i]
    }
    pub fn provider_addr(&self, i: usize) -> Address {
        self.providers[i]
    }
    pub fn stranger(&self, i: usize) -> Address {
        self.strangers[i]
    }

    // --- building transactions ---

    /// The nonce `signer`'s next built transaction carries: its account nonce plus the
    /// transactions built for it since the last block.
    pub fn next_nonce(&self, signer: &Address) -> u64 {
        self.pending_nonces
            .get(signer)
            .copied()
            .unwrap_or_else(|| self.state.nonce(signer))
    }

    /// An unsigned body from `signer` with the right chain id, the next nonce and the world's fee.
    /// Building a body reserves nothing; [`World::sign`] does.
    pub fn body(&self, signer: Address, msg: Msg) -> TxBody {
        TxBody {
            chain_id: self.state.chain_id.clone(),
            signer,
            nonce: self.next_nonce(&signer),
            fee: self.fee,
            msg,
        }
    }

    /// Signs `body` with its signer's key. If it carries the signer's next nonce, the next one
    /// built gets the nonce after it.
    pub fn sign(&mut self, body: TxBody) -> SignedTx {
        let signer = body.signer;
        if body.nonce == self.next_nonce(&signer) {
            self.pending_nonces
                .insert(signer, body.nonce.saturating_add(1));
        }
        self.sign_detached(body)
    }

    /// A signed transaction from `signer` with the next nonce.
    pub fn tx(&mut self, signer: Address, msg: Msg) -> SignedTx {
        let body = self.body(signer, msg);
        self.sign(body)
    }

    /// A signed transaction after `edit` changed its body (fee, nonce, chain id, …). It does not
    /// reserve the nonce: an edited transaction is usually one meant to be rejected, and the
    /// signer's next built transaction should still carry the right nonce.
    pub fn tx_with(&self, signer: Address, msg: Msg, edit: impl FnOnce(&mut TxBody)) -> SignedTx {
        let mut body = self.body(signer, msg);
        edit(&mut body);
        self.sign_detached(body)
    }

    /// A signed transaction from `signer` with the next nonce, without reserving it: for
    /// transactions meant to be rejected, or applied with [`gpunet_ledger::apply_tx`] as probes.
    /// What the ledger would say to `msg` from `signer` now, applied to a copy of the state:
    /// the world does not change.
    pub fn refusal(&self, signer: Address, msg: Msg) -> Result<(), gpunet_protocol::Rejection> {
        let tx = self.probe(signer, msg);
        gpunet_ledger::apply_tx(&mut self.state.clone(), &tx).map(|_| ())
    }

    /// Provider `p` bids `price` on the open `order` and wins it; returns the lease. Panics,
    /// naming the order's status, if it is not leased within 100 blocks.
    pub fn lease_to(&mut self, order: OrderId, p: usize, price: Amount) -> LeaseId {
        let tx = self.bid(self.provider_addr(p), order, price);
        self.block(vec![tx]).assert_all_applied();
        for _ in 0..100 {
            if let gpunet_ledger::OrderStatus::Leased { lease } = self.order(order).status {
                return lease;
            }
            self.block(Vec::new());
        }
        panic!("order {order} never leased: {:?}", self.order(order).status);
    }

    pub fn probe(&self, signer: Address, msg: Msg) -> SignedTx {
        self.tx_with(signer, msg, |_| {})
    }

    /// Sets the nonce `signer`'s next built transaction carries, until the next block.
    pub fn set_pending_nonce(&mut self, signer: Address, nonce: u64) {
        self.pending_nonces.insert(signer, nonce);
    }

    /// Signs `body` with its signer's key without touching the nonces the world tracks.
    pub fn sign_detached(&self, body: TxBody) -> SignedTx {
        let k = self
            .keys
            .get(&body.signer)
            .unwrap_or_else(|| panic!("the world holds no key for {}", body.signer));
        body.sign(k)
    }

    pub fn transfer(
        &mut self,
        from: Address,
        to: Address,
        denom: Denom,
        amount: Amount,
    ) -> SignedTx {
        self.tx(from, Msg::Transfer { to, denom, amount })
    }
    pub fn register(
        &mut self,
        provider: Address,
        stake: Amount,
        profile: ProviderProfile,
    ) -> SignedTx {
        self.tx(provider, Msg::RegisterProvider { stake, profile })
    }
    pub fn update_provider(&mut self, provider: Address, profile: ProviderProfile) -> SignedTx {
        self.tx(provider, Msg::UpdateProvider { profile })
    }
    pub fn deregister(&mut self, provider: Address) -> SignedTx {
        self.tx(provider, Msg::DeregisterProvider)
    }
    pub fn create_order(&mut self, tenant: Address, terms: impl Into<OrderTerms>) -> SignedTx {
        self.tx(
            tenant,
            Msg::CreateOrder {
                terms: terms.into(),
            },
        )
    }
    pub fn cancel(&mut self, tenant: Address, order: OrderId) -> SignedTx {
        self.tx(tenant, Msg::CancelOrder { order })
    }
    pub fn bid(&mut self, provider: Address, order: OrderId, price_per_hour: Amount) -> SignedTx {
        self.tx(
            provider,
            Msg::PlaceBid {
                order,
                price_per_hour,
            },
        )
    }
    pub fn start(&mut self, provider: Address, lease: LeaseId) -> SignedTx {
        self.tx(provider, Msg::StartLease { lease })
    }
    pub fn complete(
        &mut self,
        provider: Address,
        lease: LeaseId,
        outcome: WorkloadOutcome,
    ) -> SignedTx {
        self.tx(
            provider,
            Msg::CompleteLease {
                lease,
                result: lease_result(outcome),
            },
        )
    }

    // --- driving blocks ---

    /// Applies `txs` as the next block, `step_ms` after the last, then asserts every invariant.
    ///
    /// Healthy providers are alive: after `txs`, each provider not in [`World::silent`] that
    /// holds running or paused leases, and signed none of `txs` (whose nonces may be rejected),
    /// sends a heartbeat listing them, as its agent would. Those
    /// heartbeats must apply (a rejection panics) and their receipts are left out of the
    /// outcome, so `receipts` match `txs`. [`World::silence`] a provider to test its loss.
    pub fn block(&mut self, mut txs: Vec<SignedTx>) -> BlockOutcome {
        let ctx = self.next_ctx();
        let ours = txs.len();
        for provider in self.providers.clone() {
            if self.silent.contains(&provider) || txs.iter().any(|t| t.body.signer == provider) {
                continue;
            }
            let Some(p) = self.state.providers.get(&provider) else {
                continue;
            };
            let leases: Vec<LeaseId> = p
                .live_leases
                .iter()
                .copied()
                .filter(|id| {
                    self.state.leases.get(id).is_some_and(|l| {
                        matches!(
                            l.status,
                            LeaseStatus::Pending
                                | LeaseStatus::Running
                                | LeaseStatus::Paused { .. }
                        )
                    })
                })
                .collect();
            if !leases.is_empty() {
                txs.push(self.tx(provider, Msg::Heartbeat { leases }));
            }
        }
        // As the node does: the last block's writes are taken before the next block, and a
        // proposal is checked against the tip with the O(changes) invariant check.
        self.state.take_changes();
        let before = self.state.clone();
        let mut outcome = apply_block(&mut self.state, &ctx, &txs);
        // Kept at once (not at the next block's take), so a test reads an order that ended in
        // the block it just ran.
        let archived = self.state.archived();
        self.history_orders
            .extend(archived.orders().iter().map(|(id, o)| (*id, o.clone())));
        self.history_leases
            .extend(archived.leases().iter().map(|(id, l)| (*id, l.clone())));
        if let Err(v) = invariants::check_all(&self.state) {
            panic!("invariant broken after block {}: {v}", ctx.height);
        }
        if let Err(v) = invariants::check_changes(&before, &self.state) {
            panic!(
                "the change check failed where the full check passed, block {}: {v}",
                ctx.height
            );
        }
        for receipt in outcome.receipts.drain(ours..) {
            if let Some(r) = receipt.rejection {
                panic!("a healthy provider's heartbeat was rejected: {r}");
            }
        }
        self.pending_nonces.clear();
        outcome
    }

    /// From now on `provider` sends no heartbeats: its running leases end `provider_lost`
    /// after `liveness_timeout_blocks`.
    pub fn silence(&mut self, provider: Address) {
        self.silent.insert(provider);
    }

    /// `provider` sends heartbeats again.
    pub fn revive(&mut self, provider: Address) {
        self.silent.remove(&provider);
    }

    /// The context of the next block.
    pub fn next_ctx(&self) -> BlockCtx {
        let height = self.state.height + 1;
        BlockCtx {
            height,
            time_ms: self.state.time_ms + self.step_ms,
            seed: Hash::of(&height.to_le_bytes()),
        }
    }

    /// `n` empty blocks; returns their outcomes.
    pub fn blocks(&mut self, n: u64) -> Vec<BlockOutcome> {
        (0..n).map(|_| self.block(Vec::new())).collect()
    }

    /// Empty blocks until the state reaches `height`.
    pub fn advance_to(&mut self, height: u64) -> Vec<BlockOutcome> {
        let n = height.saturating_sub(self.state.height);
        self.blocks(n)
    }

    /// Applies `tx` alone in the next block and returns what happened to it.
    pub fn submit(&mut self, tx: SignedTx) -> Result<Vec<Event>, Rejection> {
        let mut outcome = self.block(vec![tx]);
        let receipt = outcome.receipts.remove(0);
        match receipt.rejection {
            Some(r) => Err(r),
            None => Ok(receipt.events),
        }
    }

    // --- reading state ---

    pub fn balance(&self, who: &Address, denom: Denom) -> Amount {
        self.state.balance(who, denom)
    }
    pub fn usd(&self, who: &Address) -> Amount {
        self.balance(who, Denom::Usd)
    }
    pub fn gpn(&self, who: &Address) -> Amount {
        self.balance(who, Denom::Gpn)
    }
    pub fn treasury(&self, denom: Denom) -> Amount {
        self.state.treasury.get(denom)
    }
    pub fn burned(&self, denom: Denom) -> Amount {
        self.state.supply.burned.get(denom)
    }
    /// Order `id`, live or ended (from history).
    pub fn order(&self, id: OrderId) -> &Order {
        self.state
            .orders
            .get(&id)
            .or_else(|| self.history_orders.get(&id))
            .unwrap_or_else(|| panic!("no order {id}"))
    }
    /// Lease `id`, live or ended (from history).
    pub fn lease(&self, id: LeaseId) -> &Lease {
        self.state
            .leases
            .get(&id)
            .or_else(|| self.history_leases.get(&id))
            .unwrap_or_else(|| panic!("no lease {id}"))
    }
    /// Every order ever created, live or ended, by id.
    pub fn all_orders(&self) -> impl Iterator<Item = &Order> {
        let mut all: Vec<&Order> = self
            .state
            .orders
            .values()
            .chain(self.history_orders.values())
            .collect();
        all.sort_by_key(|o| o.id);
        all.into_iter()
    }
    /// Every lease ever created, live or ended, by id.
    pub fn all_leases(&self) -> impl Iterator<Item = &Lease> {
        let mut all: Vec<&Lease> = self
            .state
            .leases
            .values()
            .chain(self.history_leases.values())
            .collect();
        all.sort_by_key(|l| l.id);
        all.into_iter()
    }
    pub fn provider(&self, who: &Address) -> Option<&Provider> {
        self.state.providers.get(who)
    }
    /// The escrow an order holds now.
    pub fn escrow(&self, id: OrderId) -> Amount {
        self.order(id).escrow
    }
    /// The live lease of an order, if it has one.
    pub fn lease_of(&self, order: OrderId) -> Option<&Lease> {
        self.state
            .leases
            .values()
            .find(|l| l.order == order && l.is_live())
    }
    /// Every address the world holds a key for, in address order.
    pub fn known_addresses(&self) -> impl Iterator<Item = &Address> {
        self.keys.keys()
    }
}

/// A result with this outcome and nothing else of note.
pub fn lease_result(outcome: WorkloadOutcome) -> LeaseResult {
    LeaseResult {
        outcome,
        exit_code: Some(0),
        output_digest: None,
        usage: UsageReport::default(),
        detail: String::new(),
    }
}
