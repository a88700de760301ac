//! Prices and feasibility before a job is submitted: `gpunet job quote`, the checks `job submit`
//! runs first (the deposit against max price × duration, then whether any provider registered
//! now could run the spec), and the text of the market explainer's answers.
//!
//! Thin over the node: `POST /v1/quote` and `GET /v1/orders/{id}/explain` answer from the
//! ledger's explainer (`gpunet_ledger::explain`); this module only decides what to refuse and
//! how to say it.

use anyhow::{Result, bail};
use gpunet_api::node::ExplainView;
use gpunet_client::NodeClient;
use gpunet_protocol::explain::Offer;
use gpunet_protocol::{Amount, OrderTerms, Rates, deposit_lasts_secs, min_deposit};
use serde::Serialize;

/// A number of seconds as people read a duration: `45s`, `10m`, `2h30m`, `3d4h`.
pub fn duration_text(secs: u64) -> String {
    let (d, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3_600,
        secs % 3_600 / 60,
        secs % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) if s == 0 => format!("{m}m"),
        (0, 0, _) => format!("{m}m{s}s"),
        (0, _, 0) => format!("{h}h"),
        (0, _, _) => format!("{h}h{m}m"),
        (_, 0, _) => format!("{d}d"),
        _ => format!("{d}d{h}h"),
    }
}

/// Refuses terms whose deposit cannot pay the max price for the whole max duration: such a job
/// is paused as soon as the deposit runs out (and ends `insufficient_funds` unless topped up),
/// which for a tiny deposit is within a second of starting.
pub fn check_deposit(terms: &OrderTerms) -> Result<()> {
    let Some(min) = min_deposit(terms.max_price_per_hour, terms.max_duration_secs) else {
        bail!(
            "pricing.max_per_hour {} for limits.max_duration {} is more than any deposit can hold; lower one of them",
            terms.max_price_per_hour,
            duration_text(terms.max_duration_secs)
        );
    };
    if terms.deposit >= min {
        return Ok(());
    }
    let lasts = deposit_lasts_secs(terms.deposit, terms.max_price_per_hour).unwrap_or(0);
    bail!(
        "pricing.deposit {} cannot pay pricing.max_per_hour {} for limits.max_duration {}: at that \
         price the job would be paused for want of money (escrow ran out) after {}. Deposit at least {} (the \
         minimum deposit: max_per_hour × max_duration), or lower max_per_hour or max_duration; \
         `gpunet job quote SPEC` shows what providers ask now. To stop at the deposit on purpose, \
         pass --allow-short-deposit",
        terms.deposit,
        terms.max_price_per_hour,
        duration_text(terms.max_duration_secs),
        duration_text(lasts),
        min
    )
}

/// The checks `job submit` runs before it signs anything: the deposit, then whether a provider
/// registered now could run the terms. Refuses with the explanation unless `submit_anyway`
/// (providers may join later).
pub async fn preflight(
    client: &NodeClient,
    terms: &OrderTerms,
    submit_anyway: bool,
    allow_short_deposit: bool,
) -> Result<()> {
    if !allow_short_deposit {
        check_deposit(terms)?;
    }
    if submit_anyway {
        return Ok(());
    }
    let view = client.quote(terms).await?;
    if view.explanation.matches() {
        return Ok(());
    }
    bail!(
        "not submitted: {}To submit anyway (a provider may join later; the order waits {} and \
         its deposit is refunded if nobody takes it), pass --submit-anyway",
        view.explanation,
        order_lifetime(client).await
    )
}

/// How long an order waits for a provider, as text.
async fn order_lifetime(client: &NodeClient) -> String {
    match (client.params().await, client.status().await) {
        (Ok(p), Ok(s)) => duration_text(p.order_ttl_blocks.saturating_mul(s.block_ms) / 1000),
        _ => "its time-to-live".to_owned(),
    }
}

/// One provider's price for a spec, as `job quote` shows it.
#[derive(Debug, Serialize)]
pub struct QuotedOffer {
    pub provider: String,
    pub region: String,
    pub price_per_hour: Amount,
    pub within_max_price: bool,
    /// What the whole max duration costs at this price.
    pub full_run: Amount,
    /// How long the deposit pays for at this price.
    pub deposit_lasts_secs: u64,
}

/// `gpunet job quote --json`.
#[derive(Debug, Serialize)]
pub struct Quote {
    pub height: u64,
    pub max_price_per_hour: Amount,
    pub max_duration_secs: u64,
    pub deposit: Amount,
    pub min_deposit: Amount,
    /// Every provider that can run the spec now, cheapest first.
    pub offers: Vec<QuotedOffer>,
    pub explanation: gpunet_protocol::explain::Explanation,
}

fn quoted(terms: &OrderTerms, o: &Offer) -> QuotedOffer {
    QuotedOffer {
        provider: o.provider.to_string(),
        region: o.region.clone(),
        price_per_hour: o.price_per_hour,
        within_max_price: o.within_max_price,
        full_run: o
            .price_per_hour
            .mul_div_floor(terms.max_duration_secs, 3_600)
            .unwrap_or(Amount::MAX),
        deposit_lasts_secs: deposit_lasts_secs(terms.deposit, o.price_per_hour).unwrap_or(u64::MAX),
    }
}

/// What the spec's terms cost now at each provider that can run them.
pub async fn quote(client: &NodeClient, terms: &OrderTerms) -> Result<Quote> {
    let view: ExplainView = client.quote(terms).await?;
    Ok(Quote {
        height: view.height,
        max_price_per_hour: terms.max_price_per_hour,
        max_duration_secs: terms.max_duration_secs,
        deposit: terms.deposit,
        min_deposit: view.min_deposit,
        offers: view
            .explanation
            .offers
            .iter()
            .map(|o| quoted(terms, o))
            .collect(),
        explanation: view.explanation,
    })
}

/// `job quote` as text.
pub fn print_quote(name: &str, q: &Quote) {
    println!(
        "{name}: max {} usd/hour for {}, deposit {} usd (at height {})",
        q.max_price_per_hour,
        duration_text(q.max_duration_secs),
        q.deposit,
        q.height
    );
    let short = if q.deposit < q.min_deposit {
        " — your deposit is below it: `job submit` refuses it"
    } else {
        ""
    };
    println!(
        "minimum deposit {} usd (max_per_hour × max_duration){short}",
        q.min_deposit
    );
    if q.offers.is_empty() {
        println!("no provider registered now can run it");
    } else {
        println!(
            "{:<16} {:<12} {:>14} {:>14} {:>14}",
            "PROVIDER", "REGION", "USD/HOUR", "FULL RUN", "DEPOSIT LASTS"
        );
        for o in &q.offers {
            let short_addr: String = o.provider.chars().take(14).collect();
            println!(
                "{:<16} {:<12} {:>14} {:>14} {:>14}{}",
                format!("{short_addr}…"),
                o.region,
                o.price_per_hour.to_string(),
                o.full_run.to_string(),
                duration_text(o.deposit_lasts_secs),
                if o.within_max_price {
                    ""
                } else {
                    "  (above your max price)"
                }
            );
        }
    }
    if !q.explanation.matches() {
        print!("{}", q.explanation);
    }
}

/// A provider's posted rates in one line: `0.10/core-h, 0.01/GiB-h, 2.00/GPU-h (h100 3.50)`.
pub fn rates_text(r: &Rates) -> String {
    let models: Vec<String> = r
        .per_gpu_hour
        .iter()
        .map(|(m, p)| format!("{m} {p}"))
        .collect();
    format!(
        "{}/core-h, {}/GiB-h, {}/GPU-h{}",
        r.per_cpu_core_hour,
        r.per_memory_gib_hour,
        r.default_per_gpu_hour,
        if models.is_empty() {
            String::new()
        } else {
            format!(" ({})", models.join(", "))
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_in_the_largest_units_that_matter() {
        assert_eq!(duration_text(0), "0s");
        assert_eq!(duration_text(45), "45s");
        assert_eq!(duration_text(600), "10m");
        assert_eq!(duration_text(610), "10m10s");
        assert_eq!(duration_text(3_600), "1h");
        assert_eq!(duration_text(9_000), "2h30m");
        assert_eq!(duration_text(86_400 * 3 + 3_600 * 4), "3d4h");
    }

    #[test]
    fn a_deposit_below_max_price_times_duration_is_refused_naming_the_minimum() {
        let mut terms = hello_terms();
        terms.max_price_per_hour = Amount::from_micros(2_500_000);
        terms.max_duration_secs = 3_600;
        terms.deposit = Amount::from_micros(1);
        let err = check_deposit(&terms).expect_err("too small").to_string();
        assert!(err.contains("at least 2.50"), "{err}");
        assert!(err.contains("after 0s"), "{err}");
        terms.deposit = Amount::from_micros(2_500_000);
        assert!(check_deposit(&terms).is_ok());
    }

    fn hello_terms() -> OrderTerms {
        gpunet_protocol::jobspec::JobSpec::parse_yaml(gpunet_devnet::HELLO_SPEC)
            .expect("the bundled spec parses")
            .order_terms()
    }
}
