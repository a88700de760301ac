//! The market explainer: for a set of order terms, which registered providers could run it now
//! and at what price (their posted rates), how many fail each requirement, the closest ones that
//! do not fit, and what change to the terms would let the order match.
//!
//! A pure query over the state — no transaction, nothing written. It scans every registered
//! provider (O(providers × GPUs per provider)), in address order, so the same state gives the
//! same answer on every node. The requirements are the ledger's own rules: runtime and region as
//! matching checks them, resources through [`gpunet_protocol::Free::fit`], price through
//! [`posted_price`], the very price a bid is checked against.

use std::collections::{BTreeMap, BTreeSet};

use gpunet_protocol::explain::{
    Change, Explanation, GpuOffered, MAX_EXPLAINED_NEAR, MAX_EXPLAINED_OFFERS, NearMiss, Offer,
    Requirement, RequirementFailures,
};
use gpunet_protocol::{Amount, OrderTerms, Rejection};

use crate::{Provider, State};

/// The price `provider`'s posted rates give for `terms` on the GPUs a lease would get now (the
/// lowest free slots that fit); `None` where the terms do not fit what it has free, or the
/// price overflows. The ledger refuses the provider's bids above it.
pub fn posted_price(state: &State, provider: &Provider, terms: &OrderTerms) -> Option<Amount> {
    let capacity = &provider.profile.capacity;
    let slots = state
        .provider_free(provider)
        .fit(capacity, &terms.resources)?;
    provider
        .profile
        .rates
        .price_per_hour(&terms.resources, capacity, &slots)
}

/// Checks terms as `CreateOrder` would (shape and bounds; not the signer's balance), so a quote
/// for terms that could never be submitted is refused the same way.
pub fn check_order_terms(state: &State, terms: &OrderTerms) -> Result<(), Rejection> {
    crate::market::check_terms(state, terms)
}

/// How one provider measures up against the terms.
struct Fit {
    fails: Vec<Requirement>,
    price: Option<Amount>,
    /// GPUs of the kind asked for, free now.
    gpus_free: u32,
    /// Whether it has any GPU of the kind asked for.
    has_gpu_model: bool,
}

fn measure(state: &State, p: &Provider, terms: &OrderTerms) -> Fit {
    let req = &terms.resources;
    let capacity = &p.profile.capacity;
    let free = state.provider_free(p);
    let wanted = req.gpu.count as usize;
    let kind: Vec<u32> = (0..capacity.gpus.len() as u32)
        .filter(|&i| {
            capacity
                .gpus
                .get(i as usize)
                .is_some_and(|g| g.satisfies(&req.gpu))
        })
        .collect();
    let kind_free: Vec<u32> = kind
        .iter()
        .copied()
        .filter(|i| free.gpu_slots.contains(i))
        .collect();
    let has_gpu_model = !kind.is_empty();
    let mut fails = Vec::new();
    let mut fail = |r: Requirement, failed: bool| {
        if failed {
            fails.push(r);
        }
    };
    fail(
        Requirement::Runtime,
        !p.profile.runtimes.contains(&terms.runtime),
    );
    fail(
        Requirement::Capabilities,
        p.profile.capabilities < terms.capabilities,
    );
    fail(
        Requirement::Region,
        !terms.regions.is_empty() && !terms.regions.contains(&p.profile.region),
    );
    fail(Requirement::GpuModel, wanted > 0 && !has_gpu_model);
    fail(
        Requirement::GpuCount,
        wanted > 0 && has_gpu_model && kind_free.len() < wanted,
    );
    fail(Requirement::Cpu, req.cpu_millis > free.cpu_millis);
    fail(Requirement::Memory, req.memory_mib > free.memory_mib);
    fail(Requirement::Disk, req.disk_mib > free.disk_mib);
    // The price on the GPUs a lease would get: the lowest free ones of the kind (as
    // `Free::fit` picks them), then busy ones, so a busy provider still shows its price.
    let slots: Vec<u32> = kind_free
        .iter()
        .chain(kind.iter().filter(|i| !kind_free.contains(i)))
        .copied()
        .take(wanted)
        .collect();
    let price = (slots.len() == wanted)
        .then(|| p.profile.rates.price_per_hour(req, capacity, &slots))
        .flatten();
    // No price for want of GPUs is the GPU requirements' failure; an overflow is the price's.
    let price_fails = match price {
        Some(price) => price > terms.max_price_per_hour,
        None => slots.len() == wanted,
    };
    fail(Requirement::Price, price_fails);
    Fit {
        fails,
        price,
        gpus_free: u32::try_from(kind_free.len()).unwrap_or(u32::MAX),
        has_gpu_model,
    }
}

/// Explains what the market would do with `terms` now.
pub fn explain(state: &State, terms: &OrderTerms) -> Explanation {
    let mut failing: BTreeMap<Requirement, u32> =
        Requirement::ALL.iter().map(|&r| (r, 0)).collect();
    let mut matching = 0u32;
    let mut offers = Vec::new();
    let mut near: Vec<(usize, Option<Amount>, NearMiss)> = Vec::new();
    let mut runtimes = BTreeSet::new();
    let mut regions = BTreeSet::new();
    let mut gpu_models: BTreeMap<String, BTreeSet<gpunet_protocol::Address>> = BTreeMap::new();
    let mut most_gpus_free = 0u32;
    let mut most_cpu = 0u32;
    let mut most_memory = 0u64;
    let mut most_disk = 0u64;
    for p in state.providers.values() {
        runtimes.extend(p.profile.runtimes.iter().copied());
        regions.insert(p.profile.region.clone());
        for g in &p.profile.capacity.gpus {
            gpu_models
                .entry(g.model.clone())
                .or_default()
                .insert(p.address);
        }
        let free = state.provider_free(p);
        most_cpu = most_cpu.max(free.cpu_millis);
        most_memory = most_memory.max(free.memory_mib);
        most_disk = most_disk.max(free.disk_mib);
        let fit = measure(state, p, terms);
        if fit.has_gpu_model {
            most_gpus_free = most_gpus_free.max(fit.gpus_free);
        }
        for r in &fit.fails {
            if let Some(n) = failing.get_mut(r) {
                *n = n.saturating_add(1);
            }
        }
        match (fit.fails.as_slice(), fit.price) {
            ([], Some(price)) => {
                matching = matching.saturating_add(1);
                offers.push(Offer {
                    provider: p.address,
                    region: p.profile.region.clone(),
                    price_per_hour: price,
                    within_max_price: true,
                });
            }
            ([Requirement::Price], Some(price)) => offers.push(Offer {
                provider: p.address,
                region: p.profile.region.clone(),
                price_per_hour: price,
                within_max_price: false,
            }),
            _ => near.push((
                fit.fails.len(),
                fit.price,
                NearMiss {
                    provider: p.address,
                    region: p.profile.region.clone(),
                    price_per_hour: fit.price,
                    fails: fit.fails,
                },
            )),
        }
    }
    offers.sort_by_key(|o| (o.price_per_hour, o.provider));
    // Closest first: fewest failures the tenant cannot fix by asking for less (runtime,
    // region, GPU model), then fewest failures, then the lowest price.
    let hard = |fails: &[Requirement]| {
        fails
            .iter()
            .filter(|r| {
                matches!(
                    r,
                    Requirement::Runtime
                        | Requirement::Capabilities
                        | Requirement::Region
                        | Requirement::GpuModel
                )
            })
            .count()
    };
    near.sort_by(|a, b| {
        (
            hard(&a.2.fails),
            a.0,
            a.1.unwrap_or(Amount::MAX),
            a.2.provider,
        )
            .cmp(&(
                hard(&b.2.fails),
                b.0,
                b.1.unwrap_or(Amount::MAX),
                b.2.provider,
            ))
    });
    let changes = if matching > 0 {
        Vec::new()
    } else if state.providers.is_empty() {
        vec![Change::NoProviders]
    } else if let Some(cheapest) = offers.first() {
        // Everything fits somewhere but the price: the one change is the price.
        vec![Change::RaiseMaxPrice {
            to: cheapest.price_per_hour,
        }]
    } else {
        // What the closest provider fails, each relaxed to what the market has.
        let closest = near.first().map(|n| &n.2);
        let req = &terms.resources;
        closest
            .map(|n| n.fails.as_slice())
            .unwrap_or_default()
            .iter()
            .filter_map(|r| match r {
                Requirement::Runtime => Some(Change::Runtime {
                    wanted: terms.runtime,
                    offered: runtimes.iter().copied().collect(),
                }),
                Requirement::Capabilities => Some(Change::Capabilities {
                    wanted: terms.capabilities,
                }),
                Requirement::Region => Some(Change::Region {
                    wanted: terms.regions.clone(),
                    offered: regions.iter().cloned().collect(),
                }),
                Requirement::GpuModel => Some(Change::GpuModel {
                    wanted: req.gpu.models.clone(),
                    vram_mib_min: req.gpu.vram_mib_min,
                    offered: gpu_models
                        .iter()
                        .map(|(model, who)| GpuOffered {
                            model: model.clone(),
                            providers: u32::try_from(who.len()).unwrap_or(u32::MAX),
                        })
                        .collect(),
                }),
                Requirement::GpuCount => Some(Change::GpuCount {
                    at_most: most_gpus_free,
                }),
                Requirement::Cpu => Some(Change::Cpu {
                    at_most_millis: most_cpu,
                }),
                Requirement::Memory => Some(Change::Memory {
                    at_most_mib: most_memory,
                }),
                Requirement::Disk => Some(Change::Disk {
                    at_most_mib: most_disk,
                }),
                Requirement::Price => closest
                    .and_then(|n| n.price_per_hour)
                    .map(|to| Change::RaiseMaxPrice { to }),
            })
            .collect()
    };
    offers.truncate(MAX_EXPLAINED_OFFERS);
    near.truncate(MAX_EXPLAINED_NEAR);
    Explanation {
        providers: u32::try_from(state.providers.len()).unwrap_or(u32::MAX),
        matching,
        failing: failing
            .into_iter()
            .map(|(requirement, providers)| RequirementFailures {
                requirement,
                providers,
            })
            .collect(),
        offers,
        near: near.into_iter().map(|n| n.2).collect(),
        changes,
    }
}
