//! Proptest strategies for transactions, valid and invalid alike.
//!
//! A strategy cannot see the state a transaction will meet, so it draws a [`TxPlan`]: who signs,
//! how the envelope is spoiled (if at all), and what the message aims at ("the third open order",
//! "the lease's own provider", "the signer's whole balance"). [`World::realize`] turns a plan
//! into a signed transaction against the world as it is now. Realizing is deterministic, so the
//! same plans on the same world give the same transactions.

use gpunet_protocol::{Amount, Denom, LeaseId, Msg, OrderId, Runtime, SignedTx, WorkloadOutcome};
use proptest::prelude::*;

use crate::fixtures::{a100, h100, order_terms, provider_profile, usd};
use crate::world::{World, lease_result};

/// Who signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignerPick {
    /// A funded tenant, by index (wrapped).
    Tenant(u8),
    /// A provider account (registered or not), by index (wrapped).
    Provider(u8),
    /// An unfunded account nobody has heard of.
    Stranger(u8),
    /// The party the message is about: the order's tenant for a cancel, the lease's provider for
    /// a start or complete; otherwise a tenant.
    Owner,
}

/// Which nonce the envelope carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoncePick {
    Next,
    /// One already used (the next one if none has been used yet, which then is valid).
    Replayed,
    /// Ahead of the next one by 1 + n.
    Skipped(u8),
}

/// Which fee the envelope offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeePick {
    Min,
    BelowMin,
    /// `u64::MAX` micro-gpn: never payable.
    Huge,
}

/// An amount, relative to what the signer holds where that means something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmountPick {
    Zero,
    Micros(u64),
    Units(u16),
    /// Everything the signer holds in the denomination.
    WholeBalance,
    Max,
}

/// An order to aim at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderPick {
    /// An open order by index (wrapped); an unknown id if none is open.
    Open(u8),
    /// An order with a live lease, by index (wrapped).
    Leased(u8),
    /// Any order ever created, by index (wrapped).
    Any(u8),
    Unknown,
}

/// A lease to aim at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeasePick {
    Live(u8),
    Any(u8),
    Unknown,
}

/// A bid price relative to the order's max price and the bidder's posted price for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PricePick {
    Zero,
    /// `min(max, posted) × pct ÷ 100`, at least one micro-unit: the price an honest agent
    /// might bid.
    PercentOfMax(u8),
    AboveMax,
}

/// What an order asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderShape {
    pub gpus: u8,
    pub a100_only: bool,
    pub memory_gib: u8,
    pub docker: bool,
    pub region: Option<u8>,
    pub max_price: AmountPick,
    pub deposit: AmountPick,
    pub max_duration_secs: u32,
    /// Break a term (empty name) so the order is invalid.
    pub malformed: bool,
    /// Recovery policy: attempts in all (0 is out of bounds), whether exit code 137 is
    /// retried, and the backoff in seconds.
    pub max_attempts: u8,
    pub retry_137: bool,
    pub backoff_secs: u8,
    /// 0: no verification; 1: spot check; 2, 3: replicas of that many; 4: replicas of 1
    /// (out of bounds).
    pub verification: u8,
}

/// The message a plan sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionPlan {
    Transfer {
        to: SignerPick,
        denom: Denom,
        amount: AmountPick,
    },
    Register {
        stake: AmountPick,
        gpus: u8,
        bad_profile: bool,
    },
    Update {
        gpus: u8,
        region: u8,
    },
    Deregister,
    CreateOrder(OrderShape),
    Cancel(OrderPick),
    Bid {
        order: OrderPick,
        price: PricePick,
    },
    Start(LeasePick),
    Complete {
        lease: LeasePick,
        outcome: WorkloadOutcome,
        exit_code: i32,
        long_detail: bool,
        /// 0: no digest (a verified order's success is refused); 1, 2: the result tag of
        /// digest `[k; 32]` — two answers, so runs agree and disagree.
        tag: u8,
    },
    /// The provider of a run that owes a reveal (by index among them) reveals digest `[k; 32]`:
    /// the one behind its tag when `right`, the other one otherwise.
    Reveal {
        pick: u8,
        right: bool,
    },
    /// A provider adds to its stake.
    Bond(AmountPick),
    /// A provider takes some of its stake out (it unbonds).
    Unbond(AmountPick),
    /// A tenant disputes an order's unchecked result.
    Dispute(OrderPick),
    /// A provider with a hardware challenge in flight answers it: commits to the product, or
    /// opens the leaves sampled, from the right product or (not `right`) a half-wrong one.
    Challenge {
        right: bool,
    },
    /// The lease's provider proves all its live leases running.
    Heartbeat(LeasePick),
    TopUp {
        order: OrderPick,
        amount: AmountPick,
    },
    Release(LeasePick),
    AnnounceExit,
}

/// One transaction to be built against whatever state it meets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxPlan {
    pub signer: SignerPick,
    pub nonce: NoncePick,
    pub wrong_chain: bool,
    pub fee: FeePick,
    pub action: ActionPlan,
}

const REGIONS: [&str; 3] = ["eu-west", "us-east", "ap-south"];

fn nth_wrapped<T: Copy>(items: &[T], i: u8) -> Option<T> {
    if items.is_empty() {
        None
    } else {
        Some(items[usize::from(i) % items.len()])
    }
}

fn arb_signer(world: &World) -> impl Strategy<Value = SignerPick> + use<> {
    let tenants = world.tenants.len().max(1) as u8;
    let providers = world.providers.len().max(1) as u8;
    let strangers = world.strangers.len().max(1) as u8;
    prop_oneof![
        3 => (0..tenants).prop_map(SignerPick::Tenant),
        3 => (0..providers).prop_map(SignerPick::Provider),
        1 => (0..strangers).prop_map(SignerPick::Stranger),
        7 => Just(SignerPick::Owner),
    ]
}

fn arb_amount() -> impl Strategy<Value = AmountPick> {
    prop_oneof![
        1 => Just(AmountPick::Zero),
        3 => (1u64..5_000).prop_map(AmountPick::Micros),
        4 => (1u16..200).prop_map(AmountPick::Units),
        1 => Just(AmountPick::WholeBalance),
        1 => Just(AmountPick::Max),
    ]
}

fn arb_order_pick() -> impl Strategy<Value = OrderPick> {
    prop_oneof![
        6 => any::<u8>().prop_map(OrderPick::Open),
        2 => any::<u8>().prop_map(OrderPick::Leased),
        2 => any::<u8>().prop_map(OrderPick::Any),
        1 => Just(OrderPick::Unknown),
    ]
}

fn arb_lease_pick() -> impl Strategy<Value = LeasePick> {
    prop_oneof![
        6 => any::<u8>().prop_map(LeasePick::Live),
        3 => any::<u8>().prop_map(LeasePick::Any),
        1 => Just(LeasePick::Unknown),
    ]
}

fn arb_outcome() -> impl Strategy<Value = WorkloadOutcome> {
    prop_oneof![
        4 => Just(WorkloadOutcome::Succeeded),
        1 => Just(WorkloadOutcome::Failed),
        1 => Just(WorkloadOutcome::OutOfMemory),
        1 => Just(WorkloadOutcome::TimedOut),
        1 => Just(WorkloadOutcome::ManifestRejected),
        1 => Just(WorkloadOutcome::ImageUnavailable),
        1 => Just(WorkloadOutcome::StartFailed),
        1 => Just(WorkloadOutcome::DiskExceeded),
        1 => Just(WorkloadOutcome::Lost),
    ]
}

fn arb_order_shape() -> impl Strategy<Value = OrderShape> {
    (
        (
            prop_oneof![4 => 0u8..=1, 2 => Just(2u8), 1 => Just(3u8)],
            prop::bool::weighted(0.2),
            prop_oneof![6 => 1u8..16, 1 => 16u8..80],
            prop::bool::weighted(0.3),
        ),
        prop::option::weighted(0.3, 0u8..3),
        prop_oneof![
            3 => (1u16..20).prop_map(AmountPick::Units),
            1 => arb_amount(),
        ],
        prop_oneof![
            2 => (1u64..50_000).prop_map(AmountPick::Micros),
            2 => (1u16..20).prop_map(AmountPick::Units),
            1 => arb_amount(),
        ],
        prop_oneof![12 => 1u32..240, 1 => Just(0u32), 1 => Just(u32::MAX)],
        prop::bool::weighted(0.05),
        (
            prop_oneof![1 => Just(0u8), 24 => 1u8..=4, 1 => Just(11u8)],
            prop::bool::weighted(0.5),
            0u8..3,
        ),
        prop_oneof![6 => Just(0u8), 3 => Just(1u8), 2 => 2u8..=3, 1 => Just(4u8)],
    )
        .prop_map(
            |(
                (gpus, a100_only, memory_gib, docker),
                region,
                max_price,
                deposit,
                dur,
                malformed,
                (max_attempts, retry_137, backoff_secs),
                verification,
            )| {
                OrderShape {
                    gpus,
                    a100_only,
                    memory_gib,
                    docker,
                    region,
                    max_price,
                    deposit,
                    max_duration_secs: dur,
                    malformed,
                    max_attempts,
                    retry_137,
                    backoff_secs,
                    verification,
                }
            },
        )
}

fn arb_action(world: &World) -> impl Strategy<Value = ActionPlan> + use<> {
    prop_oneof![
        2 => (arb_signer(world), prop_oneof![Just(Denom::Usd), Just(Denom::Gpn)], arb_amount())
            .prop_map(|(to, denom, amount)| ActionPlan::Transfer { to, denom, amount }),
        1 => (prop_oneof![3 => Just(AmountPick::Units(100)), 1 => arb_amount()], 0u8..4, prop::bool::weighted(0.2))
            .prop_map(|(stake, gpus, bad_profile)| ActionPlan::Register { stake, gpus, bad_profile }),
        1 => (0u8..4, 0u8..3).prop_map(|(gpus, region)| ActionPlan::Update { gpus, region }),
        1 => Just(ActionPlan::Deregister),
        6 => arb_order_shape().prop_map(ActionPlan::CreateOrder),
        2 => arb_order_pick().prop_map(ActionPlan::Cancel),
        8 => (
            arb_order_pick(),
            prop_oneof![
                1 => Just(PricePick::Zero),
                8 => (1u8..=100).prop_map(PricePick::PercentOfMax),
                1 => Just(PricePick::AboveMax),
            ],
        )
            .prop_map(|(order, price)| ActionPlan::Bid { order, price }),
        5 => arb_lease_pick().prop_map(ActionPlan::Start),
        4 => (arb_lease_pick(), arb_outcome(), prop_oneof![Just(0), Just(1), Just(137)], prop::bool::weighted(0.05), prop_oneof![1 => Just(0u8), 6 => Just(1u8), 2 => Just(2u8)])
            .prop_map(|(lease, outcome, exit_code, long_detail, tag)| ActionPlan::Complete { lease, outcome, exit_code, long_detail, tag }),
        3 => (any::<u8>(), prop::bool::weighted(0.8)).prop_map(|(pick, right)| ActionPlan::Reveal { pick, right }),
        1 => prop_oneof![3 => Just(AmountPick::Units(100)), 1 => arb_amount()].prop_map(ActionPlan::Bond),
        1 => arb_order_pick().prop_map(ActionPlan::Dispute),
        2 => prop::bool::weighted(0.8).prop_map(|right| ActionPlan::Challenge { right }),
        2 => arb_lease_pick().prop_map(ActionPlan::Heartbeat),
        2 => (arb_order_pick(), arb_amount()).prop_map(|(order, amount)| ActionPlan::TopUp { order, amount }),
        3 => arb_lease_pick().prop_map(ActionPlan::Release),
        2 => Just(ActionPlan::AnnounceExit),
        1 => prop_oneof![3 => Just(AmountPick::Units(50)), 1 => arb_amount()].prop_map(ActionPlan::Unbond),
    ]
}

/// One transaction plan for `world`'s actors: mostly well-formed (right chain, next nonce, the
/// minimum fee), with a steady share of spoiled envelopes, unknown signers, zero, huge and
/// overflowing amounts, bids above the max price or from non-providers or after the window,
/// cancels by strangers and completes by the wrong provider.
pub fn arb_tx(world: &World) -> impl Strategy<Value = TxPlan> + use<> {
    (
        arb_signer(world),
        prop_oneof![
            18 => Just(NoncePick::Next),
            1 => Just(NoncePick::Replayed),
            1 => (0u8..3).prop_map(NoncePick::Skipped),
        ],
        prop::bool::weighted(0.04),
        prop_oneof![
            20 => Just(FeePick::Min),
            1 => Just(FeePick::BelowMin),
            1 => Just(FeePick::Huge),
        ],
        arb_action(world),
    )
        .prop_map(|(signer, nonce, wrong_chain, fee, action)| TxPlan {
            signer,
            nonce,
            wrong_chain,
            fee,
            action,
        })
}

/// A block: up to `max_txs` plans and the time step to the block, in milliseconds.
pub fn arb_block(
    world: &World,
    max_txs: usize,
) -> impl Strategy<Value = (Vec<TxPlan>, u64)> + use<> {
    (
        prop::collection::vec(arb_tx(world), 0..=max_txs),
        prop_oneof![3 => Just(500u64), 1 => 0u64..120_000],
    )
}

/// Up to `max_blocks` blocks of up to `max_txs` plans each.
pub fn arb_blocks(
    world: &World,
    max_blocks: usize,
    max_txs: usize,
) -> impl Strategy<Value = Vec<(Vec<TxPlan>, u64)>> + use<> {
    prop::collection::vec(arb_block(world, max_txs), 1..=max_blocks)
}

impl World {
    /// Realizes a block's plans in order, each against the state the earlier ones left: they
    /// are applied to a scratch copy as `apply_block` will apply them, so a "next" nonce stays
    /// right after a rejected transaction and a plan may aim at an order created earlier in the
    /// same block. The world's own state is not changed.
    pub fn realize_block(&mut self, plans: &[TxPlan]) -> Vec<SignedTx> {
        let ctx = self.next_ctx();
        let saved = self.state.clone();
        self.state.height = ctx.height;
        self.state.time_ms = ctx.time_ms;
        let mut txs = Vec::with_capacity(plans.len());
        for plan in plans {
            let tx = self.realize(plan);
            let signer = tx.body.signer;
            // A rejection changes nothing, so the scratch state stays what the block will see.
            let _ = gpunet_ledger::apply_tx(&mut self.state, &tx);
            let nonce = self.state.nonce(&signer);
            self.set_pending_nonce(signer, nonce);
            txs.push(tx);
        }
        self.state = saved;
        txs
    }

    fn resolve_amount(
        &self,
        pick: AmountPick,
        signer: &gpunet_protocol::Address,
        denom: Denom,
    ) -> Amount {
        match pick {
            AmountPick::Zero => Amount::ZERO,
            AmountPick::Micros(m) => Amount::from_micros(m),
            AmountPick::Units(u) => usd(u64::from(u)),
            AmountPick::WholeBalance => self.balance(signer, denom),
            AmountPick::Max => Amount::MAX,
        }
    }

    fn resolve_order(&self, pick: OrderPick) -> Option<OrderId> {
        match pick {
            OrderPick::Open(i) => {
                let open: Vec<OrderId> = self.state.open_orders.iter().copied().collect();
                nth_wrapped(&open, i)
            }
            OrderPick::Leased(i) => {
                let leased: Vec<OrderId> = self
                    .state
                    .live_leases
                    .iter()
                    .map(|l| self.lease(*l).order)
                    .collect();
                nth_wrapped(&leased, i)
            }
            OrderPick::Any(i) => {
                // Live and ended (archived) orders alike.
                let all: Vec<OrderId> = (1..self.state.next_order_id).map(OrderId).collect();
                nth_wrapped(&all, i)
            }
            OrderPick::Unknown => None,
        }
    }

    fn resolve_lease(&self, pick: LeasePick) -> Option<LeaseId> {
        match pick {
            LeasePick::Live(i) => {
                let live: Vec<LeaseId> = self.state.live_leases.iter().copied().collect();
                nth_wrapped(&live, i)
            }
            LeasePick::Any(i) => {
                let all: Vec<LeaseId> = (1..self.state.next_lease_id).map(LeaseId).collect();
                nth_wrapped(&all, i)
            }
            LeasePick::Unknown => None,
        }
    }

    /// A live lease of a provider that announced its exit, for a `Live` pick.
    fn resolve_leaving_lease(&self, pick: LeasePick) -> Option<LeaseId> {
        let LeasePick::Live(i) = pick else {
            return None;
        };
        let leaving: Vec<LeaseId> = self
            .state
            .live_leases
            .iter()
            .copied()
            .filter(|id| {
                self.state
                    .leases
                    .get(id)
                    .and_then(|l| self.state.providers.get(&l.provider))
                    .is_some_and(|p| p.leaving)
            })
            .collect();
        nth_wrapped(&leaving, i)
    }

    /// A run that owes a reveal, by index (wrapped) among all of them, with its order.
    fn resolve_reveal(&self, pick: u8) -> Option<(OrderId, gpunet_ledger::Run)> {
        let owing: Vec<(OrderId, gpunet_ledger::Run)> = self
            .state
            .orders
            .iter()
            .filter(|(_, o)| {
                matches!(
                    o.verifying.stage,
                    gpunet_ledger::VerifyStage::Revealing { .. }
                )
            })
            .flat_map(|(id, o)| {
                o.verifying
                    .runs
                    .iter()
                    .filter(|r| r.reveal_due && !r.revealed && !r.wrong)
                    .map(|r| (*id, r.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        nth_wrapped(&(0..owing.len()).collect::<Vec<_>>(), pick).map(|i| owing[i].clone())
    }

    /// An order waiting on a verdict, by index (wrapped), with its verifier and its runs not
    /// judged wrong.
    fn resolve_verdict(
        &self,
        pick: u8,
    ) -> Option<(OrderId, gpunet_protocol::Address, Vec<LeaseId>)> {
        let judging: Vec<(OrderId, gpunet_protocol::Address, Vec<LeaseId>)> = self
            .state
            .orders
            .iter()
            .filter_map(|(id, o)| match o.verifying.stage {
                gpunet_ledger::VerifyStage::Judging { verifier, .. } => Some((
                    *id,
                    verifier,
                    o.verifying
                        .runs
                        .iter()
                        .filter(|r| !r.wrong)
                        .map(|r| r.lease)
                        .collect(),
                )),
                _ => None,
            })
            .collect();
        nth_wrapped(&(0..judging.len()).collect::<Vec<_>>(), pick).map(|i| judging[i].clone())
    }

    fn resolve_signer(
        &self,
        pick: SignerPick,
        owner: Option<gpunet_protocol::Address>,
    ) -> gpunet_protocol::Address {
        let fallback = self.tenants.first().or(self.strangers.first()).copied();
        let chosen = match pick {
            SignerPick::Tenant(i) => nth_wrapped(&self.tenants, i),
            SignerPick::Provider(i) => nth_wrapped(&self.providers, i),
            SignerPick::Stranger(i) => nth_wrapped(&self.strangers, i),
            SignerPick::Owner => owner,
        };
        chosen
            .or(fallback)
            .expect("a world has at least one tenant or stranger")
    }

    /// The answer `signer` would send to its challenge in flight now: its commitment, or the
    /// next ten leaves due, from the right product or (not `right`) one with every other entry
    /// wrong. With no challenge in flight, a commitment to nothing (refused).
    fn challenge_msg(&self, signer: &gpunet_protocol::Address, right: bool) -> Msg {
        let Some(c) = self
            .state
            .providers
            .get(signer)
            .and_then(|p| p.hardware.challenge.clone())
        else {
            return Msg::CommitChallenge {
                challenge: 1,
                root: gpunet_protocol::Hash([0; 32]),
            };
        };
        let Ok(m) = gpunet_verify::Matrices::new(c.seed.0, c.n as usize) else {
            return Msg::CommitChallenge {
                challenge: c.id,
                root: gpunet_protocol::Hash([0; 32]),
            };
        };
        let mut product = gpunet_verify::multiply(&m.a(), &m.b(), m.n);
        if !right {
            for e in product.iter_mut().step_by(2) {
                *e = e.wrapping_add(1);
            }
        }
        let tree = gpunet_verify::Tree::build(product);
        if c.root.is_none() {
            return Msg::CommitChallenge {
                challenge: c.id,
                root: gpunet_protocol::Hash(tree.root()),
            };
        }
        let openings = gpunet_ledger::challenges::leaves_due(&self.state.params, &c)
            .into_iter()
            .filter(|l| c.opened.binary_search(l).is_err())
            .take(gpunet_protocol::MAX_OPENINGS_PER_TX)
            .filter_map(|l| tree.open(l))
            .map(|o| gpunet_protocol::ChallengeOpening {
                leaf: o.leaf,
                entries: o.entries,
                path: o
                    .path
                    .into_iter()
                    .map(|h| h.map(gpunet_protocol::Hash))
                    .collect(),
            })
            .collect();
        Msg::OpenChallenge {
            challenge: c.id,
            openings,
        }
    }

    /// Builds the transaction `plan` describes against the current state (see the module doc).
    pub fn realize(&mut self, plan: &TxPlan) -> SignedTx {
        let unknown_order = OrderId(self.state.next_order_id + 1_000);
        let unknown_lease = LeaseId(self.state.next_lease_id + 1_000);
        let (owner, msg_for) = match &plan.action {
            ActionPlan::Cancel(p) | ActionPlan::TopUp { order: p, .. } | ActionPlan::Dispute(p) => {
                let id = self.resolve_order(*p);
                (
                    id.map(|id| self.order(id).tenant),
                    ResolvedTarget::Order(id.unwrap_or(unknown_order)),
                )
            }
            ActionPlan::Release(p) => {
                // Only a leaving provider may release: pick among its live leases when there
                // are any, so releases apply as well as get refused.
                let id = self
                    .resolve_leaving_lease(*p)
                    .or_else(|| self.resolve_lease(*p));
                (
                    id.map(|id| self.lease(id).provider),
                    ResolvedTarget::Lease(id.unwrap_or(unknown_lease)),
                )
            }
            ActionPlan::Start(p)
            | ActionPlan::Complete { lease: p, .. }
            | ActionPlan::Heartbeat(p) => {
                let id = self.resolve_lease(*p);
                (
                    id.map(|id| self.lease(id).provider),
                    ResolvedTarget::Lease(id.unwrap_or(unknown_lease)),
                )
            }
            ActionPlan::Bid { order, .. } => {
                let id = self.resolve_order(*order);
                // "Owner" of a bid: a registered provider, chosen by the order and its bids.
                let registered: Vec<_> = self.state.providers.keys().copied().collect();
                let p = id.and_then(|id| {
                    let turn = id.0 + self.order(id).bids.len() as u64;
                    nth_wrapped(&registered, (turn % 251) as u8)
                });
                (p, ResolvedTarget::Order(id.unwrap_or(unknown_order)))
            }
            // With no reveal owed, a reveal plan becomes the verdict of an order being judged
            // (the random stream of plans stays as it was).
            ActionPlan::Reveal { pick, .. } => match self.resolve_reveal(*pick) {
                Some((order, run)) => (Some(run.provider), ResolvedTarget::Run(order, run)),
                None => match self.resolve_verdict(*pick) {
                    Some((order, verifier, runs)) => {
                        (Some(verifier), ResolvedTarget::Verdict(order, runs))
                    }
                    None => (None, ResolvedTarget::None),
                },
            },
            ActionPlan::Bond(_) | ActionPlan::Unbond(_) => (
                self.state.providers.keys().next().copied(),
                ResolvedTarget::None,
            ),
            ActionPlan::Challenge { .. } => (
                // A provider with a challenge in flight, if any.
                self.state
                    .providers
                    .iter()
                    .find(|(_, p)| p.hardware.challenge.is_some())
                    .map(|(a, _)| *a),
                ResolvedTarget::None,
            ),
            ActionPlan::Register { .. } | ActionPlan::Update { .. } | ActionPlan::Deregister => {
                // The last provider: worlds that keep one unregistered put it there.
                (self.providers.last().copied(), ResolvedTarget::None)
            }
            ActionPlan::AnnounceExit => {
                // A provider that holds a live lease (so that it has leases to release), never
                // the first, which keeps the market going; else the last provider.
                let holding = self
                    .providers
                    .iter()
                    .skip(1)
                    .rev()
                    .find(|p| {
                        self.state
                            .providers
                            .get(*p)
                            .is_some_and(|v| !v.leaving && !v.live_leases.is_empty())
                    })
                    .copied();
                (
                    holding.or(self.providers.last().copied()),
                    ResolvedTarget::None,
                )
            }
            _ => (None, ResolvedTarget::None),
        };
        // A provider that announces its exit takes no more leases for the rest of the run: never
        // the first provider, so the market keeps going.
        let signer = match plan.action {
            ActionPlan::AnnounceExit => self.resolve_signer(SignerPick::Owner, owner),
            _ => self.resolve_signer(plan.signer, owner),
        };
        let msg = match &plan.action {
            ActionPlan::Transfer { to, denom, amount } => Msg::Transfer {
                to: self.resolve_signer(*to, None),
                denom: *denom,
                amount: self.resolve_amount(*amount, &signer, *denom),
            },
            ActionPlan::Register {
                stake,
                gpus,
                bad_profile,
            } => {
                let mut profile = provider_profile(8_000, 32_768, vec![h100(); usize::from(*gpus)]);
                if *bad_profile {
                    profile.region = "Not A Region".to_owned();
                }
                Msg::RegisterProvider {
                    stake: self.resolve_amount(*stake, &signer, Denom::Gpn),
                    profile,
                }
            }
            ActionPlan::Update { gpus, region } => {
                let mut profile = provider_profile(8_000, 32_768, vec![a100(); usize::from(*gpus)]);
                profile.region = REGIONS[usize::from(*region) % REGIONS.len()].to_owned();
                // The agent's own rates, low enough that bids meet them (and some go above).
                profile.rates = gpunet_protocol::Rates::default();
                Msg::UpdateProvider { profile }
            }
            ActionPlan::Deregister => Msg::DeregisterProvider,
            ActionPlan::CreateOrder(shape) => {
                let mut b = order_terms()
                    .gpus(
                        u32::from(shape.gpus),
                        if shape.a100_only { &["a100"] } else { &[] },
                    )
                    .memory_mib(u64::from(shape.memory_gib) * 1_024)
                    .runtime(if shape.docker {
                        Runtime::Docker
                    } else {
                        Runtime::Process
                    })
                    .max_price_per_hour(self.resolve_amount(shape.max_price, &signer, Denom::Usd))
                    .deposit(self.resolve_amount(shape.deposit, &signer, Denom::Usd))
                    .max_duration_secs(u64::from(shape.max_duration_secs));
                if let Some(r) = shape.region {
                    b = b.regions(&[REGIONS[usize::from(r) % REGIONS.len()]]);
                }
                if shape.malformed {
                    b = b.name("");
                }
                let codes: &[i32] = if shape.retry_137 { &[137] } else { &[] };
                b = b.recovery(
                    u32::from(shape.max_attempts),
                    codes,
                    u64::from(shape.backoff_secs),
                );
                let mut terms = b.build();
                terms.verification = match shape.verification {
                    0 => gpunet_protocol::Verification::NONE,
                    1 => gpunet_protocol::Verification {
                        mode: gpunet_protocol::VerificationMode::SpotCheck,
                        replicas: 0,
                        compare: gpunet_protocol::Compare::Exact,
                    },
                    n => gpunet_protocol::Verification {
                        mode: gpunet_protocol::VerificationMode::Replicas,
                        // 4 asks for replicas of 1: out of bounds, refused.
                        replicas: if n == 4 { 1 } else { n },
                        // Half the replicated orders compare tensors, judged by a verifier
                        // (decided from a drawn field, so the random stream stays as it was).
                        compare: if shape.backoff_secs % 2 == 1 {
                            gpunet_protocol::Compare::Tensors
                        } else {
                            gpunet_protocol::Compare::Exact
                        },
                    },
                };
                Msg::CreateOrder { terms }
            }
            ActionPlan::Cancel(_) => Msg::CancelOrder {
                order: msg_for.order(unknown_order),
            },
            ActionPlan::Bid { price, .. } => {
                let order = msg_for.order(unknown_order);
                let max = self
                    .state
                    .orders
                    .get(&order)
                    .map_or(usd(1), |o| o.terms.max_price_per_hour);
                let posted = self
                    .state
                    .orders
                    .get(&order)
                    .zip(self.state.providers.get(&signer))
                    .and_then(|(o, p)| {
                        gpunet_ledger::explain::posted_price(&self.state, p, &o.terms)
                    });
                let price_per_hour = match price {
                    PricePick::Zero => Amount::ZERO,
                    PricePick::PercentOfMax(pct) => posted
                        .map_or(max, |posted| posted.min(max))
                        .mul_div_floor(u64::from(*pct), 100)
                        .unwrap_or(Amount::MAX)
                        .max(Amount::from_micros(1)),
                    PricePick::AboveMax => max
                        .checked_add(Amount::from_micros(1))
                        .unwrap_or(Amount::MAX),
                };
                Msg::PlaceBid {
                    order,
                    price_per_hour,
                }
            }
            ActionPlan::Start(_) => Msg::StartLease {
                lease: msg_for.lease(unknown_lease),
            },
            ActionPlan::Complete {
                outcome,
                exit_code,
                long_detail,
                tag,
                ..
            } => {
                let mut result = lease_result(*outcome);
                result.exit_code = Some(*exit_code);
                let lease = msg_for.lease(unknown_lease);
                let order = self
                    .state
                    .leases
                    .get(&lease)
                    .map_or(unknown_order, |l| l.order);
                if *tag > 0 {
                    result.output_digest = Some(gpunet_protocol::result_tag(
                        order,
                        &gpunet_protocol::Hash([*tag; 32]),
                    ));
                }
                if *long_detail {
                    result.detail = "x".repeat(gpunet_protocol::tx::MAX_RESULT_DETAIL_BYTES + 1);
                }
                Msg::CompleteLease {
                    lease: msg_for.lease(unknown_lease),
                    result,
                }
            }
            ActionPlan::Heartbeat(_) => {
                let mut leases: Vec<LeaseId> = self
                    .state
                    .providers
                    .get(&signer)
                    .map(|p| p.live_leases.iter().copied().collect())
                    .unwrap_or_default();
                if leases.is_empty() {
                    leases.push(msg_for.lease(unknown_lease));
                }
                Msg::Heartbeat { leases }
            }
            ActionPlan::TopUp { amount, .. } => Msg::TopUpOrder {
                order: msg_for.order(unknown_order),
                amount: self.resolve_amount(*amount, &signer, Denom::Usd),
            },
            ActionPlan::Release(_) => Msg::ReleaseLease {
                lease: msg_for.lease(unknown_lease),
            },
            ActionPlan::AnnounceExit => Msg::AnnounceExit,
            ActionPlan::Reveal { right, pick } => match &msg_for {
                // Right: the first two runs agree. Otherwise none agree, every run is missing,
                // or one run alone "agrees" (refused).
                ResolvedTarget::Verdict(order, runs) => {
                    let (agreeing, missing) = match (*right, pick % 3) {
                        (true, _) => (runs.iter().take(2).copied().collect(), Vec::new()),
                        (false, 0) => (Vec::new(), Vec::new()),
                        (false, 1) => (Vec::new(), runs.clone()),
                        (false, _) => (runs.iter().take(1).copied().collect(), Vec::new()),
                    };
                    Msg::PostVerdict {
                        order: *order,
                        agreeing,
                        missing,
                    }
                }
                ResolvedTarget::Run(order, run) => {
                    let behind = (1u8..=2)
                        .find(|k| {
                            gpunet_protocol::result_tag(*order, &gpunet_protocol::Hash([*k; 32]))
                                == run.tag
                        })
                        .unwrap_or(1);
                    let k = if *right { behind } else { 3 - behind };
                    Msg::RevealDigest {
                        order: *order,
                        lease: run.lease,
                        digest: gpunet_protocol::Hash([k; 32]),
                    }
                }
                _ => Msg::RevealDigest {
                    order: unknown_order,
                    lease: unknown_lease,
                    digest: gpunet_protocol::Hash([1; 32]),
                },
            },
            ActionPlan::Dispute(_) => Msg::Dispute {
                order: msg_for.order(unknown_order),
            },
            ActionPlan::Bond(amount) => Msg::BondStake {
                amount: self.resolve_amount(*amount, &signer, Denom::Gpn),
            },
            ActionPlan::Challenge { right } => self.challenge_msg(&signer, *right),
            ActionPlan::Unbond(amount) => Msg::UnbondStake {
                amount: self.resolve_amount(*amount, &signer, Denom::Gpn),
            },
        };
        let mut body = self.body(signer, msg);
        match plan.nonce {
            NoncePick::Next => {}
            NoncePick::Replayed => body.nonce = body.nonce.saturating_sub(1),
            NoncePick::Skipped(n) => body.nonce = body.nonce.saturating_add(1 + u64::from(n)),
        }
        if plan.wrong_chain {
            body.chain_id = format!("{}-other", body.chain_id);
        }
        body.fee = match plan.fee {
            FeePick::Min => self.state.params.min_tx_fee,
            FeePick::BelowMin => self
                .state
                .params
                .min_tx_fee
                .saturating_sub(Amount::from_micros(1)),
            FeePick::Huge => Amount::MAX,
        };
        self.sign(body)
    }
}

enum ResolvedTarget {
    Order(OrderId),
    Lease(LeaseId),
    Run(OrderId, gpunet_ledger::Run),
    /// A `compare: tensors` order waiting on a verdict, with its runs not judged wrong.
    Verdict(OrderId, Vec<LeaseId>),
    None,
}

impl ResolvedTarget {
    fn order(&self, unknown: OrderId) -> OrderId {
        match self {
            ResolvedTarget::Order(id) => *id,
            _ => unknown,
        }
    }
    fn lease(&self, unknown: LeaseId) -> LeaseId {
        match self {
            ResolvedTarget::Lease(id) => *id,
            _ => unknown,
        }
    }
}
