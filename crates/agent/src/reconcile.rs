//! The reconcile loop: follow the node's event stream (and poll as a safety net), bid on open
//! orders that fit (see [`crate::bidding`]), and hand leases the chain gives this provider to
//! [`Leases`]. One task does all of it, so decisions never race each other; every transaction
//! goes through the one [`NodeClient`], which serialises nonces.
//!
//! Orders are found through the stream (`OrderCreated`, `OrderReopened`,
//! `OrderExclusionLapsed`, each read by id). The poll reads one bounded page of open orders per
//! tick, going on from the last page's cursor and starting over at the newest once the list is
//! done, and only this provider's own record (`GET /v1/providers/{address}`): no poll reads a
//! whole list, however many orders and providers the chain holds.
//!
//! It also sees this provider leave: once its `AnnounceExit` is on chain (`gpunet provider
//! leave`), it stops bidding, has [`Leases::leave`] stop the workloads and release the leases,
//! and when the chain lists no live lease for it and no workload is left here, it submits
//! `DeregisterProvider` (the stake comes back) and says the agent has departed.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use gpunet_api::node::{EventEnvelope, OrderView};
use gpunet_client::{ClientError, NodeClient, OrderFilter};
use gpunet_protocol::{Event, LeaseId, Msg, OrderId, Rejection};
use tokio::sync::{mpsc, watch};

use crate::bidding::{NoBid, Offer, free_capacity, plan_bid};
use crate::leases::Leases;

/// How often open orders and this provider's leases are polled, besides the event stream.
pub const POLL_INTERVAL: Duration = Duration::from_secs(5);
/// Open orders read per poll: one page, from where the last poll's page ended.
pub const MAX_ORDERS_PER_POLL: usize = 200;
/// Most order ids remembered as bid on; the oldest are forgotten first.
pub const MAX_REMEMBERED_BIDS: usize = 100_000;
/// Events buffered between the stream reader and the loop.
const EVENT_BUFFER: usize = 1_024;
/// Longest wait before reconnecting to the event stream.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(30);

pub(crate) struct Reconciler {
    pub client: Arc<NodeClient>,
    pub leases: Arc<Leases>,
    pub offer: Offer,
    /// Orders bid on (or found already bid on), with the height they (re)opened at: never
    /// bid twice on one opening; an order reopened for another attempt is a new one.
    pub bid_on: BTreeSet<(OrderId, u64)>,
    /// Where the next poll's page of open orders starts: the last page's `next`, `None` to
    /// start over at the newest.
    pub orders_after: Option<String>,
    /// Set to `true` once this provider has left: every lease ended and it is deregistered.
    pub departed: watch::Sender<bool>,
}

impl Reconciler {
    pub(crate) async fn run(mut self, from_height: u64) {
        let (tx, mut rx) = mpsc::channel(EVENT_BUFFER);
        let follower = tokio::spawn(follow_events(Arc::clone(&self.client), from_height, tx));
        // Aborts the follower when this loop is dropped (agent shutdown).
        let _guard = AbortOnDrop(follower);
        let mut poll = tokio::time::interval(POLL_INTERVAL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                Some(envelope) = rx.recv() => self.on_event(envelope).await,
                _ = poll.tick() => self.poll().await,
            }
        }
    }

    async fn on_event(&mut self, envelope: EventEnvelope) {
        match envelope.event {
            Event::OrderCreated { order, .. }
            | Event::OrderReopened { order, .. }
            | Event::OrderExclusionLapsed { order, .. } => match self.client.order(order).await {
                Ok(view) => self.consider(&view).await,
                Err(error) => {
                    tracing::debug!(%order, %error, "cannot read a new order; the poll will")
                }
            },
            Event::LeaseCreated {
                lease, provider, ..
            } if provider == self.offer.provider => self.adopt(lease).await,
            Event::LeasePaused { lease, .. } if self.leases.get(lease).is_some() => {
                self.leases.on_lease_paused(lease);
            }
            Event::LeaseResumed { lease, .. } if self.leases.get(lease).is_some() => {
                self.leases.on_lease_resumed(lease);
            }
            Event::LeaseEnded { lease, reason, .. } if self.leases.get(lease).is_some() => {
                tracing::info!(%lease, %reason, "lease ended on chain");
                self.leases.on_lease_ended(lease);
                if self.leases.is_leaving() {
                    self.poll_provider().await;
                }
            }
            Event::ProviderLeaving { provider } if provider == self.offer.provider => {
                self.leases.leave();
            }
            _ => {}
        }
    }

    async fn adopt(&self, lease: LeaseId) {
        match self.client.lease(lease).await {
            Ok(view) => {
                self.leases.track(&view);
            }
            Err(error) => {
                tracing::warn!(%lease, %error, "cannot read our new lease; the poll will retry")
            }
        }
    }

    async fn poll(&mut self) {
        if !self.leases.is_leaving() {
            self.poll_orders().await;
        }
        self.poll_provider().await;
    }

    /// Considers one page of open orders for a bid, the page after the last poll's: over
    /// successive polls every open order is seen, at a bounded cost per poll.
    async fn poll_orders(&mut self) {
        let filter = OrderFilter {
            tenant: None,
            open_only: true,
            limit: Some(MAX_ORDERS_PER_POLL),
            after: self.orders_after.take(),
        };
        match self.client.orders(&filter).await {
            Ok(list) => {
                self.orders_after = list.next;
                for order in &list.orders {
                    self.consider(order).await;
                }
            }
            // A cursor the node refuses (another node's, an older version's) is dropped with
            // the page: the next poll starts over.
            Err(error) => tracing::warn!(%error, "cannot list open orders"),
        }
    }

    /// Compares this provider's leases on chain with the agent's: adopts the ones it lacks,
    /// ends the ones the chain has ended, and follows the provider's exit.
    async fn poll_provider(&mut self) {
        if *self.departed.borrow() {
            return;
        }
        // Known before the provider is read, so a lease tracked meanwhile is not mistaken
        // for one the chain has ended.
        let known = self.leases.ids();
        let me = match self.client.provider(&self.offer.provider).await {
            Ok(me) => me,
            Err(error) => {
                tracing::warn!(%error, "cannot read this provider's record");
                return;
            }
        };
        let Some(me) = me else {
            if self.leases.is_leaving() && self.leases.is_settled() {
                // Deregistered by someone else holding the key (`gpunet provider leave`).
                tracing::info!(provider = %self.offer.provider, "this provider is no longer registered: it has left");
                self.departed.send_replace(true);
            } else {
                tracing::warn!(provider = %self.offer.provider, "this provider is not registered on chain");
            }
            return;
        };
        if me.leaving {
            self.leases.leave();
        }
        for lease in &me.live_leases {
            if !known.contains(lease) {
                self.adopt(*lease).await;
            }
        }
        for lease in known {
            let live_here = self.leases.get(lease).is_some_and(|r| r.is_live());
            if live_here && !me.live_leases.contains(&lease) {
                tracing::info!(%lease, "lease is no longer live on chain");
                self.leases.on_lease_ended(lease);
            }
        }
        if me.leaving && me.live_leases.is_empty() && self.leases.is_settled() {
            self.deregister().await;
        }
    }

    /// Takes this leaving provider off the chain (its stake comes back) and says the agent
    /// has departed. A refusal (a lease created meanwhile) is tried again at the next poll.
    async fn deregister(&mut self) {
        let sent = self
            .client
            .send_and_wait(Msg::DeregisterProvider, crate::chain::TX_INCLUSION_TIMEOUT)
            .await;
        match sent {
            Ok(_) => {
                tracing::info!(provider = %self.offer.provider, "every lease ended: provider deregistered, stake returned");
                self.departed.send_replace(true);
            }
            Err(e) if e.rejection() == Some(Rejection::ProviderNotRegistered) => {
                tracing::info!(provider = %self.offer.provider, "already deregistered");
                self.departed.send_replace(true);
            }
            Err(error) => {
                tracing::warn!(%error, "could not deregister the provider; the next poll tries again")
            }
        }
    }

    /// Bids on `order` if the plan says so; never twice, and never while leaving.
    async fn consider(&mut self, order: &OrderView) {
        if self.leases.is_leaving() {
            return;
        }
        let opening = (order.id, order.open_since_height);
        if self.bid_on.contains(&opening) {
            return;
        }
        let held = self.leases.held();
        let free = free_capacity(
            &self.offer.profile.capacity,
            held.iter().map(|(r, s)| (r, s.as_slice())),
        );
        let price = match plan_bid(order, &free, &self.offer) {
            Ok(price) => price,
            Err(NoBid::AlreadyBid) => {
                self.remember(opening);
                return;
            }
            // Not remembered: the exclusion lapses if nobody else bids (the ledger's
            // `exclusion_lapse_blocks`), and then this provider may bid after all.
            Err(NoBid::Excluded) => return,
            Err(why) => {
                tracing::debug!(order = %order.id, %why, "no bid");
                return;
            }
        };
        self.remember(opening);
        let msg = Msg::PlaceBid {
            order: order.id,
            price_per_hour: price,
        };
        match self.client.send(msg).await {
            Ok(tx) => tracing::info!(order = %order.id, %price, %tx, "bid placed"),
            Err(error) if is_unreachable(&error) => {
                // Nothing reached the node: the next poll may try again.
                self.bid_on.remove(&opening);
                tracing::warn!(order = %order.id, %error, "could not send the bid");
            }
            Err(error) => tracing::warn!(order = %order.id, %error, "the bid was refused"),
        }
    }

    fn remember(&mut self, opening: (OrderId, u64)) {
        self.bid_on.insert(opening);
        while self.bid_on.len() > MAX_REMEMBERED_BIDS {
            self.bid_on.pop_first();
        }
    }
}

fn is_unreachable(e: &ClientError) -> bool {
    matches!(e, ClientError::Unreachable { .. })
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads the event stream into `tx`, reconnecting from the last height seen (events of that
/// height may come twice; the loop's handling is idempotent).
async fn follow_events(
    client: Arc<NodeClient>,
    mut from_height: u64,
    tx: mpsc::Sender<EventEnvelope>,
) {
    let mut delay = Duration::from_secs(1);
    loop {
        match client.events(from_height).await {
            Ok(stream) => {
                let mut stream = std::pin::pin!(stream);
                while let Some(item) = stream.next().await {
                    match item {
                        Ok(envelope) => {
                            delay = Duration::from_secs(1);
                            from_height = from_height.max(envelope.height);
                            if tx.send(envelope).await.is_err() {
                                return;
                            }
                        }
                        Err(error) => {
                            tracing::warn!(%error, from_height, "event stream broke; reconnecting");
                            break;
                        }
                    }
                }
            }
            Err(error) => tracing::warn!(%error, from_height, "cannot open the event stream"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(MAX_RECONNECT_DELAY);
    }
}
