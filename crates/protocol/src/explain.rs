//! Why an order does (or does not) match: the market explainer's answer for a set of order
//! terms, computed by `gpunet_ledger::explain` from the providers registered now and what they
//! have free, and served by the node (`GET /v1/orders/{id}/explain`, `POST /v1/quote`).
//!
//! Plain data with a text form for people: how many providers fail each requirement, the offers
//! that fit (cheapest first, with each provider's posted price), the closest providers that do
//! not, and the changes to the terms that would let the order match.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::resources::{cores_text, mib_text};
use crate::{Address, Amount, Capabilities, Runtime};

/// Most offers one explanation lists.
pub const MAX_EXPLAINED_OFFERS: usize = 20;
/// Most near misses one explanation lists.
pub const MAX_EXPLAINED_NEAR: usize = 3;

/// One thing an order asks of a provider, in the order they are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Requirement {
    /// Offers the order's runtime (`process` or `docker`).
    Runtime,
    /// Grants the capabilities the order's containers ask for (ADR 0013).
    Capabilities,
    /// Is in one of the order's regions.
    Region,
    /// Has a GPU of an accepted model with enough memory.
    GpuModel,
    /// Has as many such GPUs free as the order asks for.
    GpuCount,
    /// Has the CPU free.
    Cpu,
    /// Has the memory free.
    Memory,
    /// Has the disk free.
    Disk,
    /// Its posted price for the order is within the order's max price per hour.
    Price,
}

impl Requirement {
    /// Every requirement, in the order they are shown.
    pub const ALL: [Requirement; 9] = [
        Requirement::Runtime,
        Requirement::Capabilities,
        Requirement::Region,
        Requirement::GpuModel,
        Requirement::GpuCount,
        Requirement::Cpu,
        Requirement::Memory,
        Requirement::Disk,
        Requirement::Price,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Requirement::Runtime => "runtime",
            Requirement::Capabilities => "capabilities",
            Requirement::Region => "region",
            Requirement::GpuModel => "gpu model",
            Requirement::GpuCount => "gpu count",
            Requirement::Cpu => "cpu",
            Requirement::Memory => "memory",
            Requirement::Disk => "disk",
            Requirement::Price => "price",
        }
    }
}

/// How many registered providers fail one requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequirementFailures {
    pub requirement: Requirement,
    pub providers: u32,
}

/// A provider that could run the order now, and its posted price for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    pub provider: Address,
    pub region: String,
    /// What the provider's posted rates give for these terms.
    pub price_per_hour: Amount,
    /// Whether that is within the order's max price (the order matches only then).
    pub within_max_price: bool,
}

/// A provider that fails more than the price, with what it fails.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NearMiss {
    pub provider: Address,
    pub region: String,
    /// Its posted price for these terms, where it has GPUs of the kind asked for.
    pub price_per_hour: Option<Amount>,
    pub fails: Vec<Requirement>,
}

/// A change to the order's terms that lets it match (or comes closest), as the job spec says it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    /// No provider is registered at all.
    NoProviders,
    /// Raise `pricing.max_per_hour` to at least `to`.
    RaiseMaxPrice { to: Amount },
    /// No provider offers `wanted`; these runtimes are offered.
    Runtime {
        wanted: Runtime,
        offered: Vec<Runtime>,
    },
    /// No provider grants the capabilities `wanted` (the image may not need them).
    Capabilities { wanted: Capabilities },
    /// No provider is in the order's regions; these regions have providers.
    Region {
        wanted: Vec<String>,
        offered: Vec<String>,
    },
    /// No provider has a GPU of the models asked for (with the memory asked for); these
    /// models are registered, with how many providers have each.
    GpuModel {
        wanted: Vec<String>,
        vram_mib_min: u64,
        offered: Vec<GpuOffered>,
    },
    /// Ask for at most this many GPUs: the most of the kind asked for any provider has free.
    GpuCount { at_most: u32 },
    /// Ask for at most this much CPU: the most any provider has free.
    Cpu { at_most_millis: u32 },
    /// Ask for at most this much memory: the most any provider has free.
    Memory { at_most_mib: u64 },
    /// Ask for at most this much disk: the most any provider has free.
    Disk { at_most_mib: u64 },
}

/// A GPU model on the market and how many providers have it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuOffered {
    pub model: String,
    pub providers: u32,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::NoProviders => write!(
                f,
                "no provider is registered on this network; start one (`gpunet provider start`)"
            ),
            Change::RaiseMaxPrice { to } => write!(f, "raise pricing.max_per_hour to {to}"),
            Change::Runtime { wanted, offered } => {
                let offered: Vec<&str> = offered.iter().map(|r| r.as_str()).collect();
                write!(
                    f,
                    "no provider offers the {} runtime; providers offer: {}{}",
                    wanted.as_str(),
                    list_or_none(&offered),
                    match wanted {
                        Runtime::Docker => " (give run.command without run.image for process)",
                        Runtime::Process => " (give run.image for docker)",
                    }
                )
            }
            Change::Capabilities { wanted } => write!(
                f,
                "no provider grants the {} capabilities (run.capabilities: {}); drop them if \
                 the image runs as its own user, or wait for a provider started with \
                 --allow-capabilities {}",
                wanted.as_str(),
                wanted.as_str(),
                wanted.as_str()
            ),
            Change::Region { wanted, offered } => write!(
                f,
                "no provider is in {}; drop placement.regions or use one of: {}",
                wanted.join(", "),
                list_or_none(offered)
            ),
            Change::GpuModel {
                wanted,
                vram_mib_min,
                offered,
            } => {
                let wanted = if wanted.is_empty() {
                    "GPU".to_owned()
                } else {
                    wanted.join(" or ")
                };
                let memory = if *vram_mib_min > 0 {
                    format!(" with {} of memory", mib_text(*vram_mib_min))
                } else {
                    String::new()
                };
                let offered: Vec<String> = offered
                    .iter()
                    .map(|g| format!("{} have {}", g.providers, g.model))
                    .collect();
                if offered.is_empty() {
                    write!(
                        f,
                        "no provider has a {wanted}{memory}: no provider has any GPU; set resources.gpu.count to 0"
                    )
                } else {
                    write!(
                        f,
                        "no provider has a {wanted}{memory}: {}",
                        offered.join(", ")
                    )
                }
            }
            Change::GpuCount { at_most } => write!(
                f,
                "ask for at most {at_most} GPU(s) (resources.gpu.count): the most any provider has free"
            ),
            Change::Cpu { at_most_millis } => write!(
                f,
                "ask for at most {} cores (resources.cpu): the most any provider has free",
                cores_text(*at_most_millis)
            ),
            Change::Memory { at_most_mib } => write!(
                f,
                "ask for at most {} of memory (resources.memory): the most any provider has free",
                mib_text(*at_most_mib)
            ),
            Change::Disk { at_most_mib } => write!(
                f,
                "ask for at most {} of disk (resources.disk): the most any provider has free",
                mib_text(*at_most_mib)
            ),
        }
    }
}

fn list_or_none<S: AsRef<str>>(items: &[S]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items
            .iter()
            .map(|s| s.as_ref())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The explainer's answer for one set of order terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explanation {
    /// Providers registered now.
    pub providers: u32,
    /// How many of them could run the order now, within its max price.
    pub matching: u32,
    /// For each requirement, how many providers fail it (a provider may fail several).
    pub failing: Vec<RequirementFailures>,
    /// Providers that fit everything but perhaps the price, cheapest first (at most
    /// [`MAX_EXPLAINED_OFFERS`]).
    pub offers: Vec<Offer>,
    /// Providers that fail more than the price, fewest failures first (at most
    /// [`MAX_EXPLAINED_NEAR`]).
    pub near: Vec<NearMiss>,
    /// What to change in the job spec so the order matches; empty when it does.
    pub changes: Vec<Change>,
}

impl Explanation {
    /// Whether some provider could run the order now.
    pub fn matches(&self) -> bool {
        self.matching > 0
    }

    /// How many providers fail `requirement`.
    pub fn failing(&self, requirement: Requirement) -> u32 {
        self.failing
            .iter()
            .find(|f| f.requirement == requirement)
            .map_or(0, |f| f.providers)
    }
}

impl fmt::Display for Explanation {
    /// Several lines for people: the verdict, the failing requirements, the closest offers and
    /// the changes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.matches() {
            writeln!(
                f,
                "{} of {} provider(s) can run it now",
                self.matching, self.providers
            )?;
        } else {
            writeln!(
                f,
                "no provider registered now can run it ({} registered)",
                self.providers
            )?;
        }
        let failing: Vec<String> = self
            .failing
            .iter()
            .filter(|r| r.providers > 0)
            .map(|r| format!("{} fail {}", r.providers, r.requirement.as_str()))
            .collect();
        if !failing.is_empty() {
            writeln!(f, "  requirements: {}", failing.join(", "))?;
        }
        for o in self.offers.iter().take(MAX_EXPLAINED_NEAR) {
            writeln!(
                f,
                "  offer: {} ({}) at {} usd/hour{}",
                o.provider.short(),
                o.region,
                o.price_per_hour,
                if o.within_max_price {
                    ""
                } else {
                    ", above your max price"
                }
            )?;
        }
        for n in &self.near {
            let fails: Vec<&str> = n.fails.iter().map(|r| r.as_str()).collect();
            writeln!(
                f,
                "  closest: {} ({}){} fails {}",
                n.provider.short(),
                n.region,
                n.price_per_hour
                    .map(|p| format!(" at {p} usd/hour"))
                    .unwrap_or_default(),
                fails.join(", ")
            )?;
        }
        for c in &self.changes {
            writeln!(f, "  to match: {c}")?;
        }
        Ok(())
    }
}
