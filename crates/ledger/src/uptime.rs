//! A provider's uptime, in integers: the share of the time it held leases that it was there.
//!
//! The chain sees a provider only through its transactions, and an agent sends heartbeats only
//! while it holds leases (an idle one has nothing to prove and pays no fees for nothing), so
//! uptime is measured where it matters to a tenant: under lease. When a lease ends, its
//! provider's record adds the blocks it was held (creation to end) and, if it was lost by
//! silence (`provider_lost` with no proof of life for longer than `liveness_timeout_blocks`),
//! the blocks after its last proof as *lost*, and one outage ([`record_end`], O(1)). A lease
//! that ends any other way, failed or not, was attended to the end: its result or release is
//! its last proof; so was one whose provider itself reported the workload lost within the
//! timeout (a failure on its record, not an absence).
//!
//! `uptime = 1 − lost / leased` over its ended leases, in millionths ([`uptime_ppm`]); `None`
//! until one has ended. Whether it is there *now* is [`silent_blocks`]: how long its live
//! leases have gone without a heartbeat. Nothing decides a market outcome on uptime (lost
//! leases already weigh on reputation, [`crate::trust`]): it is what people are shown.

use gpunet_protocol::{LeaseEndReason, LeaseId};

use crate::State;
use crate::state::Provider;
use crate::trust::PPM;

/// Adds lease `id`, ending now for `reason`, to its provider's record. Called once, as the
/// lease ends (it must still be live).
pub(crate) fn record_end(state: &mut State, id: LeaseId, reason: LeaseEndReason) {
    let height = state.height;
    let Some(lease) = state.leases.get(&id) else {
        return;
    };
    let held = height.saturating_sub(lease.created_height);
    // Silent past the liveness timeout: the rule that ends such a lease, or the provider's own
    // late report of the loss. A loss it reports within the timeout was reported by a provider
    // that was there.
    let silence = height.saturating_sub(lease.last_proof_height);
    let lost = if reason == LeaseEndReason::ProviderLost
        && silence > state.params.liveness_timeout_blocks
    {
        silence.min(held)
    } else {
        0
    };
    if let Some(p) = state.providers.get_mut(&lease.provider) {
        let u = &mut p.uptime;
        u.leased_blocks = u.leased_blocks.saturating_add(held);
        u.lost_blocks = u.lost_blocks.saturating_add(lost);
        if lost > 0 {
            u.outages = u.outages.saturating_add(1);
        }
    }
}

/// The share of the blocks `p`'s ended leases were held that it was there, in millionths;
/// `None` before any of its leases ended (or if all ended in the block they were made).
pub fn uptime_ppm(p: &Provider) -> Option<u64> {
    let u = &p.uptime;
    if u.leased_blocks == 0 {
        return None;
    }
    let up = u.leased_blocks - u.lost_blocks.min(u.leased_blocks);
    let ppm = u128::from(up) * u128::from(PPM) / u128::from(u.leased_blocks);
    Some(u64::try_from(ppm).unwrap_or(PPM))
}

/// Blocks `p` has been silent at the state's height while holding live leases: since the
/// latest proof of life among them (a heartbeat, a start, the lease's creation), and 0 when it
/// holds none or that proof is within one heartbeat interval. Past `liveness_timeout_blocks`
/// the leases are being lost. Reads only `p`'s own live leases.
pub fn silent_blocks(state: &State, p: &Provider) -> u64 {
    let latest = p
        .live_leases
        .iter()
        .filter_map(|id| state.leases.get(id))
        .map(|l| l.last_proof_height)
        .max();
    let Some(latest) = latest else {
        return 0;
    };
    let gap = state
        .height
        .saturating_sub(latest.max(p.last_heartbeat_height));
    if gap > state.params.heartbeat_interval_blocks {
        gap
    } else {
        0
    }
}
