//! Providers' posted rates bind their bids, and the explainer says, from the state alone, why an
//! order would not match: which requirement each provider fails, the closest offers at their
//! posted prices, and the change to the terms that would let it match.

use gpunet_ledger::apply_tx;
use gpunet_ledger::explain::{explain, posted_price};
use gpunet_protocol::explain::{Change, Explanation, GpuOffered, Requirement};
use gpunet_protocol::{Amount, OrderTerms, ProviderProfile, Rejection, Runtime};
use gpunet_testkit::{
    OutcomeExt, TermsBuilder, World, a100, order_terms, provider_profile, rates, usd,
};

fn micros(m: u64) -> Amount {
    Amount::from_micros(m)
}

/// A provider in `eu-west` with 8 cores, 32 GiB, 1 TiB of disk and these GPUs, posting 0.10 per
/// core-hour, 0.01 per GiB-hour and `gpu_micros` per GPU-hour.
fn priced(gpus: Vec<gpunet_protocol::GpuSlot>, gpu_micros: u64) -> ProviderProfile {
    let mut p = provider_profile(8_000, 32_768, gpus);
    p.rates = rates(100_000, 10_000, gpu_micros);
    p
}

/// Three providers: two with an A100 each (GPU-hour 1.50 and 1.20), one without GPUs; all
/// process and docker, in `eu-west`.
fn market() -> World {
    World::builder()
        .tenants(1)
        .provider(priced(vec![a100()], 1_500_000))
        .provider(priced(vec![a100()], 1_200_000))
        .provider(priced(vec![], 0))
        .build()
}

fn terms(t: TermsBuilder) -> OrderTerms {
    t.build()
}

/// Explains `terms` and checks that exactly `failing` providers fail each listed requirement
/// (and none fail the others).
fn check(w: &World, t: TermsBuilder, failing: &[(Requirement, u32)]) -> Explanation {
    let e = explain(&w.state, &terms(t));
    for r in Requirement::ALL {
        let expected = failing
            .iter()
            .find(|(req, _)| *req == r)
            .map_or(0, |(_, n)| *n);
        assert_eq!(e.failing(r), expected, "{r:?} in {e:#?}");
    }
    assert_eq!(e.providers, 3);
    e
}

#[test]
fn an_order_some_provider_can_serve_matches_with_its_offers_cheapest_first() {
    let w = market();
    // 1 core, 1 GiB: 0.11 at every provider.
    let e = check(&w, order_terms(), &[]);
    assert!(e.matches());
    assert_eq!(e.matching, 3);
    assert!(e.changes.is_empty(), "{e:#?}");
    assert!(e.offers.iter().all(|o| o.price_per_hour == micros(110_000)));
    // A GPU order: the A100 at 1.20 before the one at 1.50, the GPU-less provider not offered.
    let e = check(
        &w,
        order_terms().gpus(1, &["a100"]),
        &[(Requirement::GpuModel, 1)],
    );
    let prices: Vec<Amount> = e.offers.iter().map(|o| o.price_per_hour).collect();
    assert_eq!(prices, vec![micros(1_310_000), micros(1_610_000)]);
    assert_eq!(e.offers[0].provider, w.provider_addr(1));
    assert_eq!(e.matching, 2);
}

#[test]
fn a_gpu_on_a_network_without_one_is_a_gpu_model_failure_at_every_provider() {
    let w = World::builder()
        .tenants(1)
        .provider(priced(vec![], 0))
        .provider(priced(vec![], 0))
        .provider(priced(vec![], 0))
        .build();
    let e = check(
        &w,
        order_terms().gpus(1, &[]),
        &[(Requirement::GpuModel, 3)],
    );
    assert!(!e.matches());
    assert_eq!(
        e.changes,
        vec![Change::GpuModel {
            wanted: vec![],
            vram_mib_min: 0,
            offered: vec![],
        }]
    );
    assert!(
        e.changes[0]
            .to_string()
            .contains("set resources.gpu.count to 0")
    );
}

#[test]
fn a_gpu_model_nobody_has_names_the_models_the_market_has() {
    let w = market();
    let e = check(
        &w,
        order_terms().gpus(1, &["h100"]),
        &[(Requirement::GpuModel, 3)],
    );
    assert_eq!(
        e.changes,
        vec![Change::GpuModel {
            wanted: vec!["h100".into()],
            vram_mib_min: 0,
            offered: vec![GpuOffered {
                model: "a100-40gb".into(),
                providers: 2,
            }],
        }]
    );
    assert_eq!(
        e.changes[0].to_string(),
        "no provider has a h100: 2 have a100-40gb"
    );
}

#[test]
fn more_gpus_than_any_provider_has_free_is_a_gpu_count_failure() {
    let w = market();
    let e = check(
        &w,
        order_terms().gpus(2, &["a100"]),
        &[(Requirement::GpuModel, 1), (Requirement::GpuCount, 2)],
    );
    assert!(
        e.changes.contains(&Change::GpuCount { at_most: 1 }),
        "{e:#?}"
    );
}

#[test]
fn more_cpu_memory_or_disk_than_any_provider_has_free_names_the_most_there_is() {
    let w = market();
    let e = check(
        &w,
        order_terms().cpu_millis(64_000),
        &[(Requirement::Cpu, 3)],
    );
    assert_eq!(
        e.changes,
        vec![Change::Cpu {
            at_most_millis: 8_000
        }]
    );
    assert_eq!(
        e.changes[0].to_string(),
        "ask for at most 8 cores (resources.cpu): the most any provider has free"
    );
    let e = check(
        &w,
        order_terms().memory_mib(65_536),
        &[(Requirement::Memory, 3)],
    );
    assert_eq!(
        e.changes,
        vec![Change::Memory {
            at_most_mib: 32_768
        }]
    );
    let e = check(
        &w,
        order_terms().disk_mib(2 << 20),
        &[(Requirement::Disk, 3)],
    );
    assert_eq!(
        e.changes,
        vec![Change::Disk {
            at_most_mib: 1 << 20
        }]
    );
}

#[test]
fn a_region_or_runtime_nobody_offers_names_what_is_offered() {
    let mut w = market();
    let e = check(
        &w,
        order_terms().regions(&["us-east"]),
        &[(Requirement::Region, 3)],
    );
    assert_eq!(
        e.changes,
        vec![Change::Region {
            wanted: vec!["us-east".into()],
            offered: vec!["eu-west".into()],
        }]
    );
    // Every provider moves to process only.
    for i in 0..3 {
        let mut p = w.state.providers[&w.provider_addr(i)].profile.clone();
        p.runtimes = vec![Runtime::Process];
        let tx = w.update_provider(w.provider_addr(i), p);
        w.block(vec![tx]).assert_all_applied();
    }
    let e = check(
        &w,
        order_terms().runtime(Runtime::Docker),
        &[(Requirement::Runtime, 3)],
    );
    assert_eq!(
        e.changes,
        vec![Change::Runtime {
            wanted: Runtime::Docker,
            offered: vec![Runtime::Process],
        }]
    );
}

#[test]
fn a_max_price_below_every_provider_names_the_closest_offer_and_the_price_that_matches() {
    let w = market();
    // One A100 with 1 core and 1 GiB: 1.31 at the cheaper provider, 1.61 at the other.
    let e = check(
        &w,
        order_terms().gpus(1, &["a100"]).max_price_per_hour(usd(1)),
        &[(Requirement::GpuModel, 1), (Requirement::Price, 2)],
    );
    assert!(!e.matches());
    assert_eq!(e.offers[0].provider, w.provider_addr(1));
    assert_eq!(e.offers[0].price_per_hour, micros(1_310_000));
    assert!(!e.offers[0].within_max_price);
    assert_eq!(
        e.changes,
        vec![Change::RaiseMaxPrice {
            to: micros(1_310_000)
        }]
    );
    assert_eq!(
        e.changes[0].to_string(),
        "raise pricing.max_per_hour to 1.31"
    );
    // And that price does match.
    let e = explain(
        &w.state,
        &order_terms()
            .gpus(1, &["a100"])
            .max_price_per_hour(micros(1_310_000))
            .build(),
    );
    assert_eq!(e.matching, 1);
}

#[test]
fn a_network_without_providers_says_so() {
    let w = World::builder().tenants(1).build();
    let e = explain(&w.state, &order_terms().build());
    assert_eq!(e.providers, 0);
    assert_eq!(e.changes, vec![Change::NoProviders]);
}

#[test]
fn busy_resources_count_as_not_free() {
    let mut w = market();
    // Provider 1 (the cheaper A100) takes an order for its GPU.
    let t = w.tenant(0);
    let tx = w.create_order(t, order_terms().gpus(1, &["a100"]));
    let outcome = w.block(vec![tx]);
    let order = outcome.orders_created()[0];
    let p1 = w.provider_addr(1);
    let tx = w.bid(p1, order, micros(1_310_000));
    w.block(vec![tx]).assert_all_applied();
    w.blocks(w.state.params.bid_window_blocks);
    let e = explain(&w.state, &order_terms().gpus(1, &["a100"]).build());
    assert_eq!(e.failing(Requirement::GpuCount), 1, "{e:#?}");
    assert_eq!(e.matching, 1);
    assert_eq!(e.offers[0].price_per_hour, micros(1_610_000));
}

#[test]
fn a_bid_above_the_bidders_posted_price_is_refused_and_changes_nothing() {
    let mut w = market();
    let t = w.tenant(0);
    let tx = w.create_order(t, order_terms().gpus(1, &["a100"]));
    let order = w.block(vec![tx]).orders_created()[0];
    let p1 = w.provider_addr(1);
    let posted = posted_price(&w.state, &w.state.providers[&p1], &w.order(order).terms);
    assert_eq!(posted, Some(micros(1_310_000)));
    let root = w.state.digest();
    let above = w.probe(
        p1,
        gpunet_protocol::Msg::PlaceBid {
            order,
            price_per_hour: micros(1_310_001),
        },
    );
    assert_eq!(
        apply_tx(&mut w.state, &above).map(|_| ()),
        Err(Rejection::BidAbovePostedPrice),
        "one micro-unit above the posted price"
    );
    assert_eq!(w.state.digest(), root, "a refused bid leaves no trace");
    let at = w.bid(p1, order, micros(1_310_000));
    assert!(
        w.submit(at).is_ok(),
        "the posted price itself is a valid bid"
    );
    let below = w.bid(p1, order, micros(1_000_000));
    assert!(w.submit(below).is_ok(), "and so is anything below it");
}

#[test]
fn new_rates_bind_the_next_bid() {
    let mut w = market();
    let p0 = w.provider_addr(0);
    let mut profile = w.state.providers[&p0].profile.clone();
    profile.rates = rates(10_000, 0, 0);
    let tx = w.update_provider(p0, profile);
    w.block(vec![tx]).assert_all_applied();
    let t = w.tenant(0);
    let tx = w.create_order(t, order_terms());
    let order = w.block(vec![tx]).orders_created()[0];
    // 1 core at 0.01: 0.11 is now above.
    let tx = w.bid(p0, order, micros(110_000));
    assert_eq!(w.submit(tx), Err(Rejection::BidAbovePostedPrice));
    let tx = w.bid(p0, order, micros(10_000));
    assert!(w.submit(tx).is_ok());
}
