//! The node's index of orders by tenant, for `GET /v1/orders?tenant=…`.
//!
//! The ledger keeps none (it would be state every validator must agree on, for a read-side
//! need), so the API builds it from the committed orders. It is cheap to keep: order ids only
//! grow and an order's tenant never changes, and orders are never removed, so catching up with
//! a tip reads only the orders created since the highest id indexed (one `range` lookup). The
//! first catch-up after a start reads every order once, in the background as the API starts.
//! The index may be ahead of the tip a request holds (another request caught it up to a newer
//! one): an id the request's tip lacks is skipped when it is looked up.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound::{Excluded, Unbounded};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use gpunet_ledger::State;
use gpunet_protocol::{Address, OrderId};

#[derive(Debug, Default)]
pub(crate) struct TenantIndex {
    by_tenant: BTreeMap<Address, BTreeSet<OrderId>>,
    /// The highest order id indexed; `None` before the first.
    last: Option<OrderId>,
}

impl TenantIndex {
    /// Adds the orders of `state` created after the last one indexed.
    pub(crate) fn catch_up(&mut self, state: &State) {
        let from = self.last.map_or(Unbounded, Excluded);
        for (id, order) in state.orders.range((from, Unbounded)) {
            self.by_tenant.entry(order.tenant).or_default().insert(*id);
            self.last = Some(*id);
        }
    }

    /// `tenant`'s order ids, lowest first (empty for a tenant with none).
    pub(crate) fn orders_of(&self, tenant: &Address) -> Option<&BTreeSet<OrderId>> {
        self.by_tenant.get(tenant)
    }
}

/// The index shared by the API's handlers.
#[derive(Debug, Clone, Default)]
pub(crate) struct SharedTenantIndex(Arc<Mutex<TenantIndex>>);

impl SharedTenantIndex {
    /// The index, caught up with `state`.
    pub(crate) fn caught_up(&self, state: &State) -> MutexGuard<'_, TenantIndex> {
        // Poisoned only if a catch-up panicked; what it had added is still correct (each entry
        // is added whole, `last` after it), so the index goes on from there.
        let mut index = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        index.catch_up(state);
        index
    }
}
