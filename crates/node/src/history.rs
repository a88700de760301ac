//! Orders and leases that ended for good, and the tenant index, kept beside the state.
//!
//! The ledger moves an order out of the state when it expires, is cancelled or closes after its
//! last attempt, and a lease when it ends ([`gpunet_ledger::Archive`]): the state that consensus
//! carries and proves holds only live entities. The committer hands the archived ones to the
//! store with their block (`history`, under their state keys), so `GET /v1/orders/{id}` of an
//! old job keeps answering from here. History is this node's record of what its blocks did, not
//! state: it has no Merkle proof (a proof of an ended order shows it absent from the state).
//!
//! The store also keeps, from the block that creates each order, one lookup key per order:
//! [`TENANT_ORDER`] ‖ tenant ‖ order id (big-endian), so `GET /v1/orders?tenant=` pages through a
//! tenant's orders, live and ended, with one range read, and nothing is rebuilt at a restart.

use std::borrow::Cow;

use gpunet_ledger::{Changes, Lease, Order, State};
use gpunet_protocol::merkle::{StateTable, id_key, state_key};
use gpunet_protocol::{Address, LeaseId, OrderId};
use gpunet_store::Store;

/// Tag of the lookup keys that index orders by tenant.
pub(crate) const TENANT_ORDER: u8 = 1;

/// The lookup keys of `tenant`'s orders start with this.
pub(crate) fn tenant_prefix(tenant: &Address) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + 32 + 8);
    key.push(TENANT_ORDER);
    key.extend_from_slice(&tenant.0);
    key
}

/// The lookup key of `tenant`'s order `id`.
pub(crate) fn tenant_order_key(tenant: &Address, id: OrderId) -> Vec<u8> {
    let mut key = tenant_prefix(tenant);
    key.extend_from_slice(&id_key(id.0));
    key
}

/// The order a [`tenant_order_key`] names; `None` for any other key.
pub(crate) fn order_of_key(key: &[u8]) -> Option<OrderId> {
    let (&tag, rest) = key.split_first()?;
    let id: [u8; 8] = rest.get(32..)?.try_into().ok()?;
    (tag == TENANT_ORDER).then(|| OrderId(u64::from_be_bytes(id)))
}

/// The lookup keys a block adds: one per order it created (`first_new` up to the state's
/// `next_order_id`), whether the order is still live or already archived with the block.
pub(crate) fn block_lookups(first_new: u64, state: &State, changes: &Changes) -> Vec<Vec<u8>> {
    (first_new..state.next_order_id)
        .map(OrderId)
        .filter_map(|id| {
            let order = state
                .orders
                .get(&id)
                .or_else(|| changes.archived.orders().get(&id))?;
            Some(tenant_order_key(&order.tenant, id))
        })
        .collect()
}

/// Why history cannot be read: the store failed or holds what this node cannot decode.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct HistoryError(String);

/// Reads orders and leases from a tip's state, falling back to the store's history for those
/// that ended. The store is committed before a tip is published, so whatever left a tip's state
/// is in history by the time a reader holds that tip.
#[derive(Clone, Copy)]
pub(crate) struct Lookup<'a> {
    pub(crate) state: &'a State,
    pub(crate) store: &'a Store,
}

impl<'a> Lookup<'a> {
    pub(crate) fn order(&self, id: OrderId) -> Result<Option<Cow<'a, Order>>, HistoryError> {
        if let Some(o) = self.state.orders.get(&id) {
            return Ok(Some(Cow::Borrowed(o)));
        }
        if !self.state.order_ended(id) {
            return Ok(None);
        }
        self.archived(StateTable::Orders, id.0)
            .map(|o| o.map(Cow::Owned))
    }

    pub(crate) fn lease(&self, id: LeaseId) -> Result<Option<Cow<'a, Lease>>, HistoryError> {
        if let Some(l) = self.state.leases.get(&id) {
            return Ok(Some(Cow::Borrowed(l)));
        }
        if !self.state.lease_ended(id) {
            return Ok(None);
        }
        self.archived(StateTable::Leases, id.0)
            .map(|l| l.map(Cow::Owned))
    }

    fn archived<T: borsh::BorshDeserialize>(
        &self,
        table: StateTable,
        id: u64,
    ) -> Result<Option<T>, HistoryError> {
        let key = state_key(table, &id_key(id));
        let Some(bytes) = self
            .store
            .history(&key)
            .map_err(|e| HistoryError(format!("reading {table} {id} from history: {e}")))?
        else {
            return Ok(None);
        };
        borsh::from_slice(&bytes)
            .map(Some)
            .map_err(|e| HistoryError(format!("{table} {id} in history does not decode: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_order_key_names_its_order_and_sorts_by_tenant_then_id() {
        let (a, b) = (Address([1; 32]), Address([2; 32]));
        let k = tenant_order_key(&a, OrderId(258));
        assert!(k.starts_with(&tenant_prefix(&a)));
        assert_eq!(order_of_key(&k), Some(OrderId(258)));
        assert!(tenant_order_key(&a, OrderId(9)) < tenant_order_key(&a, OrderId(258)));
        assert!(tenant_order_key(&a, OrderId(u64::MAX)) < tenant_order_key(&b, OrderId(0)));
        assert_eq!(order_of_key(&k[..20]), None, "cut short");
        let mut other = k.clone();
        other[0] = 9;
        assert_eq!(order_of_key(&other), None, "another tag");
    }
}
