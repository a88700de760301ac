//! The market's prices drawn: the fills of the price index ([`crate::http::prices`]) over
//! time, and the order book's depth, as server-rendered SVG beside tables that hold the same
//! numbers (the tables are what a screen reader reads; the charts say so).
//!
//! Integers only: prices are micro-usd, charts are laid out in whole SVG user units.

use gpunet_protocol::Amount;
use maud::{Markup, html};

use crate::http::prices::{Fill, IndexRow};

/// A unit price as people read it: `2.50 USD`.
fn usd(micros: u64) -> String {
    format!("{} USD", Amount::from_micros(micros))
}

/// The chart's drawing area, in SVG user units; it scales to its box's width.
const W: u64 = 640;
const H: u64 = 240;
/// Margins: left for the price axis's labels, bottom for the height axis's.
const LEFT: u64 = 86;
const BOTTOM: u64 = 28;
const TOP: u64 = 12;
const RIGHT: u64 = 16;
/// Classes drawn in a colour of their own; the rest share the last.
const SERIES: usize = 4;

/// `v` in `lo..=hi` mapped onto `from..=to` (either direction), in whole units.
fn scale(v: u64, lo: u64, hi: u64, from: u64, to: u64) -> u64 {
    if hi <= lo {
        return from.midpoint(to);
    }
    let t = u128::from(v.clamp(lo, hi) - lo);
    let span = u128::from(hi - lo);
    let (from, to) = (u128::from(from), u128::from(to));
    let out = if to >= from {
        from + (to - from) * t / span
    } else {
        from - (from - to) * t / span
    };
    u64::try_from(out).unwrap_or(0)
}

/// The fills over time: one dot per fill at (height, unit price), one colour per class (the
/// busiest [`SERIES`] − 1 each their own, the rest together), with each class's median as a
/// dashed line. `index` names the classes in the order [`price_index`] gives.
pub(super) fn fills_chart(fills: &[Fill], index: &[IndexRow]) -> Markup {
    let (Some(min_h), Some(max_h)) = (
        fills.iter().map(|f| f.height).min(),
        fills.iter().map(|f| f.height).max(),
    ) else {
        return html! { p.note { "No fills yet: the chart starts with the first lease." } };
    };
    let max_p = fills
        .iter()
        .map(|f| f.unit_micros)
        .max()
        .unwrap_or(0)
        .max(1);
    // Prices from zero, so the eye reads ratios right; a little headroom above the highest.
    let top_p = max_p.saturating_add(max_p / 10);
    let series_of = |class: &str| {
        index
            .iter()
            .position(|r| r.class == class)
            .unwrap_or(SERIES - 1)
            .min(SERIES - 1)
    };
    let x = |h: u64| scale(h, min_h, max_h, LEFT + 8, W - RIGHT - 8);
    let y = |p: u64| scale(p, 0, top_p, H - BOTTOM, TOP);
    let label = format!(
        "Unit prices of the {} newest fills from block {min_h} to {max_h}; the table below holds the same numbers.",
        fills.len()
    );
    html! {
        figure.chart {
            svg viewBox={ "0 0 " (W) " " (H) } role="img" aria-label=(label) {
                title { (label) }
                // Axes and three price gridlines: zero, half and the top.
                @for p in [0, top_p / 2, top_p] {
                    line.grid x1=(LEFT) x2=(W - RIGHT) y1=(y(p)) y2=(y(p)) {}
                    text.axis x=(LEFT - 6) y=(y(p) + 4) text-anchor="end" { (usd(p)) }
                }
                text.axis x=(LEFT + 8) y=(H - 8) text-anchor="start" { "block " (min_h) }
                text.axis x=(W - RIGHT - 8) y=(H - 8) text-anchor="end" { "block " (max_h) }
                @for (i, row) in index.iter().enumerate().take(SERIES - 1) {
                    line class={ "median s" (i) } x1=(LEFT) x2=(W - RIGHT)
                        y1=(y(row.median)) y2=(y(row.median)) {}
                }
                @for f in fills {
                    circle class={ "dot s" (series_of(&f.class)) } cx=(x(f.height)) cy=(y(f.unit_micros)) r="4" {}
                }
            }
            figcaption {
                @for (i, row) in index.iter().enumerate().take(SERIES) {
                    span class={ "key s" (i) } {
                        @if i == SERIES - 1 && index.len() > SERIES { "others" } @else { (row.class) }
                    }
                }
                " Dots are fills; dashed lines their class's median."
            }
        }
    }
}

/// The order book's depth: for each price, how many open orders would pay at least it
/// (demand, falling as the price rises) and how many bids ask at most it (supply, rising), as
/// two step lines over the prices that occur. `asks` are the open orders' max prices per hour,
/// `bids` the bids' prices, both micro-usd.
pub(super) fn depth_chart(asks: &[u64], bids: &[u64]) -> Markup {
    if asks.is_empty() && bids.is_empty() {
        return html! { p.note { "No open orders: the book is empty." } };
    }
    let mut prices: Vec<u64> = asks.iter().chain(bids).copied().collect();
    prices.sort_unstable();
    prices.dedup();
    let max_p = prices.last().copied().unwrap_or(0).max(1);
    let demand = |p: u64| asks.iter().filter(|&&a| a >= p).count() as u64;
    let supply = |p: u64| bids.iter().filter(|&&b| b <= p).count() as u64;
    let max_n = (asks.len().max(bids.len()) as u64).max(1);
    let x = |p: u64| scale(p, 0, max_p, LEFT + 8, W - RIGHT - 8);
    let y = |n: u64| scale(n, 0, max_n, H - BOTTOM, TOP);
    // Step lines: at each price the count holds until the next price.
    let steps = |count: &dyn Fn(u64) -> u64| {
        let mut pts = String::new();
        let mut prev: Option<u64> = None;
        for &p in &prices {
            let n = count(p);
            if let Some(m) = prev {
                pts.push_str(&format!("{},{} ", x(p), y(m)));
            }
            pts.push_str(&format!("{},{} ", x(p), y(n)));
            prev = Some(n);
        }
        pts.trim_end().to_owned()
    };
    let label = format!(
        "Depth of the book: {} open orders by the most they pay per hour, {} bids by their price; the tables above hold the same numbers.",
        asks.len(),
        bids.len()
    );
    html! {
        figure.chart {
            svg viewBox={ "0 0 " (W) " " (H) } role="img" aria-label=(label) {
                title { (label) }
                @for n in [0, max_n.div_ceil(2), max_n] {
                    line.grid x1=(LEFT) x2=(W - RIGHT) y1=(y(n)) y2=(y(n)) {}
                    text.axis x=(LEFT - 6) y=(y(n) + 4) text-anchor="end" { (n) }
                }
                text.axis x=(LEFT + 8) y=(H - 8) text-anchor="start" { (usd(0)) "/h" }
                text.axis x=(W - RIGHT - 8) y=(H - 8) text-anchor="end" { (usd(max_p)) "/h" }
                @if !asks.is_empty() { polyline class="depth s0" points=(steps(&demand)) {} }
                @if !bids.is_empty() { polyline class="depth s1" points=(steps(&supply)) {} }
            }
            figcaption {
                span class="key s0" { "orders paying at least the price" }
                span class="key s1" { "bids asking at most the price" }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::prices::price_index;

    fn fill(class: &str, unit_micros: u64, height: u64) -> Fill {
        Fill::of(class, unit_micros, height)
    }

    #[test]
    fn scaling_maps_ends_to_ends_either_way_and_a_flat_range_to_the_middle() {
        assert_eq!(scale(0, 0, 100, 10, 110), 10);
        assert_eq!(scale(100, 0, 100, 10, 110), 110);
        assert_eq!(scale(50, 0, 100, 200, 0), 100);
        assert_eq!(scale(7, 7, 7, 0, 100), 50);
        assert_eq!(scale(u64::MAX, 0, u64::MAX, 0, 640), 640);
        assert_eq!(scale(500, 0, 100, 0, 10), 10, "clamped");
    }

    #[test]
    fn charts_draw_one_dot_per_fill_and_a_step_line_per_side_of_the_book() {
        let fills = [fill("h100", 2_000_000, 5), fill("cpu", 40_000, 9)];
        let svg = fills_chart(&fills, &price_index(&fills)).into_string();
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(svg.contains("block 5") && svg.contains("block 9"), "{svg}");
        assert!(svg.contains("role=\"img\""));
        let empty = fills_chart(&[], &[]).into_string();
        assert!(!empty.contains("<svg") && empty.contains("No fills yet"));
        let depth = depth_chart(&[3_000_000, 1_000_000], &[900_000]).into_string();
        assert_eq!(depth.matches("<polyline").count(), 2);
        assert!(depth.contains("2 open orders") && depth.contains("1 bids"));
        assert!(
            depth_chart(&[], &[])
                .into_string()
                .contains("the book is empty")
        );
    }

    #[test]
    fn a_class_name_from_the_chain_is_escaped_in_the_chart() {
        let fills = [fill("<script>x</script>", 1, 1)];
        let svg = fills_chart(&fills, &price_index(&fills)).into_string();
        assert!(!svg.contains("<script>") && svg.contains("&lt;script&gt;"));
    }
}
