//! The verification scenario: how fast do spot checks catch cheaters, do they ever slash an
//! honest provider, and what do they cost?
//!
//! Each seed runs its own chain from genesis. Tenants open `orders_per_block` spot-checked jobs
//! a block (one core, a few blocks long, well under the probation deposit cap); providers bid on
//! open orders (up to three bids an order, at 90–100% of a reference price), start what they
//! win the next block and report it 2–6 blocks later, and reveal their digests when asked. Every
//! job has one right output; an honest provider reports its tag, a cheater reports a made-up
//! digest's tag on a run with its cheat probability (decided per run, whether the run is an
//! original, a check or a referee). The ledger does the rest: draws, reveals, referees,
//! slashes, reputation, probation.
//!
//! Measured per seed, and over all seeds:
//! - **caught within**: for each cheater, how many runs it had reported when it was first
//!   slashed; a cheater not caught by `horizon` of its runs counts as never caught. The
//!   figure is the 99th percentile over all cheaters of the class in all seeds.
//! - **honest slashed**: slashes of honest providers (must be 0).
//! - **check overhead**: of the compute (billed time) of the orders whose first run was by a
//!   provider past probation, the share spent on runs after the first (checks, referees).

use std::collections::{BTreeMap, BTreeSet};

use gpunet_ledger::{Genesis, GenesisAccount, Params, State, apply_block, check_tx};
use gpunet_protocol::{
    Address, Amount, Balances, BlockCtx, Capacity, EncryptionKey, Event, Hash, LeaseEndReason,
    LeaseId, LeaseResult, Msg, OrderId, OrderTerms, ProviderProfile, Rates, RecoveryPolicy,
    Resources, Runtime, SignedTx, TxBody, UsageReport, Verification, VerificationMode,
    WorkloadOutcome, result_tag,
};
use serde::Serialize;

use crate::Rng;

const CHAIN_ID: &str = "gpunet-sim";
const GENESIS_TIME_MS: u64 = 1_735_689_600_000;
const BLOCK_MS: u64 = 500;
const TENANTS: usize = 4;
const PPM: u64 = 1_000_000;
/// Bids an order gathers before providers stop bidding on it.
const BIDS_PER_ORDER: usize = 3;

/// What one run simulates.
#[derive(Debug, Clone)]
pub struct Config {
    pub honest: usize,
    /// Providers that cheat on 10% of their runs.
    pub cheat10: usize,
    /// Providers that cheat on every run.
    pub cheat100: usize,
    /// Jobs tenants open per block.
    pub orders_per_block: usize,
    /// Runs after which a cheat-10% cheater not yet caught counts as never caught.
    pub horizon10: u64,
    /// The same for a cheater on every run.
    pub horizon100: u64,
    /// The run goes on at least this long, so the check overhead is measured past probation
    /// too, not only while every provider is new.
    pub min_blocks: u64,
    /// The run stops here even if a cheater is unresolved.
    pub max_blocks: u64,
    pub params: Params,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            honest: 12,
            cheat10: 4,
            cheat100: 2,
            orders_per_block: 12,
            horizon10: 500,
            horizon100: 50,
            min_blocks: 400,
            max_blocks: 4_000,
            params: Params::default(),
        }
    }
}

/// One seed's figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SeedReport {
    pub seed: u64,
    pub blocks: u64,
    /// Runs reported by all providers.
    pub runs: u64,
    /// Per cheat-10% cheater: its runs when first slashed, or none.
    pub caught_cheat10: Vec<Option<u64>>,
    pub caught_cheat100: Vec<Option<u64>>,
    pub honest_slashed: u64,
    /// Billed milliseconds of the orders past probation: all their runs, and the runs after
    /// the first.
    pub past_probation_ms: u128,
    pub past_probation_check_ms: u128,
    /// The same over every verified order, probation included.
    pub all_ms: u128,
    pub all_check_ms: u128,
    /// Orders whose comparison ended inconclusive or incomplete.
    pub undecided: u64,
}

/// Figures over all seeds: what `gpunet bench verification --json` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub seeds: u64,
    /// 99th percentile of runs-until-caught of the cheat-10% cheaters; none if more than 1% of
    /// them got past `horizon10` uncaught.
    pub caught_within_jobs_p99_cheat10: Option<u64>,
    pub caught_within_jobs_p99_cheat100: Option<u64>,
    pub honest_slashed: u64,
    /// Checking compute over all compute, for orders whose first run was past probation.
    pub check_overhead_ratio: f64,
    /// The same with probation included (every probation run is checked).
    pub check_overhead_ratio_with_probation: f64,
    pub cheat10_samples: usize,
    pub cheat10_caught_within_horizon: usize,
    pub cheat100_samples: usize,
    pub cheat100_caught_within_horizon: usize,
    pub runs: u64,
    pub undecided_orders: u64,
}

/// The 99th percentile (nearest rank) of `samples`, where none is "never": none when that rank
/// falls among the nevers or past `horizon`.
pub fn p99(samples: &[Option<u64>], horizon: u64) -> Option<u64> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted: Vec<u64> = samples
        .iter()
        .map(|s| s.filter(|n| *n <= horizon).unwrap_or(u64::MAX))
        .collect();
    sorted.sort_unstable();
    let rank = (samples.len() * 99).div_ceil(100).max(1);
    let v = sorted[rank - 1];
    (v != u64::MAX).then_some(v)
}

/// Runs `seeds` seeds from `first_seed` and sums them up.
pub fn run(config: &Config, first_seed: u64, seeds: u64) -> (Report, Vec<SeedReport>) {
    let per_seed: Vec<SeedReport> = (first_seed..first_seed + seeds)
        .map(|s| run_seed(config, s))
        .collect();
    (summarize(config, &per_seed), per_seed)
}

/// The [`Report`] over finished seeds.
pub fn summarize(config: &Config, per_seed: &[SeedReport]) -> Report {
    let c10: Vec<Option<u64>> = per_seed
        .iter()
        .flat_map(|s| s.caught_cheat10.clone())
        .collect();
    let c100: Vec<Option<u64>> = per_seed
        .iter()
        .flat_map(|s| s.caught_cheat100.clone())
        .collect();
    let within = |v: &[Option<u64>], h: u64| v.iter().filter(|c| c.is_some_and(|n| n <= h)).count();
    let ratio = |num: u128, den: u128| {
        if den == 0 {
            0.0
        } else {
            num as f64 / den as f64
        }
    };
    let sum = |f: fn(&SeedReport) -> u128| per_seed.iter().map(f).sum::<u128>();
    Report {
        seeds: per_seed.len() as u64,
        caught_within_jobs_p99_cheat10: p99(&c10, config.horizon10),
        caught_within_jobs_p99_cheat100: p99(&c100, config.horizon100),
        honest_slashed: per_seed.iter().map(|s| s.honest_slashed).sum(),
        check_overhead_ratio: ratio(
            sum(|s| s.past_probation_check_ms),
            sum(|s| s.past_probation_ms),
        ),
        check_overhead_ratio_with_probation: ratio(sum(|s| s.all_check_ms), sum(|s| s.all_ms)),
        cheat10_samples: c10.len(),
        cheat10_caught_within_horizon: within(&c10, config.horizon10),
        cheat100_samples: c100.len(),
        cheat100_caught_within_horizon: within(&c100, config.horizon100),
        runs: per_seed.iter().map(|s| s.runs).sum(),
        undecided_orders: per_seed.iter().map(|s| s.undecided).sum(),
    }
}

/// Who a simulated provider is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Honest,
    Cheat10,
    Cheat100,
}

impl Kind {
    fn cheat_ppm(self) -> u64 {
        match self {
            Kind::Honest => 0,
            Kind::Cheat10 => PPM / 10,
            Kind::Cheat100 => PPM,
        }
    }
}

struct Sim<'a> {
    config: &'a Config,
    seed: u64,
    rng: Rng,
    state: State,
    tenants: Vec<Address>,
    providers: Vec<(Address, Kind)>,
    kinds: BTreeMap<Address, Kind>,
    /// Leases won and not yet started: started the next block.
    to_start: Vec<(LeaseId, Address)>,
    /// Running leases and the height they report at.
    to_complete: BTreeMap<u64, Vec<(LeaseId, Address, OrderId)>>,
    /// The digest each lease's provider reported (by tag), for its reveal.
    digests: BTreeMap<LeaseId, Hash>,
    to_reveal: Vec<(OrderId, LeaseId)>,
    runs_by: BTreeMap<Address, u64>,
    caught: BTreeMap<Address, u64>,
    /// Per order: billed time of each lease, in order, and whether its draw was past probation.
    billed: BTreeMap<OrderId, Vec<u64>>,
    past_probation: BTreeSet<OrderId>,
    report: SeedReport,
    next_job: u64,
}

/// A fresh key-less address for party `i` of `role` (the sim signs nothing).
fn address(seed: u64, role: &str, i: usize) -> Address {
    let mut h = blake3::Hasher::new();
    h.update(b"gpunet/sim/address\0");
    h.update(role.as_bytes());
    h.update(&seed.to_le_bytes());
    h.update(&(i as u64).to_le_bytes());
    Address(*h.finalize().as_bytes())
}

fn units(n: u64) -> Amount {
    Amount::from_micros(n * 1_000_000)
}

fn profile(i: usize) -> ProviderProfile {
    ProviderProfile {
        capabilities: Default::default(),
        endpoint: format!("http://provider-{i}.sim:7000"),
        region: "sim".to_owned(),
        capacity: Capacity {
            cpu_millis: 8_000,
            memory_mib: 32_768,
            disk_mib: 100_000,
            gpus: Vec::new(),
        },
        runtimes: vec![Runtime::Process],
        encryption_key: EncryptionKey([9; 32]),
        rates: Rates {
            per_cpu_core_hour: units(1),
            per_memory_gib_hour: Amount::ZERO,
            per_gpu_hour: BTreeMap::new(),
            default_per_gpu_hour: Amount::ZERO,
        },
    }
}

/// One seed's run.
pub fn run_seed(config: &Config, seed: u64) -> SeedReport {
    let mut sim = Sim::new(config, seed);
    sim.run();
    sim.report
}

impl<'a> Sim<'a> {
    fn new(config: &'a Config, seed: u64) -> Sim<'a> {
        let tenants: Vec<Address> = (0..TENANTS).map(|i| address(seed, "tenant", i)).collect();
        let mut providers = Vec::new();
        let kinds = [
            (Kind::Honest, config.honest),
            (Kind::Cheat10, config.cheat10),
            (Kind::Cheat100, config.cheat100),
        ];
        for (kind, n) in kinds {
            for _ in 0..n {
                let i = providers.len();
                providers.push((address(seed, "provider", i), kind));
            }
        }
        // Interleave who registers first, so order of registration decides nothing.
        let mut rng = Rng::new(seed, "verification");
        for i in (1..providers.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            providers.swap(i, j);
        }
        let mut accounts: Vec<GenesisAccount> = tenants
            .iter()
            .map(|a| GenesisAccount {
                address: *a,
                balances: Balances {
                    usd: units(10_000_000),
                    gpn: units(100_000),
                },
            })
            .collect();
        accounts.extend(providers.iter().map(|(a, _)| GenesisAccount {
            address: *a,
            balances: Balances {
                usd: Amount::ZERO,
                gpn: units(100_000),
            },
        }));
        let genesis = Genesis {
            chain_id: CHAIN_ID.to_owned(),
            genesis_time_ms: GENESIS_TIME_MS,
            params: config.params.clone(),
            accounts,
        };
        let state = State::from_genesis(&genesis).expect("the sim's genesis is valid");
        let kinds_map = providers.iter().copied().collect();
        Sim {
            config,
            seed,
            rng,
            state,
            tenants,
            providers,
            kinds: kinds_map,
            to_start: Vec::new(),
            to_complete: BTreeMap::new(),
            digests: BTreeMap::new(),
            to_reveal: Vec::new(),
            runs_by: BTreeMap::new(),
            caught: BTreeMap::new(),
            billed: BTreeMap::new(),
            past_probation: BTreeSet::new(),
            report: SeedReport {
                seed,
                ..SeedReport::default()
            },
            next_job: 0,
        }
    }

    fn body(&self, signer: Address, nonce: u64, msg: Msg) -> TxBody {
        TxBody {
            chain_id: CHAIN_ID.to_owned(),
            signer,
            nonce,
            fee: self.state.params.min_tx_fee,
            msg,
        }
    }

    /// The job's one right output.
    fn true_digest(&self, order: OrderId) -> Hash {
        let mut h = blake3::Hasher::new();
        h.update(b"gpunet/sim/output\0");
        h.update(&self.seed.to_le_bytes());
        h.update(&order.0.to_le_bytes());
        Hash(*h.finalize().as_bytes())
    }

    fn terms(&mut self) -> OrderTerms {
        self.next_job += 1;
        OrderTerms {
            capabilities: Default::default(),
            name: format!("job-{}", self.next_job),
            manifest_hash: Hash::of(&self.next_job.to_le_bytes()),
            resources: Resources {
                cpu_millis: 1_000,
                memory_mib: 1_024,
                disk_mib: 1_024,
                gpu: Default::default(),
            },
            regions: Vec::new(),
            runtime: Runtime::Process,
            max_price_per_hour: units(1),
            deposit: units(1),
            max_duration_secs: 3_600,
            recovery: RecoveryPolicy::default(),
            verification: Verification {
                mode: VerificationMode::SpotCheck,
                replicas: 0,
                compare: Default::default(),
            },
        }
    }

    fn run(&mut self) {
        // Block 1: every provider registers with what its capacity needs.
        let stake = gpunet_ledger::trust::required_stake(&self.state.params, 0);
        let regs: Vec<(Address, Msg)> = self
            .providers
            .iter()
            .enumerate()
            .map(|(i, (a, _))| {
                (
                    *a,
                    Msg::RegisterProvider {
                        stake,
                        profile: profile(i),
                    },
                )
            })
            .collect();
        self.apply(regs);
        while self.state.height < self.config.max_blocks
            && (self.state.height < self.config.min_blocks || !self.resolved())
        {
            let msgs = self.block_msgs();
            self.apply(msgs);
        }
        for (a, kind) in &self.providers {
            let caught = self.caught.get(a).copied();
            match kind {
                Kind::Cheat10 => self.report.caught_cheat10.push(caught),
                Kind::Cheat100 => self.report.caught_cheat100.push(caught),
                Kind::Honest => {}
            }
        }
        self.report.blocks = self.state.height;
    }

    /// Every cheater caught, or past its horizon.
    fn resolved(&self) -> bool {
        self.providers.iter().all(|(a, kind)| {
            let horizon = match kind {
                Kind::Honest => return true,
                Kind::Cheat10 => self.config.horizon10,
                Kind::Cheat100 => self.config.horizon100,
            };
            self.caught.contains_key(a) || self.runs_by.get(a).copied().unwrap_or(0) >= horizon
        })
    }

    fn block_msgs(&mut self) -> Vec<(Address, Msg)> {
        let height = self.state.height + 1;
        let mut msgs: Vec<(Address, Msg)> = Vec::new();
        // Providers first: what they owe (starts, reports, reveals) cannot be refused.
        for (lease, provider) in std::mem::take(&mut self.to_start) {
            msgs.push((provider, Msg::StartLease { lease }));
            let d = 2 + self.rng.below(5);
            let order = self
                .state
                .leases
                .get(&lease)
                .map_or(OrderId(0), |l| l.order);
            self.to_complete
                .entry(height + d)
                .or_default()
                .push((lease, provider, order));
        }
        for (lease, provider, order) in self.to_complete.remove(&height).unwrap_or_default() {
            if !self.state.leases.contains_key(&lease) {
                continue;
            }
            let kind = self.kinds.get(&provider).copied().unwrap_or(Kind::Honest);
            let digest = if self.rng.chance_ppm(kind.cheat_ppm()) {
                Hash(self.rng.bytes())
            } else {
                self.true_digest(order)
            };
            self.digests.insert(lease, digest);
            *self.runs_by.entry(provider).or_default() += 1;
            self.report.runs += 1;
            msgs.push((
                provider,
                Msg::CompleteLease {
                    lease,
                    result: LeaseResult {
                        outcome: WorkloadOutcome::Succeeded,
                        exit_code: Some(0),
                        output_digest: Some(result_tag(order, &digest)),
                        usage: UsageReport::default(),
                        detail: String::new(),
                    },
                },
            ));
        }
        for (order, lease) in std::mem::take(&mut self.to_reveal) {
            let Some(provider) = self.state.orders.get(&order).and_then(|o| {
                o.verifying
                    .runs
                    .iter()
                    .find(|r| r.lease == lease)
                    .map(|r| r.provider)
            }) else {
                continue;
            };
            let Some(digest) = self.digests.get(&lease).copied() else {
                continue;
            };
            msgs.push((
                provider,
                Msg::RevealDigest {
                    order,
                    lease,
                    digest,
                },
            ));
        }
        // Tenants open jobs.
        for k in 0..self.config.orders_per_block {
            let tenant = self.tenants[k % TENANTS];
            let terms = self.terms();
            msgs.push((tenant, Msg::CreateOrder { terms }));
        }
        // Bids last: each checked against the state before the block, with the nonce it will
        // have, so a bid the ledger would refuse is not sent.
        let open: Vec<OrderId> = self.state.open_orders.iter().copied().collect();
        for order in open {
            let have = self.state.orders.get(&order).map_or(0, |o| o.bids.len());
            if have >= BIDS_PER_ORDER {
                continue;
            }
            let mut placed = have;
            let n = self.providers.len();
            let start = self.rng.below(n as u64) as usize;
            for k in 0..n {
                if placed >= BIDS_PER_ORDER {
                    break;
                }
                let provider = self.providers[(start + k) % n].0;
                let price = Amount::from_micros(900_000 + self.rng.below(100_001));
                let msg = Msg::PlaceBid {
                    order,
                    price_per_hour: price,
                };
                // Checked with the provider's nonce before this block: the check reads the
                // state as it is now; the nonce is set when it is sent.
                let probe = self.body(provider, self.state.nonce(&provider), msg.clone());
                if check_tx(&self.state, &probe).is_ok() {
                    placed += 1;
                    msgs.push((provider, msg));
                }
            }
        }
        msgs
    }

    /// Applies `msgs` as the next block, nonces in order per signer, and reads its events.
    fn apply(&mut self, msgs: Vec<(Address, Msg)>) {
        let height = self.state.height + 1;
        let mut nonces: BTreeMap<Address, u64> = BTreeMap::new();
        let txs: Vec<SignedTx> = msgs
            .into_iter()
            .map(|(signer, msg)| {
                let nonce = nonces
                    .entry(signer)
                    .or_insert_with(|| self.state.nonce(&signer));
                let body = self.body(signer, *nonce, msg);
                *nonce += 1;
                SignedTx {
                    body,
                    signature: [0; 64],
                }
            })
            .collect();
        let mut seed = blake3::Hasher::new();
        seed.update(b"gpunet/sim/block\0");
        seed.update(&self.seed.to_le_bytes());
        seed.update(&height.to_le_bytes());
        let ctx = BlockCtx {
            height,
            time_ms: GENESIS_TIME_MS + height * BLOCK_MS,
            seed: Hash(*seed.finalize().as_bytes()),
        };
        let outcome = apply_block(&mut self.state, &ctx, &txs);
        // Only the state matters here; the node would store these.
        self.state.take_changes();
        let events: Vec<Event> = outcome
            .receipts
            .into_iter()
            .flat_map(|r| r.events)
            .chain(outcome.end_block_events)
            .collect();
        for e in events {
            self.observe(e);
        }
    }

    fn observe(&mut self, e: Event) {
        match e {
            Event::LeaseCreated {
                lease, provider, ..
            } => self.to_start.push((lease, provider)),
            Event::LeaseEnded {
                order,
                billed_ms,
                reason: LeaseEndReason::Completed,
                ..
            } => self.billed.entry(order).or_default().push(billed_ms),
            Event::SpotCheckDrawn {
                order,
                probability_ppm,
                checked,
                ..
            } => {
                if u64::from(probability_ppm) < PPM {
                    self.past_probation.insert(order);
                }
                // Not drawn: the one run is all the compute this order will have (nobody
                // disputes here), so it is counted now, not when its dispute window ends.
                if !checked {
                    self.account(order);
                }
            }
            Event::RevealRequested { order, leases, .. } => {
                self.to_reveal
                    .extend(leases.into_iter().map(|l| (order, l)));
            }
            Event::ProviderSlashed { provider, .. } => match self.kinds.get(&provider) {
                Some(Kind::Honest) | None => self.report.honest_slashed += 1,
                Some(_) => {
                    let runs = self.runs_by.get(&provider).copied().unwrap_or(0);
                    self.caught.entry(provider).or_insert(runs);
                }
            },
            Event::VerificationDecided { order, outcome, .. } => {
                use gpunet_protocol::VerificationOutcome as O;
                if matches!(outcome, O::Inconclusive | O::Incomplete) {
                    self.report.undecided += 1;
                }
                self.account(order);
            }
            _ => {}
        }
    }

    /// Adds an order's billed runs to the compute figures, once.
    fn account(&mut self, order: OrderId) {
        let billed = self.billed.remove(&order).unwrap_or_default();
        let all: u128 = billed.iter().map(|b| u128::from(*b)).sum();
        let first = billed.first().map_or(0, |b| u128::from(*b));
        self.report.all_ms += all;
        self.report.all_check_ms += all - first;
        if self.past_probation.remove(&order) {
            self.report.past_probation_ms += all;
            self.report.past_probation_check_ms += all - first;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_percentile_counts_nevers_and_the_horizon() {
        let s: Vec<Option<u64>> = (1..=100).map(Some).collect();
        assert_eq!(p99(&s, 500), Some(99));
        let mut s2 = s.clone();
        s2[0] = None;
        assert_eq!(p99(&s2, 500), Some(100));
        s2[1] = None;
        assert_eq!(p99(&s2, 500), None);
        assert_eq!(p99(&s, 98), None);
        assert_eq!(p99(&[], 10), None);
    }
}
