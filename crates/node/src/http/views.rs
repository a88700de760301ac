//! Conversions from ledger state to the API's views. Pure functions of the state (and, for
//! ended orders and leases, of the node's history).

use gpunet_api::node::{
    BandView, BidView, ChallengeView, ClassRuns, ExplainView, HardwareView, LeaseState, LeaseView,
    OrderState, OrderView, ParamsView, ProviderView, RunView, UptimeView, VerificationView,
};
use gpunet_ledger::{Lease, LeaseStatus, Order, OrderStatus, Provider, State, VerifyStage};
use gpunet_protocol::{OrderId, OrderTerms};

use crate::history::{HistoryError, Lookup};

pub(crate) fn params_view(state: &State) -> ParamsView {
    let p = &state.params;
    ParamsView {
        height: state.height,
        min_tx_fee: p.min_tx_fee,
        min_provider_stake: p.min_provider_stake,
        protocol_fee_bps: p.protocol_fee_bps,
        bid_window_blocks: p.bid_window_blocks,
        order_ttl_blocks: p.order_ttl_blocks,
        start_timeout_blocks: p.start_timeout_blocks,
        max_bids_per_order: p.max_bids_per_order,
        max_lease_duration_secs: p.max_lease_duration_secs,
        heartbeat_interval_blocks: p.heartbeat_interval_blocks,
        liveness_timeout_blocks: p.liveness_timeout_blocks,
        escrow_warning_secs: p.escrow_warning_secs,
        pause_grace_blocks: p.pause_grace_blocks,
        exclusion_lapse_blocks: p.exclusion_lapse_blocks,
        stake_per_gpu: p.stake_per_gpu,
        slash_bps: p.slash_bps,
        slash_to_tenant_bps: p.slash_to_tenant_bps,
        jail_blocks: p.jail_blocks,
        probation_runs: p.probation_runs,
        probation_max_deposit: p.probation_max_deposit,
        spot_check_min_ppm: p.spot_check_min_ppm,
        spot_check_record_ppm: p.spot_check_record_ppm,
        gpn_reference_price: p.gpn_reference_price,
        reveal_window_blocks: p.reveal_window_blocks,
        reputation_half_life_blocks: p.reputation_half_life_blocks,
        dispute_window_blocks: p.dispute_window_blocks,
        verdict_window_blocks: p.verdict_window_blocks,
        verdict_fee: p.verdict_fee,
        challenge_bands: p
            .challenge_bands
            .iter()
            .map(|b| BandView {
                class: b.class.clone(),
                ops_per_ms: b.ops_per_ms,
            })
            .collect(),
        challenge_target_ms: p.challenge_target_ms,
        challenge_slack_bps: p.challenge_slack_bps,
        challenge_allowance_ms: p.challenge_allowance_ms,
        challenge_samples: p.challenge_samples,
        challenge_open_blocks: p.challenge_open_blocks,
        challenge_interval_blocks: p.challenge_interval_blocks,
        unbonding_blocks: p.unbonding_blocks,
    }
}

pub(crate) fn provider_view(state: &State, p: &Provider) -> ProviderView {
    let free = state.provider_free(p);
    ProviderView {
        address: p.address,
        profile: p.profile.clone(),
        stake: p.stake,
        registered_height: p.registered_height,
        live_leases: p.live_leases.iter().copied().collect(),
        free_cpu_millis: free.cpu_millis,
        free_memory_mib: free.memory_mib,
        free_gpus: u32::try_from(free.gpu_slots.len()).unwrap_or(u32::MAX),
        leases_completed: p.leases_completed,
        leases_failed: p.leases_failed,
        last_heartbeat_height: p.last_heartbeat_height,
        leaving: p.leaving,
        reputation_ppm: p
            .reputation
            .score_at(state.height, state.params.reputation_half_life_blocks),
        jailed_until_height: p.jailed_until_height,
        slashed: p.slashed,
        verified_runs: p
            .verified_runs
            .iter()
            .map(|(class, runs)| ClassRuns {
                class: class.clone(),
                runs: *runs,
                on_probation: gpunet_ledger::trust::on_probation(&state.params, p, class),
            })
            .collect(),
        hardware: hardware_view(state, p),
        judging: p.judging.clone(),
        uptime: UptimeView {
            uptime_ppm: gpunet_ledger::uptime::uptime_ppm(p),
            leased_blocks: p.uptime.leased_blocks,
            lost_blocks: p.uptime.lost_blocks,
            outages: p.uptime.outages,
            silent_blocks: gpunet_ledger::uptime::silent_blocks(state, p),
        },
    }
}

fn hardware_view(state: &State, p: &Provider) -> HardwareView {
    use gpunet_ledger::challenges;
    let h = &p.hardware;
    HardwareView {
        challenged: challenges::claim(&state.params, p).is_some(),
        proven: challenges::hardware_ok(&state.params, p),
        passed: h.passed,
        failed: h.failed,
        next_at_height: h.next_at_height,
        challenge: h.challenge.as_ref().map(|c| ChallengeView {
            id: c.id,
            seed: c.seed,
            n: c.n,
            issued_height: c.issued_height,
            deadline_ms: c.deadline_ms,
            root: c.root,
            leaves_to_open: challenges::leaves_due(&state.params, c),
            opened: c.opened.clone(),
            open_until_height: c.draw.map(|_| c.open_until_height),
        }),
    }
}

/// The comparison of a verified order's runs, if it has verification.
fn verification_view(o: &Order) -> Option<VerificationView> {
    if !o.terms.verification.is_verified() {
        return None;
    }
    let f = &o.verifying;
    let (stage, until_height, verifier) = match f.stage {
        VerifyStage::Running => ("running", None, None),
        VerifyStage::Drawing { at_height } => ("drawing", Some(at_height), None),
        VerifyStage::Revealing { deadline_height } => ("revealing", Some(deadline_height), None),
        VerifyStage::Disputable { until_height } => ("disputable", Some(until_height), None),
        VerifyStage::Judging {
            verifier,
            deadline_height,
        } => ("judging", Some(deadline_height), Some(verifier)),
    };
    Some(VerificationView {
        stage: stage.to_owned(),
        needed: f.needed,
        until_height,
        verifier,
        runs: f
            .runs
            .iter()
            .map(|r| RunView {
                lease: r.lease,
                provider: r.provider,
                tag: r.tag,
                reveal_due: r.reveal_due,
                revealed: r.revealed,
                wrong: r.wrong,
            })
            .collect(),
        outcome: f.outcome.map(|o| o.as_str().to_owned()),
    })
}

pub(crate) fn lease_view(state: &State, l: &Lease) -> LeaseView {
    let (lease_state, end_reason) = match l.status {
        LeaseStatus::Pending => (LeaseState::Pending, None),
        LeaseStatus::Running => (LeaseState::Running, None),
        LeaseStatus::Paused { .. } => (LeaseState::Paused, None),
        LeaseStatus::Ended { reason } => (LeaseState::Ended, Some(reason)),
    };
    LeaseView {
        id: l.id,
        order: l.order,
        tenant: l.tenant,
        provider: l.provider,
        // A provider that deregistered after the lease ended has no endpoint any more.
        provider_endpoint: state
            .providers
            .get(&l.provider)
            .map(|p| p.profile.endpoint.clone())
            .unwrap_or_default(),
        endpoints: l.endpoints.clone(),
        price_per_hour: l.price_per_hour,
        resources: l.resources.clone(),
        gpu_slots: l.gpu_slots.clone(),
        attempt: l.attempt,
        state: lease_state,
        end_reason,
        created_height: l.created_height,
        created_ms: l.created_ms,
        started_ms: l.started_ms,
        ended_ms: l.ended_ms,
        last_proof_ms: l.last_proof_ms,
        last_proof_height: l.last_proof_height,
        paused_since_height: match l.status {
            LeaseStatus::Paused { since_height } => Some(since_height),
            _ => None,
        },
        billed_ms: l.billed_ms,
        paid: l.paid,
        protocol_fee: l.fee,
        provider_earned: l.paid.saturating_sub(l.fee),
        refund: l.refund,
        result: l.result.clone(),
    }
}

pub(crate) fn order_state(status: OrderStatus) -> OrderState {
    match status {
        OrderStatus::Open => OrderState::Open,
        OrderStatus::Leased { .. } => OrderState::Leased,
        OrderStatus::Expired => OrderState::Expired,
        OrderStatus::Cancelled => OrderState::Cancelled,
        OrderStatus::Closed { .. } => OrderState::Closed,
        OrderStatus::Verifying => OrderState::Verifying,
    }
}

/// An order with its current lease and every attempt, live or from history.
pub(crate) fn order_view(lookup: Lookup<'_>, o: &Order) -> Result<OrderView, HistoryError> {
    let state = lookup.state;
    let lease = match o.status {
        OrderStatus::Leased { lease } | OrderStatus::Closed { lease } => lookup.lease(lease)?,
        _ => None,
    };
    let mut attempts = Vec::with_capacity(o.attempts.len());
    for id in &o.attempts {
        if let Some(l) = lookup.lease(*id)? {
            attempts.push(lease_view(state, &l));
        }
    }
    Ok(OrderView {
        id: o.id,
        tenant: o.tenant,
        terms: o.terms.clone(),
        state: order_state(o.status),
        created_height: o.created_height,
        created_ms: o.created_ms,
        escrow: o.escrow,
        bids: o
            .bids
            .iter()
            .map(|b| BidView {
                provider: b.provider,
                price_per_hour: b.price_per_hour,
                height: b.height,
            })
            .collect(),
        lease: lease.map(|l| lease_view(state, &l)),
        attempts,
        excluded: o.excluded.clone(),
        open_since_height: o.open_since_height,
        not_before_ms: o.not_before_ms,
        verification: verification_view(o),
    })
}

/// What the market would do with `terms` now (the ledger's explainer), with the deposit that
/// pays its max price for its whole duration.
pub(crate) fn explain_view(
    state: &State,
    order: Option<OrderId>,
    terms: &OrderTerms,
) -> ExplainView {
    ExplainView {
        height: state.height,
        order,
        // Terms past `check_terms` hold a duration of at most a year, so this fits; saturate
        // rather than fail a read if the bounds ever move.
        min_deposit: gpunet_protocol::min_deposit(
            terms.max_price_per_hour,
            terms.max_duration_secs,
        )
        .unwrap_or(gpunet_protocol::Amount::MAX),
        explanation: gpunet_ledger::explain::explain(state, terms),
    }
}
