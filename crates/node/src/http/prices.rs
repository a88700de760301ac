//! The price index, shared by `GET /v1/market/prices` and the dashboard's market page.
//!
//! **Fills** are the newest [`PRICE_INDEX_LEASES`] leases, each priced per unit of what it
//! leased: per GPU-hour for a lease with GPUs (its price over its GPU count), in the class of
//! its first GPU's model (from its provider's listing, else the order's first named model,
//! else `gpu`); per core-hour for a lease without, in class `cpu`. **The index** of a class is
//! the median of its fills' unit prices (the mean of the two middle ones for an even count),
//! with their low, high, count and newest: a median, because one odd fill (a tenant that set a
//! high max price against a lone bidder) must not move it. The node computes it for people and
//! scripts from the chain's leases; nothing on chain decides on it. Integers only.

use std::sync::Arc;

use gpunet_api::node::{LeaseView, PRICE_INDEX_LEASES, PriceClassView, PriceIndexView};
use gpunet_ledger::State;
use gpunet_protocol::{Amount, LeaseId, Resources};

use super::{ApiError, App, lookup_in, views};
use crate::chain::Tip;

/// The class of leases without GPUs, priced per core-hour; every other class is a GPU model's,
/// priced per GPU-hour.
pub(crate) const CPU_CLASS: &str = "cpu";

/// Whether `class` is priced per core-hour (else per GPU-hour).
pub(crate) fn per_core(class: &str) -> bool {
    class == CPU_CLASS
}

/// One lease as a market fill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fill {
    pub class: String,
    /// Price per GPU-hour (or per core-hour for `cpu`), in micro-usd.
    pub unit_micros: u64,
    pub height: u64,
}

/// `leases` as fills, leaving out those with nothing to price by.
pub(crate) fn fills_of(state: &State, leases: &[LeaseView]) -> Vec<Fill> {
    leases.iter().filter_map(|l| fill_of(state, l)).collect()
}

/// Lease `l` as a fill, `None` when it leased nothing to price by (no GPU and no CPU).
fn fill_of(state: &State, l: &LeaseView) -> Option<Fill> {
    let listed = state.providers.get(&l.provider).and_then(|p| {
        let slot = *l.gpu_slots.first()?;
        let g = p.profile.capacity.gpus.get(usize::try_from(slot).ok()?)?;
        Some(g.model.clone())
    });
    fill_of_parts(&l.resources, l.price_per_hour, l.created_height, listed)
}

/// A lease of `resources` at `price` per hour made at `height`, whose first GPU its provider
/// lists as model `listed`, as a fill.
fn fill_of_parts(
    resources: &Resources,
    price: Amount,
    height: u64,
    listed: Option<String>,
) -> Option<Fill> {
    let price = u128::from(price.micros());
    let gpus = resources.gpu.count;
    let (class, unit) = if gpus > 0 {
        // A GPU's class is never `cpu` (the per-core class), whatever a listing calls it.
        let class = listed
            .or_else(|| resources.gpu.models.first().cloned())
            .filter(|m| !m.is_empty() && !per_core(m))
            .unwrap_or_else(|| "gpu".to_owned());
        (class, price / u128::from(gpus))
    } else if resources.cpu_millis > 0 {
        (
            CPU_CLASS.to_owned(),
            price * 1000 / u128::from(resources.cpu_millis),
        )
    } else {
        return None;
    };
    Some(Fill {
        class,
        unit_micros: u64::try_from(unit).unwrap_or(u64::MAX),
        height,
    })
}

/// One class's index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IndexRow {
    pub class: String,
    pub fills: usize,
    pub median: u64,
    pub low: u64,
    pub high: u64,
    /// The newest fill's unit price and height.
    pub last: (u64, u64),
}

/// The index of every class among `fills` (any order), busiest class first, then by name.
pub(crate) fn price_index(fills: &[Fill]) -> Vec<IndexRow> {
    let mut classes: Vec<&str> = fills.iter().map(|f| f.class.as_str()).collect();
    classes.sort_unstable();
    classes.dedup();
    let mut rows: Vec<IndexRow> = classes
        .into_iter()
        .filter_map(|class| {
            let of: Vec<&Fill> = fills.iter().filter(|f| f.class == class).collect();
            let mut prices: Vec<u64> = of.iter().map(|f| f.unit_micros).collect();
            prices.sort_unstable();
            let n = prices.len();
            let median = if n % 2 == 1 {
                prices[n / 2]
            } else {
                let (a, b) = (prices[n / 2 - 1], prices[n / 2]);
                u64::try_from((u128::from(a) + u128::from(b)) / 2).unwrap_or(u64::MAX)
            };
            let newest = of.iter().max_by_key(|f| f.height)?;
            Some(IndexRow {
                class: class.to_owned(),
                fills: n,
                median,
                low: *prices.first()?,
                high: *prices.last()?,
                last: (newest.unit_micros, newest.height),
            })
        })
        .collect();
    rows.sort_by(|a, b| b.fills.cmp(&a.fills).then_with(|| a.class.cmp(&b.class)));
    rows
}

/// The newest [`PRICE_INDEX_LEASES`] leases as of `tip`, newest first: point reads of the
/// history, so off the async threads.
pub(crate) async fn newest_leases(app: &App, tip: &Arc<Tip>) -> Result<Vec<LeaseView>, ApiError> {
    let (reader, tip) = (app.clone(), Arc::clone(tip));
    tokio::task::spawn_blocking(move || {
        let state = &tip.state;
        let lookup = lookup_in(&reader, state);
        let mut leases = Vec::new();
        for id in (1..state.next_lease_id).rev().take(PRICE_INDEX_LEASES) {
            if let Some(l) = lookup.lease(LeaseId(id))? {
                leases.push(views::lease_view(state, &l));
            }
        }
        Ok::<_, crate::history::HistoryError>(leases)
    })
    .await
    .map_err(|e| ApiError::store("lease history", e))?
    .map_err(|e| ApiError::store("lease history", e))
}

/// The index's JSON: `rows` as [`price_index`] made them from `leases_read` leases.
pub(crate) fn index_view(height: u64, leases_read: usize, rows: &[IndexRow]) -> PriceIndexView {
    PriceIndexView {
        height,
        leases_read,
        classes: rows
            .iter()
            .map(|r| PriceClassView {
                class: r.class.clone(),
                unit: if per_core(&r.class) {
                    "core_hour"
                } else {
                    "gpu_hour"
                }
                .to_owned(),
                fills: r.fills,
                median: Amount::from_micros(r.median),
                low: Amount::from_micros(r.low),
                high: Amount::from_micros(r.high),
                last: Amount::from_micros(r.last.0),
                last_height: r.last.1,
            })
            .collect(),
    }
}

#[cfg(test)]
impl Fill {
    /// A fill of `class` at `unit_micros`, made at `height` (for tests).
    pub(crate) fn of(class: &str, unit_micros: u64, height: u64) -> Fill {
        Fill {
            class: class.to_owned(),
            unit_micros,
            height,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(class: &str, unit_micros: u64, height: u64) -> Fill {
        Fill::of(class, unit_micros, height)
    }

    #[test]
    fn fills_are_priced_per_gpu_hour_or_per_core_hour_and_a_gpu_is_never_class_cpu() {
        use gpunet_protocol::GpuRequirement;
        let gpus = |models: &[&str]| Resources {
            cpu_millis: 1_000,
            gpu: GpuRequirement {
                count: 2,
                models: models.iter().map(|m| (*m).to_owned()).collect(),
                vram_mib_min: 0,
            },
            ..Resources::default()
        };
        let four = Amount::from_micros(4_000_000);
        let fill = |r: &Resources, listed: Option<&str>| {
            fill_of_parts(r, four, 7, listed.map(str::to_owned)).map(|f| (f.class, f.unit_micros))
        };
        // Per GPU-hour, in the class its provider lists, else the order names, else `gpu`.
        assert_eq!(
            fill(&gpus(&["a100"]), Some("h100-80gb")),
            Some(("h100-80gb".into(), 2_000_000))
        );
        assert_eq!(
            fill(&gpus(&["a100"]), None),
            Some(("a100".into(), 2_000_000))
        );
        assert_eq!(fill(&gpus(&[]), None), Some(("gpu".into(), 2_000_000)));
        // A listing or an order calling a GPU `cpu` cannot pass it off as per core-hour.
        assert_eq!(
            fill(&gpus(&["a100"]), Some("cpu")),
            Some(("gpu".into(), 2_000_000))
        );
        assert_eq!(fill(&gpus(&["cpu"]), None), Some(("gpu".into(), 2_000_000)));
        // No GPU: per core-hour (2.5 cores at 4 usd/h is 1.6 usd per core-hour).
        let cores = Resources {
            cpu_millis: 2_500,
            ..Resources::default()
        };
        assert_eq!(fill(&cores, None), Some(("cpu".into(), 1_600_000)));
        assert_eq!(
            fill(&Resources::default(), None),
            None,
            "nothing to price by"
        );
    }

    #[test]
    fn the_index_is_each_classs_median_with_its_range_and_newest_fill_busiest_first() {
        let fills = [
            fill("h100", 3_000_000, 10),
            fill("a100", 1_000_000, 11),
            fill("h100", 2_000_000, 12),
            fill("h100", 90_000_000, 13),
            fill("a100", 2_000_001, 14),
        ];
        let index = price_index(&fills);
        assert_eq!(
            index,
            vec![
                IndexRow {
                    class: "h100".into(),
                    fills: 3,
                    // The 90 usd outlier moves the range, not the median.
                    median: 3_000_000,
                    low: 2_000_000,
                    high: 90_000_000,
                    last: (90_000_000, 13),
                },
                IndexRow {
                    class: "a100".into(),
                    fills: 2,
                    // Even count: the mean of the middle two, rounded down.
                    median: 1_500_000,
                    low: 1_000_000,
                    high: 2_000_001,
                    last: (2_000_001, 14),
                },
            ]
        );
        assert!(price_index(&[]).is_empty());
    }
}
