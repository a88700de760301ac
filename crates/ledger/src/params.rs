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
}

fn default_exclusion_lapse_blocks() -> u64 {
    Params::default().exclusion_lapse_blocks
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
        }
    }
}
