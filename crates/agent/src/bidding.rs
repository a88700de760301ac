//! The bidding decision, as a pure function: feasibility first (order state, runtime, region,
//! then resources against what is free now), then price. The ledger checks every bid again; the
//! agent only avoids bids that would be refused or that it could not honour.

use gpunet_api::node::{OrderState, OrderView};
use gpunet_protocol::{Address, Amount, Capacity, Free, OrderTerms, ProviderProfile, Resources};

use crate::policy::TenantPolicy;

/// What this provider offers the market: who it is, its profile (with its posted rates), and
/// whose jobs its runtimes without isolation take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    pub provider: Address,
    pub profile: ProviderProfile,
    pub policy: TenantPolicy,
}

/// Which resource is short when an order does not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shortfall {
    Cpu,
    Memory,
    Disk,
    /// Not enough free GPUs of an accepted model with enough memory.
    Gpu,
}

/// Why no bid is placed on an order, in the order the checks run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoBid {
    #[error("the order is no longer open")]
    NotOpen,
    #[error("the order is our own; the ledger refuses self-dealing")]
    OwnOrder,
    #[error("we have already bid on this order")]
    AlreadyBid,
    #[error("we ran a failed or lost attempt of this order; the ledger refuses our bids on it")]
    Excluded,
    #[error(
        "runtime {runtime} cannot isolate workloads here, and the order's tenant is not one the operator trusts"
    )]
    TenantNotTrusted { runtime: &'static str },
    #[error("the order wants runtime {runtime}, which this provider does not offer")]
    RuntimeNotOffered { runtime: &'static str },
    #[error("the order asks for the {wanted} capabilities, which this provider does not grant")]
    CapabilitiesNotGranted { wanted: &'static str },
    #[error("the order does not accept region {region:?}")]
    RegionNotAccepted { region: String },
    #[error("the order does not fit what is free: not enough {short:?}")]
    DoesNotFit { short: Shortfall },
    #[error("the price cannot be computed (an unknown GPU slot or an overflow)")]
    NoPrice,
    #[error("our price {price}/h is above the order's maximum {max}/h")]
    AboveMaxPrice { price: Amount, max: Amount },
}

/// The price to bid on `order`, or why not to bid. `free` is the capacity not held by live
/// leases (see [`free_capacity`]).
pub fn plan_bid(order: &OrderView, free: &Free, offer: &Offer) -> Result<Amount, NoBid> {
    if order.state != OrderState::Open {
        return Err(NoBid::NotOpen);
    }
    if order.tenant == offer.provider {
        return Err(NoBid::OwnOrder);
    }
    if order.bids.iter().any(|b| b.provider == offer.provider) {
        return Err(NoBid::AlreadyBid);
    }
    if order.excluded.contains(&offer.provider) {
        return Err(NoBid::Excluded);
    }
    if !offer.policy.allows(order.terms.runtime, order.tenant) {
        return Err(NoBid::TenantNotTrusted {
            runtime: order.terms.runtime.as_str(),
        });
    }
    plan_bid_on_terms(&order.terms, free, offer)
}

/// [`plan_bid`] for the terms alone: runtime, region, fit, then price.
pub fn plan_bid_on_terms(terms: &OrderTerms, free: &Free, offer: &Offer) -> Result<Amount, NoBid> {
    let profile = &offer.profile;
    if !profile.runtimes.contains(&terms.runtime) {
        return Err(NoBid::RuntimeNotOffered {
            runtime: terms.runtime.as_str(),
        });
    }
    if terms.capabilities > profile.capabilities {
        return Err(NoBid::CapabilitiesNotGranted {
            wanted: terms.capabilities.as_str(),
        });
    }
    if !terms.regions.is_empty() && !terms.regions.contains(&profile.region) {
        return Err(NoBid::RegionNotAccepted {
            region: profile.region.clone(),
        });
    }
    let capacity = &profile.capacity;
    let Some(slots) = free.fit(capacity, &terms.resources) else {
        return Err(NoBid::DoesNotFit {
            short: shortfall(free, &terms.resources),
        });
    };
    // Exactly the posted price: the ledger refuses a bid above it (and a free offer's price is
    // the smallest nonzero one, since the ledger refuses a zero bid).
    let price = profile
        .rates
        .price_per_hour(&terms.resources, capacity, &slots)
        .ok_or(NoBid::NoPrice)?;
    if price > terms.max_price_per_hour {
        return Err(NoBid::AboveMaxPrice {
            price,
            max: terms.max_price_per_hour,
        });
    }
    Ok(price)
}

fn shortfall(free: &Free, req: &Resources) -> Shortfall {
    if req.cpu_millis > free.cpu_millis {
        Shortfall::Cpu
    } else if req.memory_mib > free.memory_mib {
        Shortfall::Memory
    } else if req.disk_mib > free.disk_mib {
        Shortfall::Disk
    } else {
        Shortfall::Gpu
    }
}

/// What of `capacity` is free once the `held` leases (their resources and GPU slots) are taken.
pub fn free_capacity<'a>(
    capacity: &Capacity,
    held: impl IntoIterator<Item = (&'a Resources, &'a [u32])>,
) -> Free {
    let mut free = Free::all_of(capacity);
    for (resources, slots) in held {
        free.take(resources, slots);
    }
    free
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use gpunet_api::node::BidView;
    use gpunet_protocol::{GpuRequirement, GpuSlot, Hash, OrderId, Runtime};

    fn me() -> Address {
        Address([1; 32])
    }

    fn tenant() -> Address {
        Address([2; 32])
    }

    fn offer() -> Offer {
        Offer {
            provider: me(),
            profile: ProviderProfile {
                capabilities: Default::default(),
                endpoint: "http://127.0.0.1:7000".into(),
                region: "eu-west".into(),
                capacity: Capacity {
                    cpu_millis: 8_000,
                    memory_mib: 16_384,
                    disk_mib: 50_000,
                    gpus: vec![
                        GpuSlot {
                            model: "h100-80gb".into(),
                            family: "h100".into(),
                            vram_mib: 81_559,
                        },
                        GpuSlot {
                            model: "l4".into(),
                            family: "l4".into(),
                            vram_mib: 23_034,
                        },
                    ],
                },
                runtimes: vec![Runtime::Process],
                encryption_key: gpunet_protocol::EncryptionKey([7; 32]),
                rates: gpunet_protocol::Rates::default(),
            },
            policy: TenantPolicy::default(),
        }
    }

    #[test]
    fn a_stranger_gets_no_bid_on_a_runtime_without_isolation_and_a_trusted_tenant_does() {
        let mut offer = offer();
        offer.policy.unisolated.insert(Runtime::Process);
        let open = order(terms());
        assert_eq!(
            plan_bid(&open, &Free::all_of(&offer.profile.capacity), &offer),
            Err(NoBid::TenantNotTrusted { runtime: "process" })
        );
        offer.policy.trusted_tenants.insert(tenant());
        assert!(plan_bid(&open, &Free::all_of(&offer.profile.capacity), &offer).is_ok());
    }

    /// 1 core, 1 GiB, no GPU, anywhere, max 10.00/h: our default price is 0.11.
    pub(crate) fn terms() -> OrderTerms {
        OrderTerms {
            capabilities: Default::default(),
            name: "job".into(),
            manifest_hash: Hash::of(b"m"),
            resources: Resources {
                cpu_millis: 1_000,
                memory_mib: 1_024,
                disk_mib: 1_024,
                gpu: GpuRequirement::default(),
            },
            regions: vec![],
            runtime: Runtime::Process,
            max_price_per_hour: Amount::from_micros(10_000_000),
            deposit: Amount::from_micros(5_000_000),
            max_duration_secs: 3_600,
            recovery: gpunet_protocol::RecoveryPolicy::none(),
            verification: Default::default(),
        }
    }

    pub(crate) fn order(terms: OrderTerms) -> OrderView {
        OrderView {
            id: OrderId(1),
            tenant: tenant(),
            terms,
            state: OrderState::Open,
            created_height: 1,
            created_ms: 0,
            escrow: Amount::from_micros(5_000_000),
            bids: vec![],
            lease: None,
            attempts: vec![],
            excluded: vec![],
            open_since_height: 1,
            not_before_ms: 0,
            verification: None,
        }
    }

    fn check(edit: impl FnOnce(&mut OrderView), expected: Result<&str, NoBid>) {
        let mut o = order(terms());
        edit(&mut o);
        let off = offer();
        let free = Free::all_of(&off.profile.capacity);
        let got = plan_bid(&o, &free, &off).map(|a| a.to_string());
        assert_eq!(got, expected.map(str::to_owned), "{:?}", o.terms);
    }

    fn gpu(count: u32, models: &[&str], vram_mib_min: u64) -> GpuRequirement {
        GpuRequirement {
            count,
            models: models.iter().map(|m| (*m).to_owned()).collect(),
            vram_mib_min,
        }
    }

    #[test]
    fn an_order_asking_for_capabilities_gets_a_bid_only_where_they_are_granted() {
        let mut off = offer();
        off.profile.runtimes = vec![Runtime::Process, Runtime::Docker];
        let mut t = terms();
        t.runtime = Runtime::Docker;
        t.capabilities = gpunet_protocol::Capabilities::Baseline;
        let free = Free::all_of(&off.profile.capacity);
        assert_eq!(
            plan_bid(&order(t.clone()), &free, &off),
            Err(NoBid::CapabilitiesNotGranted { wanted: "baseline" })
        );
        off.profile.capabilities = gpunet_protocol::Capabilities::Baseline;
        assert!(plan_bid(&order(t), &free, &off).is_ok());
    }

    #[test]
    fn a_verified_order_is_bid_on_like_any_other() {
        // The agent reports tags and reveals (`crate::reveals`): verification changes no price.
        check(
            |o| o.terms.verification.mode = gpunet_protocol::VerificationMode::SpotCheck,
            Ok("0.11"),
        );
    }

    #[test]
    fn an_order_that_fits_gets_our_price() {
        check(|_| {}, Ok("0.11"));
        check(|o| o.terms.regions = vec!["eu-west".into()], Ok("0.11"));
        check(|o| o.terms.resources.gpu = gpu(1, &["h100"], 0), Ok("2.11"));
        check(|o| o.terms.resources.gpu = gpu(2, &[], 20_000), Ok("4.11"));
        check(|o| o.terms.resources.gpu = gpu(1, &["l4"], 0), Ok("2.11"));
    }

    #[test]
    fn an_order_above_our_price_limit_gets_no_bid() {
        check(
            |o| o.terms.max_price_per_hour = Amount::from_micros(109_999),
            Err(NoBid::AboveMaxPrice {
                price: Amount::from_micros(110_000),
                max: Amount::from_micros(109_999),
            }),
        );
        check(
            |o| o.terms.max_price_per_hour = Amount::from_micros(110_000),
            Ok("0.11"),
        );
    }

    #[test]
    fn orders_that_do_not_fit_get_no_bid_and_say_why() {
        check(
            |o| o.terms.resources.memory_mib = 16_385,
            Err(NoBid::DoesNotFit {
                short: Shortfall::Memory,
            }),
        );
        check(
            |o| o.terms.resources.cpu_millis = 8_001,
            Err(NoBid::DoesNotFit {
                short: Shortfall::Cpu,
            }),
        );
        check(
            |o| o.terms.resources.disk_mib = 50_001,
            Err(NoBid::DoesNotFit {
                short: Shortfall::Disk,
            }),
        );
        check(
            |o| o.terms.resources.gpu = gpu(1, &["a100"], 0),
            Err(NoBid::DoesNotFit {
                short: Shortfall::Gpu,
            }),
        );
        check(
            |o| o.terms.resources.gpu = gpu(2, &["h100"], 0),
            Err(NoBid::DoesNotFit {
                short: Shortfall::Gpu,
            }),
        );
        check(
            |o| o.terms.resources.gpu = gpu(1, &["l4"], 40_000),
            Err(NoBid::DoesNotFit {
                short: Shortfall::Gpu,
            }),
        );
    }

    #[test]
    fn region_runtime_and_order_state_are_checked_first() {
        check(
            |o| o.terms.regions = vec!["us-east".into()],
            Err(NoBid::RegionNotAccepted {
                region: "eu-west".into(),
            }),
        );
        check(
            |o| o.terms.runtime = Runtime::Docker,
            Err(NoBid::RuntimeNotOffered { runtime: "docker" }),
        );
        check(|o| o.state = OrderState::Leased, Err(NoBid::NotOpen));
        check(|o| o.tenant = me(), Err(NoBid::OwnOrder));
        check(
            |o| {
                o.bids.push(BidView {
                    provider: me(),
                    price_per_hour: Amount::from_micros(1),
                    height: 1,
                });
            },
            Err(NoBid::AlreadyBid),
        );
        // Another provider's bid does not stop ours.
        check(
            |o| {
                o.bids.push(BidView {
                    provider: tenant(),
                    price_per_hour: Amount::from_micros(1),
                    height: 1,
                });
            },
            Ok("0.11"),
        );
    }

    #[test]
    fn live_leases_take_their_resources_and_gpus_out_of_what_is_free() {
        let off = offer();
        let cap = &off.profile.capacity;
        let lease = Resources {
            cpu_millis: 7_500,
            memory_mib: 1_024,
            disk_mib: 0,
            gpu: gpu(1, &["h100"], 0),
        };
        let slots = [0u32];
        let free = free_capacity(cap, [(&lease, &slots[..])]);
        assert_eq!(free.cpu_millis, 500);
        assert_eq!(free.gpu_slots, vec![1]);
        let mut t = terms();
        t.resources.gpu = gpu(1, &["h100"], 0);
        assert_eq!(
            plan_bid_on_terms(&t, &free, &off),
            Err(NoBid::DoesNotFit {
                short: Shortfall::Cpu
            })
        );
        t.resources.cpu_millis = 500;
        assert_eq!(
            plan_bid_on_terms(&t, &free, &off),
            Err(NoBid::DoesNotFit {
                short: Shortfall::Gpu
            })
        );
        t.resources.gpu = gpu(1, &[], 0);
        assert_eq!(
            plan_bid_on_terms(&t, &free, &off).map(|a| a.to_string()),
            Ok("2.06".to_owned())
        );
    }

    #[test]
    fn a_free_offer_still_bids_a_nonzero_price() {
        let mut off = offer();
        off.profile.rates = gpunet_protocol::Rates {
            per_cpu_core_hour: Amount::ZERO,
            per_memory_gib_hour: Amount::ZERO,
            per_gpu_hour: Default::default(),
            default_per_gpu_hour: Amount::ZERO,
        };
        let free = Free::all_of(&off.profile.capacity);
        assert_eq!(
            plan_bid_on_terms(&terms(), &free, &off),
            Ok(Amount::from_micros(1))
        );
    }
}
