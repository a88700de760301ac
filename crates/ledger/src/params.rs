//! Network parameters, fixed at genesis.

use borsh::{BorshDeserialize, BorshSerialize};
use gpunet_protocol::Amount;
use serde::{Deserialize, Serialize};

/// Tunable rules of the market. Changing one changes consensus, so they live in state.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Params {
    /// Lowest fee a transaction may pay (gpn, burned).
    pub min_tx_fee: Amount,
    /// Lowest stake a provider may register with (gpn).
    pub min_provider_stake: Amount,
    /// Protocol fee on every payment to a provider, in basis points (100 = 1%).
    pub protocol_fee_bps: u32,
    /// Blocks after an order's creation before it can be matched; bids gather meanwhile.
    pub bid_window_blocks: u64,
    /// Blocks an order waits for a match before it expires and its deposit returns.
    pub order_ttl_blocks: u64,
    /// Blocks a provider has, after a lease is created, to start the workload.
    pub start_timeout_blocks: u64,
    /// Most bids one order keeps.
    pub max_bids_per_order: u32,
    /// Longest `max_duration` an order may ask for, in seconds.
    pub max_lease_duration_secs: u64,
    /// How often a provider should send a heartbeat, in blocks (agents follow this).
    pub heartbeat_interval_blocks: u64,
    /// Blocks a running lease may go without a proof of life before it ends `provider_lost`.
    pub liveness_timeout_blocks: u64,
    /// An `escrow_low` event goes out when the escrow pays for less than this much more
    /// running time, in seconds.
    pub escrow_warning_secs: u64,
    /// Blocks a lease whose escrow ran out stays paused, waiting for a top-up, before it ends
    /// `insufficient_funds`. 0 ends it at once.
    pub pause_grace_blocks: u64,
    /// Blocks a reopened order may go without any bid before the providers that failed its
    /// earlier attempts may bid again (`OrderExclusionLapsed`), so a small network does not
    /// strand a job every provider has failed once. 0: exclusions never lapse.
    #[serde(default = "default_exclusion_lapse_blocks")]
    pub exclusion_lapse_blocks: u64,
    /// Stake a provider bonds for each GPU it lists (gpn), on top of nothing: its stake must be
    /// at least `max(min_provider_stake, stake_per_gpu × GPUs)` to register, list more GPUs or
    /// bid.
    #[serde(default = "trust::stake_per_gpu")]
    pub stake_per_gpu: Amount,
    /// Share of its stake a provider loses for each wrong or unrevealed run of a verified
    /// order, in basis points.
    #[serde(default = "trust::slash_bps")]
    pub slash_bps: u32,
    /// Share of a slash that goes to the tenant of the order, in basis points; the rest is
    /// burned.
    #[serde(default = "trust::slash_to_tenant_bps")]
    pub slash_to_tenant_bps: u32,
    /// Blocks a slashed provider takes no new leases for.
    #[serde(default = "trust::jail_blocks")]
    pub jail_blocks: u64,
    /// Verified runs a provider needs in a GPU class (a GPU family, or `cpu`) before it leaves
    /// probation there. On probation it takes only small orders (`probation_max_deposit`) and
    /// every spot-checked run of it is checked. 0: no probation.
    #[serde(default = "trust::probation_runs")]
    pub probation_runs: u32,
    /// Largest deposit (usd) of an order a provider on probation may take.
    #[serde(default = "trust::probation_max_deposit")]
    pub probation_max_deposit: Amount,
    /// Least probability of a spot check, in millionths: that of a provider past probation with
    /// a perfect record and little at stake in the run.
    #[serde(default = "trust::spot_check_min_ppm")]
    pub spot_check_min_ppm: u32,
    /// Probability added, in millionths, as the provider's reputation falls from perfect to
    /// zero.
    #[serde(default = "trust::spot_check_record_ppm")]
    pub spot_check_record_ppm: u32,
    /// The network's reference price of 1 gpn in usd, which converts a slash into the usd a run
    /// pays, so that a run paying more than the expected slash is checked more often. A genesis
    /// parameter until a price oracle exists.
    #[serde(default = "trust::gpn_reference_price")]
    pub gpn_reference_price: Amount,
    /// Blocks the providers of a verified order's runs have to reveal their digests once asked.
    #[serde(default = "trust::reveal_window_blocks")]
    pub reveal_window_blocks: u64,
    /// Blocks over which a provider's reputation evidence loses half its weight.
    #[serde(default = "trust::reputation_half_life_blocks")]
    pub reputation_half_life_blocks: u64,
    /// Blocks a tenant has, after a spot-checked job's check was not drawn, to dispute its
    /// result (a rerun elsewhere, then a referee if they disagree; the loser pays). The escrow
    /// stays with the order meanwhile. 0: no disputes, the order closes at once.
    #[serde(default = "trust::dispute_window_blocks")]
    pub dispute_window_blocks: u64,
    /// Blocks the verifier of a `compare: tensors` order has to post its verdict once asked:
    /// time for the tenant to fetch the runs' outputs and send them, and for the verifier to
    /// compare them.
    #[serde(default = "trust::verdict_window_blocks")]
    pub verdict_window_blocks: u64,
    /// What a verifier is paid for a verdict (usd), from the order's escrow (what is left of
    /// it, when less).
    #[serde(default = "trust::verdict_fee")]
    pub verdict_fee: Amount,
    /// Hardware challenges (ADR 0009): the throughput of one unit of each hardware class — a
    /// GPU of a family, or a CPU core (`cpu`) — that sizes a listing's challenge and sets its
    /// deadline. A listing is challenged on its GPUs whose family has a band, or, with none, on
    /// its CPU cores if `cpu` has one; a listing no band covers is not challenged (shown
    /// `challenged: false`). Empty by default: a network of strangers names the bands measured
    /// on real hardware (docs/benchmarks.md); a local network runs several providers on one
    /// machine, which is exactly what a challenge catches.
    #[serde(default)]
    pub challenge_bands: Vec<gpunet_protocol::ThroughputBand>,
    /// Device time a challenge asks of the claimed hardware at its band, at most (ms; at
    /// most 60 000). The matrices are also capped by the claimed memory.
    #[serde(default = "challenges::target_ms")]
    pub challenge_target_ms: u64,
    /// How much slower than its band a listing may be and still commit in time, in basis points
    /// of the band's time (15 000: 1.5×). Under 20 000, so one unit behind two listings
    /// (each twice as slow) misses.
    #[serde(default = "challenges::slack_bps")]
    pub challenge_slack_bps: u32,
    /// Added to every deadline for building the commitment and getting it into a block (ms).
    #[serde(default = "challenges::allowance_ms")]
    pub challenge_allowance_ms: u64,
    /// Entries of a committed product the ledger samples and checks: a product with a fraction
    /// f wrong passes with probability at most (1 − f)^k (2⁻⁶⁴ for half wrong at 64).
    #[serde(default = "challenges::samples")]
    pub challenge_samples: u32,
    /// Blocks a provider has to open the sampled entries once they are drawn.
    #[serde(default = "challenges::open_blocks")]
    pub challenge_open_blocks: u64,
    /// A provider that passed is challenged again at a height drawn uniformly from the next
    /// this many blocks (so at least this often, never predictably), while idle.
    #[serde(default = "challenges::interval_blocks")]
    pub challenge_interval_blocks: u64,
    /// Blocks stake takes to return once a provider unbonds it (`UnbondStake`) or leaves;
    /// slashable meanwhile, so a provider cannot take its stake out from under a verdict still
    /// to come. 0: returned at the end of the same block.
    #[serde(default = "trust::unbonding_blocks")]
    pub unbonding_blocks: u64,
}

fn default_exclusion_lapse_blocks() -> u64 {
    Params::default().exclusion_lapse_blocks
}

/// Defaults of the trust parameters (ADR 0010), for genesis files written before them.
mod trust {
    use gpunet_protocol::Amount;

    pub(super) fn stake_per_gpu() -> Amount {
        Amount::from_micros(100_000_000)
    }
    pub(super) fn slash_bps() -> u32 {
        1_000
    }
    pub(super) fn slash_to_tenant_bps() -> u32 {
        5_000
    }
    pub(super) fn jail_blocks() -> u64 {
        // An hour at 500 ms blocks.
        7_200
    }
    pub(super) fn probation_runs() -> u32 {
        // With every run checked, a provider cheating on 10% of its runs passes 20 of them
        // unseen with probability 0.9^20 = 12%; `gpunet bench verification` measures the rest.
        20
    }
    pub(super) fn probation_max_deposit() -> Amount {
        Amount::from_micros(50_000_000)
    }
    pub(super) fn spot_check_min_ppm() -> u32 {
        40_000
    }
    pub(super) fn spot_check_record_ppm() -> u32 {
        200_000
    }
    pub(super) fn gpn_reference_price() -> Amount {
        Amount::from_micros(1_000_000)
    }
    pub(super) fn reveal_window_blocks() -> u64 {
        // A minute at 500 ms blocks.
        120
    }
    pub(super) fn reputation_half_life_blocks() -> u64 {
        // A week at 500 ms blocks.
        1_209_600
    }
    pub(super) fn unbonding_blocks() -> u64 {
        // A day at 500 ms blocks: past every reveal, dispute and challenge window.
        172_800
    }
    pub(super) fn dispute_window_blocks() -> u64 {
        // Five minutes at 500 ms blocks: time to fetch the outputs and look.
        600
    }
    pub(super) fn verdict_window_blocks() -> u64 {
        // Five minutes at 500 ms blocks: the tenant fetches and sends the outputs.
        600
    }
    pub(super) fn verdict_fee() -> Amount {
        // Two cents: comparing a few tensors costs seconds of CPU.
        Amount::from_micros(20_000)
    }
}

/// Defaults of the hardware-challenge parameters (ADR 0009).
mod challenges {
    pub(super) fn target_ms() -> u64 {
        20_000
    }
    pub(super) fn slack_bps() -> u32 {
        15_000
    }
    pub(super) fn allowance_ms() -> u64 {
        10_000
    }
    pub(super) fn samples() -> u32 {
        64
    }
    pub(super) fn open_blocks() -> u64 {
        // A minute at 500 ms blocks.
        120
    }
    pub(super) fn interval_blocks() -> u64 {
        // A day at 500 ms blocks: at most 20 s of device time a day, under 0.03% duty.
        172_800
    }
}

impl Params {
    /// Checks the parameters make sense together; genesis refuses them otherwise.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.protocol_fee_bps > 10_000 {
            return Err("protocol_fee_bps must be at most 10000 (100%)");
        }
        if self.bid_window_blocks == 0 {
            return Err("bid_window_blocks must be at least 1");
        }
        if self.order_ttl_blocks < self.bid_window_blocks {
            return Err("order_ttl_blocks must be at least bid_window_blocks");
        }
        if self.start_timeout_blocks == 0 {
            return Err("start_timeout_blocks must be at least 1");
        }
        if self.max_bids_per_order == 0 {
            return Err("max_bids_per_order must be at least 1");
        }
        if self.heartbeat_interval_blocks == 0 {
            return Err("heartbeat_interval_blocks must be at least 1");
        }
        if self.liveness_timeout_blocks <= self.heartbeat_interval_blocks {
            return Err("liveness_timeout_blocks must exceed heartbeat_interval_blocks");
        }
        if self.slash_bps > 10_000 || self.slash_to_tenant_bps > 10_000 {
            return Err("slash_bps and slash_to_tenant_bps must be at most 10000 (100%)");
        }
        if self.spot_check_min_ppm > 1_000_000
            || self.spot_check_min_ppm as u64 + self.spot_check_record_ppm as u64 > 1_000_000
        {
            return Err("spot_check_min_ppm + spot_check_record_ppm must be at most 1000000");
        }
        if self.reveal_window_blocks == 0 || self.verdict_window_blocks == 0 {
            return Err("reveal_window_blocks and verdict_window_blocks must be at least 1");
        }
        if self.reputation_half_life_blocks == 0 {
            return Err("reputation_half_life_blocks must be at least 1");
        }
        if self.challenge_target_ms == 0 || self.challenge_target_ms > 60_000 {
            return Err("challenge_target_ms must be from 1 to 60000 (a minute of device time)");
        }
        if !(10_000..20_000).contains(&self.challenge_slack_bps) {
            return Err(
                "challenge_slack_bps must be from 10000 (none) to 19999: at 20000 one unit behind two listings would meet both deadlines",
            );
        }
        if self.challenge_samples == 0 || self.challenge_samples > 256 {
            return Err("challenge_samples must be from 1 to 256");
        }
        if self.challenge_open_blocks == 0 || self.challenge_interval_blocks == 0 {
            return Err("challenge_open_blocks and challenge_interval_blocks must be at least 1");
        }
        let mut classes = std::collections::BTreeSet::new();
        for band in &self.challenge_bands {
            if band.ops_per_ms == 0 || band.class.is_empty() || !classes.insert(&band.class) {
                return Err(
                    "challenge_bands: each band names a class (a GPU family or cpu) once, with ops_per_ms at least 1",
                );
            }
        }
        Ok(())
    }
}

impl Default for Params {
    fn default() -> Self {
        Params {
            min_tx_fee: Amount::from_micros(1_000),
            min_provider_stake: Amount::from_micros(100_000_000),
            protocol_fee_bps: 100,
            bid_window_blocks: 2,
            order_ttl_blocks: 600,
            start_timeout_blocks: 120,
            max_bids_per_order: 64,
            max_lease_duration_secs: 30 * 24 * 3600,
            // With 500 ms blocks: a heartbeat every 5 s, lost after 15 s of silence (three
            // missed heartbeats), warned 5 minutes before the escrow runs out, paused for 10.
            heartbeat_interval_blocks: 10,
            liveness_timeout_blocks: 30,
            escrow_warning_secs: 300,
            pause_grace_blocks: 1_200,
            // 30 s with 500 ms blocks: long enough for every other provider to have bid.
            exclusion_lapse_blocks: 60,
            stake_per_gpu: trust::stake_per_gpu(),
            slash_bps: trust::slash_bps(),
            slash_to_tenant_bps: trust::slash_to_tenant_bps(),
            jail_blocks: trust::jail_blocks(),
            probation_runs: trust::probation_runs(),
            probation_max_deposit: trust::probation_max_deposit(),
            spot_check_min_ppm: trust::spot_check_min_ppm(),
            spot_check_record_ppm: trust::spot_check_record_ppm(),
            gpn_reference_price: trust::gpn_reference_price(),
            reveal_window_blocks: trust::reveal_window_blocks(),
            reputation_half_life_blocks: trust::reputation_half_life_blocks(),
            dispute_window_blocks: trust::dispute_window_blocks(),
            verdict_window_blocks: trust::verdict_window_blocks(),
            verdict_fee: trust::verdict_fee(),
            challenge_bands: Vec::new(),
            challenge_target_ms: challenges::target_ms(),
            challenge_slack_bps: challenges::slack_bps(),
            challenge_allowance_ms: challenges::allowance_ms(),
            challenge_samples: challenges::samples(),
            challenge_open_blocks: challenges::open_blocks(),
            challenge_interval_blocks: challenges::interval_blocks(),
            unbonding_blocks: trust::unbonding_blocks(),
        }
    }
}
