//! Orders and the reverse auction: orders open with their deposit in escrow, providers bid
//! during the bid window (at most the order's max price, and at most what their own posted
//! rates give for it), and at the end of each block every order whose window has closed is
//! matched to its lowest feasible bid, each bid's price weighed by its provider's reputation
//! ([`crate::trust::ranked_price`]; ties: lower price, earlier bid, then lower address). Orders nobody
//! could serve expire and their deposit returns. An order reopened for another attempt counts
//! its window and time-to-live from the reopening, waits out its backoff, and refuses the bids
//! of the providers that failed it.

use gpunet_protocol::{Address, Amount, Denom, Event, OrderId, OrderTerms, Rejection, Runtime};

use gpunet_protocol::tx::MAX_ORDER_NAME_BYTES;

use crate::accounts::{check_can_pay, credit, debit};
use crate::leases::create_lease;
use crate::state::{Bid, Order, OrderStatus};
use crate::trust;
use crate::{Provider, State};

pub(crate) fn check_terms(state: &State, terms: &OrderTerms) -> Result<(), Rejection> {
    let bad = Rejection::OrderInvalid;
    if terms.name.is_empty() || terms.name.len() > MAX_ORDER_NAME_BYTES {
        return Err(bad);
    }
    // Its own code: an order for 16 EiB of memory is not malformed, it is unservable.
    terms
        .resources
        .check_bounds()
        .map_err(|_| Rejection::ResourcesOutOfBounds)?;
    terms.resources.validate().map_err(|_| bad)?;
    if terms.regions.len() > gpunet_protocol::resources::MAX_REGIONS_PER_ORDER
        || terms
            .regions
            .iter()
            .any(|r| gpunet_protocol::validate_region("placement.regions", r).is_err())
    {
        return Err(bad);
    }
    if terms.max_duration_secs == 0
        || terms.max_duration_secs > state.params.max_lease_duration_secs
        || terms.max_price_per_hour.is_zero()
    {
        return Err(bad);
    }
    if terms.deposit.is_zero() {
        return Err(Rejection::DepositTooSmall);
    }
    if !terms.recovery.within_bounds() {
        return Err(Rejection::RecoveryOutOfBounds);
    }
    if terms.runtime != Runtime::Docker && !terms.capabilities.is_none() {
        return Err(Rejection::CapabilitiesInvalid);
    }
    terms
        .verification
        .validate()
        .map_err(|_| Rejection::VerificationInvalid)?;
    if !terms.verification.is_verified()
        && terms.verification.compare != gpunet_protocol::Compare::Exact
    {
        return Err(Rejection::VerificationUnsupported);
    }
    Ok(())
}

pub(crate) fn check_create_order(
    state: &State,
    signer: &Address,
    fee: Amount,
    terms: &OrderTerms,
) -> Result<(), Rejection> {
    check_terms(state, terms)?;
    check_can_pay(state, signer, fee, Denom::Usd, terms.deposit)
}

pub(crate) fn create_order(
    state: &mut State,
    tenant: Address,
    terms: OrderTerms,
    events: &mut Vec<Event>,
) {
    let id = OrderId(state.next_order_id);
    state.next_order_id += 1;
    let deposit = terms.deposit;
    debit(state, tenant, Denom::Usd, deposit);
    let order = Order::new(id, tenant, terms, state.height, state.time_ms);
    state.orders.insert(id, order);
    state.open_orders.insert(id);
    state.due_orders.mark(state.height, id);
    events.push(Event::OrderCreated {
        order: id,
        tenant,
        deposit,
    });
}

/// The checks no amount of free capacity changes: runtime, region and capabilities granted.
fn runtime_and_region_ok(provider: &Provider, terms: &OrderTerms) -> bool {
    let region_ok = terms.regions.is_empty() || terms.regions.contains(&provider.profile.region);
    region_ok
        && provider.profile.runtimes.contains(&terms.runtime)
        && provider.profile.capabilities >= terms.capabilities
}

pub(crate) fn check_place_bid(
    state: &State,
    signer: &Address,
    order_id: OrderId,
    price: Amount,
) -> Result<(), Rejection> {
    let order = state
        .orders
        .get(&order_id)
        .ok_or_else(|| missing_order(state, order_id))?;
    // An open order takes bids until it is matched: the bid window is the least time bids
    // gather, not a deadline.
    if order.status != OrderStatus::Open {
        return Err(Rejection::OrderNotOpen);
    }
    let provider = state
        .providers
        .get(signer)
        .ok_or(Rejection::ProviderNotRegistered)?;
    if order.tenant == *signer {
        return Err(Rejection::SelfDealing);
    }
    if provider.leaving {
        return Err(Rejection::ProviderLeaving);
    }
    if trust::jailed(provider, state.height) {
        return Err(Rejection::ProviderJailed);
    }
    if provider.stake < trust::required_stake(&state.params, provider.profile.capacity.gpus.len()) {
        return Err(Rejection::StakeBelowMinimum);
    }
    if !crate::challenges::hardware_ok(&state.params, provider) {
        return Err(Rejection::HardwareUnproven);
    }
    // A run of a verified order is compared with the order's other runs, so none of them may
    // be its own: its exclusion never lapses. Nor may a verifier of the order run it: it has
    // seen the runs' outputs and could hand one back as its own.
    if order.excluded.binary_search(signer).is_ok()
        || order.verifying.runs.iter().any(|r| r.provider == *signer)
        || order.verifying.verifiers.contains(signer)
    {
        return Err(Rejection::ProviderExcluded);
    }
    if price.is_zero() {
        return Err(Rejection::ZeroAmount);
    }
    if price > order.terms.max_price_per_hour {
        return Err(Rejection::BidAboveMaxPrice);
    }
    if !runtime_and_region_ok(provider, &order.terms) {
        return Err(Rejection::ProviderCannotFit);
    }
    let capacity = &provider.profile.capacity;
    let resources = &order.terms.resources;
    let slots = state
        .provider_free(provider)
        .fit(capacity, resources)
        .ok_or(Rejection::ProviderCannotFit)?;
    if order.terms.deposit > state.params.probation_max_deposit
        && trust::on_probation(&state.params, provider, &trust::class_of(provider, &slots))
    {
        return Err(Rejection::ProbationJobTooLarge);
    }
    // Posted rates bind: a provider bids at most what they give for this order (an overflow
    // gives no price, and so no bid).
    let posted = provider
        .profile
        .rates
        .price_per_hour(resources, capacity, &slots);
    if posted.is_none_or(|posted| price > posted) {
        return Err(Rejection::BidAbovePostedPrice);
    }
    match order.bids.iter().find(|b| b.provider == *signer) {
        Some(existing) if price >= existing.price_per_hour => Err(Rejection::BidNotLower),
        Some(_) => Ok(()),
        None if order.bids.len() >= state.params.max_bids_per_order as usize => {
            Err(Rejection::TooManyBids)
        }
        None => Ok(()),
    }
}

pub(crate) fn place_bid(
    state: &mut State,
    provider: Address,
    order_id: OrderId,
    price: Amount,
    events: &mut Vec<Event>,
) {
    let height = state.height;
    let Some(order) = state.orders.get_mut(&order_id) else {
        return;
    };
    order.bids.retain(|b| b.provider != provider);
    let seq = order.take_bid_seq();
    order.bids.push(Bid {
        provider,
        price_per_hour: price,
        height,
        seq,
    });
    state.due_orders.mark(height, order_id);
    events.push(Event::BidPlaced {
        order: order_id,
        provider,
        price_per_hour: price,
    });
}

/// Why an order the state lacks is refused: it ended for good (and left for history), or never
/// was. An ended order's owner is not known here, so anyone is told it is no longer open.
pub(crate) fn missing_order(state: &State, id: OrderId) -> Rejection {
    if state.order_ended(id) {
        Rejection::OrderNotOpen
    } else {
        Rejection::OrderNotFound
    }
}

/// The order `order_id`, if `signer` is its tenant: for the tenant's own actions on it.
pub(crate) fn owned_order<'a>(
    state: &'a State,
    signer: &Address,
    order_id: OrderId,
) -> Result<&'a Order, Rejection> {
    let order = state
        .orders
        .get(&order_id)
        .ok_or_else(|| missing_order(state, order_id))?;
    if order.tenant != *signer {
        return Err(Rejection::NotOrderOwner);
    }
    Ok(order)
}

pub(crate) fn check_cancel_order(
    state: &State,
    signer: &Address,
    order_id: OrderId,
) -> Result<(), Rejection> {
    let order = owned_order(state, signer, order_id)?;
    match order.status {
        OrderStatus::Open | OrderStatus::Leased { .. } => Ok(()),
        _ => Err(Rejection::OrderNotOpen),
    }
}

pub(crate) fn cancel_order(state: &mut State, order_id: OrderId, events: &mut Vec<Event>) {
    let Some(order) = state.orders.get(&order_id) else {
        return;
    };
    match order.status {
        OrderStatus::Open => {
            let refund = close_unmatched(state, order_id, OrderStatus::Cancelled);
            events.push(Event::OrderCancelled {
                order: order_id,
                refund,
            });
            crate::checks::abandon(state, order_id, events);
        }
        OrderStatus::Leased { lease } => {
            crate::leases::settle_and_end(
                state,
                lease,
                gpunet_protocol::LeaseEndReason::CancelledByTenant,
                events,
            );
        }
        _ => {}
    }
}

/// Ends an order that never got a lease, returning its whole escrow. Returns the refund.
///
/// A verified order reopened for a check, a referee or a replica that ends here ends its
/// comparison `incomplete` (the caller emits the order's own event first).
fn close_unmatched(state: &mut State, order_id: OrderId, status: OrderStatus) -> Amount {
    let Some(order) = state.orders.get_mut(&order_id) else {
        return Amount::ZERO;
    };
    let refund = order.escrow;
    let tenant = order.tenant;
    order.escrow = Amount::ZERO;
    order.status = status;
    order.bids.clear();
    state.open_orders.remove(&order_id);
    credit(state, tenant, Denom::Usd, refund);
    refund
}

/// End of block: match every open order whose bid window has closed, then expire those past
/// their time-to-live. Orders are visited in id order, so earlier orders get first pick.
/// An open order that has gone `exclusion_lapse_blocks` since it (re)opened without a bid,
/// while it excludes the providers that failed it: nobody else wants it, so they may bid again
/// rather than the job waiting out its TTL on a network with no one else to run it.
fn lapse_exclusions(state: &mut State, id: OrderId, events: &mut Vec<Event>) {
    let (height, lapse) = (state.height, state.params.exclusion_lapse_blocks);
    let Some(order) = state.orders.get_mut(&id) else {
        return;
    };
    let due = lapse > 0 && height >= order.open_since_height.saturating_add(lapse);
    if due && order.bids.is_empty() && !order.excluded.is_empty() {
        let providers = std::mem::take(&mut order.excluded);
        events.push(Event::OrderExclusionLapsed {
            order: id,
            providers,
        });
    }
}

/// The first height after `height` at which the open `order` may need end-of-block work: its bid
/// window closing, its exclusions lapsing, its time-to-live running out; or the next block when
/// it already waits on something only time brings (its backoff with bids in hand, a lapse held
/// back by bids).
fn next_due(state: &State, order: &Order, height: u64) -> u64 {
    let p = &state.params;
    let next = height.saturating_add(1);
    let window_at = order.open_since_height.saturating_add(p.bid_window_blocks);
    let lapse_at = (p.exclusion_lapse_blocks > 0 && !order.excluded.is_empty()).then(|| {
        order
            .open_since_height
            .saturating_add(p.exclusion_lapse_blocks)
    });
    let expiry_at = order.open_since_height.saturating_add(p.order_ttl_blocks);
    if (window_at <= height && !order.bids.is_empty()) || lapse_at.is_some_and(|h| h <= height) {
        return next;
    }
    [Some(window_at), lapse_at, Some(expiry_at)]
        .into_iter()
        .flatten()
        .filter(|h| *h > height)
        .min()
        .unwrap_or(next)
}

/// End-of-block matching and expiry, for the open orders that are due (see
/// [`crate::state::DueOrders`]), in order id order: an order not due would be left as it is.
pub(crate) fn match_and_expire(state: &mut State, events: &mut Vec<Event>) {
    let (height, now) = (state.height, state.time_ms);
    let window = state.params.bid_window_blocks;
    let ttl = state.params.order_ttl_blocks;
    let due = state.due_orders.take_due(height);
    for id in due {
        if !state.open_orders.contains(&id) {
            continue;
        }
        let Some(order) = state.orders.get(&id) else {
            continue;
        };
        let window_closed =
            height >= order.open_since_height.saturating_add(window) && now >= order.not_before_ms;
        if window_closed && !order.bids.is_empty() {
            // Ranked by price weighed by reputation (`trust::ranked_price`); the winner is
            // paid its own bid.
            let (height, half_life) = (state.height, state.params.reputation_half_life_blocks);
            let rank = |bid: &Bid| {
                let score = state
                    .providers
                    .get(&bid.provider)
                    .map_or(0, |p| p.reputation.score_at(height, half_life));
                trust::ranked_price(bid.price_per_hour, score)
            };
            let mut bids: Vec<(u128, Bid)> =
                order.bids.iter().map(|b| (rank(b), b.clone())).collect();
            bids.sort_by(|(ra, a), (rb, b)| {
                (ra, a.price_per_hour, a.seq, a.provider).cmp(&(
                    rb,
                    b.price_per_hour,
                    b.seq,
                    b.provider,
                ))
            });
            let winner = bids.iter().map(|(_, b)| b).find_map(|bid| {
                let p = state.providers.get(&bid.provider)?;
                // A bid placed before its provider was slashed (jailed, or left under the stake
                // its GPUs need) cannot win.
                let staked =
                    p.stake >= trust::required_stake(&state.params, p.profile.capacity.gpus.len());
                if p.leaving
                    || trust::jailed(p, height)
                    || !staked
                    || !crate::challenges::hardware_ok(&state.params, p)
                    || !runtime_and_region_ok(p, &order.terms)
                {
                    return None;
                }
                let slots = state
                    .provider_free(p)
                    .fit(&p.profile.capacity, &order.terms.resources)?;
                Some((bid.clone(), slots))
            });
            match winner {
                Some((bid, slots)) => {
                    create_lease(state, id, bid.provider, bid.price_per_hour, slots, events);
                    continue;
                }
                None => {
                    // Every bidder has since filled up or left: gather fresh bids.
                    if let Some(o) = state.orders.get_mut(&id) {
                        o.bids.clear();
                    }
                }
            }
        }
        lapse_exclusions(state, id, events);
        let expired = state
            .orders
            .get(&id)
            .is_some_and(|o| height >= o.open_since_height.saturating_add(ttl));
        if expired {
            let refund = close_unmatched(state, id, OrderStatus::Expired);
            events.push(Event::OrderExpired { order: id, refund });
            crate::checks::abandon(state, id, events);
        } else if let Some(o) = state.orders.get(&id)
            && o.status == OrderStatus::Open
        {
            let at = next_due(state, o, height);
            state.due_orders.mark(at, id);
        }
    }
}
