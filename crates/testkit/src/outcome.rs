//! Reading a [`BlockOutcome`]: every event in order, the rejections, and the ids and settlements
//! tests usually look for.

use gpunet_protocol::{Amount, BlockOutcome, Event, LeaseEndReason, LeaseId, OrderId, Rejection};

/// The numbers of one `LeaseEnded` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseEnd {
    pub lease: LeaseId,
    pub order: OrderId,
    pub reason: LeaseEndReason,
    pub billed_ms: u64,
    pub paid: Amount,
    pub fee: Amount,
    pub refund: Amount,
}

/// Convenience readers over a block's outcome.
pub trait OutcomeExt {
    /// Every event: each receipt's in block order, then the end-of-block events.
    fn events(&self) -> Vec<&Event>;
    /// One entry per transaction: `None` if it applied.
    fn rejections(&self) -> Vec<Option<Rejection>>;
    /// Panics unless every transaction applied.
    fn assert_all_applied(&self);
    /// The orders created in this block, in order.
    fn orders_created(&self) -> Vec<OrderId>;
    /// The leases created in this block, with their order, in order.
    fn leases_created(&self) -> Vec<(LeaseId, OrderId)>;
    /// The leases that ended in this block.
    fn leases_ended(&self) -> Vec<LeaseEnd>;
}

impl OutcomeExt for BlockOutcome {
    fn events(&self) -> Vec<&Event> {
        self.receipts
            .iter()
            .flat_map(|r| r.events.iter())
            .chain(self.end_block_events.iter())
            .collect()
    }

    fn rejections(&self) -> Vec<Option<Rejection>> {
        self.receipts.iter().map(|r| r.rejection).collect()
    }

    fn assert_all_applied(&self) {
        let rejected: Vec<_> = self
            .receipts
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.rejection.map(|why| (i, why)))
            .collect();
        assert!(rejected.is_empty(), "rejected (index, why): {rejected:?}");
    }

    fn orders_created(&self) -> Vec<OrderId> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::OrderCreated { order, .. } => Some(*order),
                _ => None,
            })
            .collect()
    }

    fn leases_created(&self) -> Vec<(LeaseId, OrderId)> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::LeaseCreated { lease, order, .. } => Some((*lease, *order)),
                _ => None,
            })
            .collect()
    }

    fn leases_ended(&self) -> Vec<LeaseEnd> {
        self.events()
            .into_iter()
            .filter_map(|e| match *e {
                Event::LeaseEnded {
                    lease,
                    order,
                    reason,
                    billed_ms,
                    paid,
                    fee,
                    refund,
                } => Some(LeaseEnd {
                    lease,
                    order,
                    reason,
                    billed_ms,
                    paid,
                    fee,
                    refund,
                }),
                _ => None,
            })
            .collect()
    }
}
