//! Types of the node API.

use gpunet_protocol::explain::Explanation;
use gpunet_protocol::{
    Address, Amount, Balances, Denom, Event, Hash, LeaseEndReason, LeaseId, LeaseResult, OrderId,
    OrderTerms, ProviderProfile, Rejection, Resources,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ErrorBody;

/// `GET /v1/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StatusView {
    pub chain_id: String,
    pub height: u64,
    pub time_ms: u64,
    #[schema(value_type = String)]
    pub state_root: Hash,
    /// Target time between blocks.
    pub block_ms: u64,
    /// Which orderer produces blocks (`solo`).
    pub orderer: String,
    pub mempool_size: usize,
    pub version: String,
    /// The network's validators as this node's genesis names them, with their voting power;
    /// empty on a solo node (it decides every block alone).
    #[serde(default)]
    pub validators: Vec<ValidatorView>,
}

/// One validator of a BFT network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ValidatorView {
    /// Its name in the network's genesis.
    pub name: String,
    /// The address of its consensus key.
    #[schema(value_type = String)]
    pub address: Address,
    pub voting_power: u64,
    /// This is the node answering.
    pub this_node: bool,
}

/// `GET /v1/params`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ParamsView {
    pub height: u64,
    #[schema(value_type = String)]
    pub min_tx_fee: Amount,
    #[schema(value_type = String)]
    pub min_provider_stake: Amount,
    pub protocol_fee_bps: u32,
    pub bid_window_blocks: u64,
    pub order_ttl_blocks: u64,
    pub start_timeout_blocks: u64,
    pub max_bids_per_order: u32,
    pub max_lease_duration_secs: u64,
    /// How often providers send heartbeats, in blocks.
    pub heartbeat_interval_blocks: u64,
    /// Blocks of silence after which a running lease ends `provider_lost`.
    pub liveness_timeout_blocks: u64,
    /// `escrow_low` goes out when the escrow pays for less than this much more, in seconds.
    pub escrow_warning_secs: u64,
    /// Blocks a lease with no escrow left stays paused before it ends `insufficient_funds`.
    pub pause_grace_blocks: u64,
    /// Blocks a reopened order goes without a bid before the providers that failed it may bid
    /// again (0: never).
    pub exclusion_lapse_blocks: u64,
    /// Stake each listed GPU needs (gpn); a provider holds at least
    /// `max(min_provider_stake, stake_per_gpu × GPUs)`.
    #[schema(value_type = String)]
    pub stake_per_gpu: Amount,
    /// Share of its stake a provider loses per wrong run (basis points).
    pub slash_bps: u32,
    /// Share of a slash paid to the harmed tenant (basis points); the rest is burned.
    pub slash_to_tenant_bps: u32,
    /// Blocks a slashed provider takes no new leases for.
    pub jail_blocks: u64,
    /// Verified runs in a GPU class that end a provider's probation there.
    pub probation_runs: u32,
    /// Largest deposit (usd) of an order a provider on probation may take.
    #[schema(value_type = String)]
    pub probation_max_deposit: Amount,
    /// Least spot-check probability (millionths), for a perfect record.
    pub spot_check_min_ppm: u32,
    /// Spot-check probability added as reputation falls to zero (millionths).
    pub spot_check_record_ppm: u32,
    /// Reference price of 1 gpn in usd, for weighing a slash against a run's payment.
    #[schema(value_type = String)]
    pub gpn_reference_price: Amount,
    /// Blocks a verified run's provider has to reveal its digest once asked.
    pub reveal_window_blocks: u64,
    /// Blocks over which reputation evidence loses half its weight.
    pub reputation_half_life_blocks: u64,
    /// Blocks a tenant has to dispute a spot-checked job's unchecked result.
    pub dispute_window_blocks: u64,
    /// Blocks a verifier has to post its verdict on a `compare: tensors` order once asked.
    #[serde(default)]
    pub verdict_window_blocks: u64,
    /// What a verifier is paid for a verdict, from the order's escrow (usd).
    #[serde(default)]
    #[schema(value_type = String)]
    pub verdict_fee: Amount,
    /// Hardware challenges (ADR 0009): the int8 throughput of one unit of each class (a GPU
    /// family, or `cpu` per core) that sizes a challenge and sets its deadline. Empty: no
    /// listing is challenged.
    pub challenge_bands: Vec<BandView>,
    /// Device time a challenge asks of the claimed hardware at its band, at most (ms).
    pub challenge_target_ms: u64,
    /// How much slower than its band a listing may be, in basis points of the band's time.
    pub challenge_slack_bps: u32,
    /// Added to every deadline for the commitment and its transaction (ms).
    pub challenge_allowance_ms: u64,
    /// Entries of a committed product sampled and checked.
    pub challenge_samples: u32,
    /// Blocks to open the sampled entries once drawn.
    pub challenge_open_blocks: u64,
    /// A passed provider is challenged again within this many blocks (while idle).
    pub challenge_interval_blocks: u64,
    /// Blocks unbonded stake (`UnbondStake`, or a provider's leaving) takes to return to the
    /// balance; slashable meanwhile.
    pub unbonding_blocks: u64,
}

/// One hardware class's throughput band.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BandView {
    /// A GPU family (`h100`) or `cpu`.
    pub class: String,
    /// Int8 operations per millisecond one unit (GPU, or core) sustains.
    pub ops_per_ms: u64,
}

/// Where a provider's hardware claim stands (ADR 0009).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HardwareView {
    /// A band covers its listing, so its claim is challenged.
    pub challenged: bool,
    /// Its listing passed its last challenge (or is not challenged): it may bid.
    pub proven: bool,
    pub passed: u64,
    pub failed: u64,
    /// It is due its next challenge from this height (while idle and out of jail).
    pub next_at_height: u64,
    /// The challenge in flight.
    pub challenge: Option<ChallengeView>,
}

/// A hardware challenge in flight: what the provider's agent computes and opens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ChallengeView {
    pub id: u64,
    /// The matrices' seed (hex).
    #[schema(value_type = String)]
    pub seed: gpunet_protocol::Hash,
    /// The matrices are n × n.
    pub n: u32,
    pub issued_height: u64,
    /// The commitment must be in a block whose time is at most this (ms since the epoch).
    pub deadline_ms: u64,
    /// The committed root (hex), once committed.
    #[schema(value_type = Option<String>)]
    pub root: Option<gpunet_protocol::Hash>,
    /// Once sampled: the leaves to open, by `open_until_height`, and those opened so far.
    pub leaves_to_open: Vec<u64>,
    pub opened: Vec<u64>,
    pub open_until_height: Option<u64>,
}

/// `GET /v1/accounts/{address}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AccountView {
    pub height: u64,
    #[schema(value_type = String)]
    pub address: Address,
    #[schema(value_type = Object)]
    pub balances: Balances,
    /// The nonce the account's next transaction must carry (pending ones not counted).
    pub nonce: u64,
    /// Next nonce counting transactions waiting in this node's mempool.
    pub next_nonce: u64,
    /// Provider stake on its way back (gpn), each paid to the balance at its height;
    /// slashable until then.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub unbonding: Vec<gpunet_protocol::Unbonding>,
}

/// Longest `tx_hex` accepted: a transaction at `MAX_TX_BYTES` (16 KiB), hex, with `0x`.
pub const MAX_TX_HEX_CHARS: usize = 2 * gpunet_protocol::MAX_TX_BYTES + 2;

/// `POST /v1/txs` body: a borsh-encoded `SignedTx`, hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SubmitTx {
    /// Hex of the encoded transaction, `0x` optional; at most 32770 characters
    /// ([`MAX_TX_HEX_CHARS`]).
    #[schema(max_length = 32770, pattern = r"^\s*(0x)?[0-9a-fA-F]*\s*$")]
    pub tx_hex: String,
}

/// `POST /v1/txs` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SubmitTxResult {
    #[schema(value_type = String)]
    pub tx_hash: Hash,
}

/// Most transactions one `POST /v1/txs/batch` may carry; a batch with more is refused whole
/// (413, `batch_too_large`).
pub const MAX_TX_BATCH_TXS: usize = 1_000;
/// Largest `POST /v1/txs/batch` body, in bytes (2 MiB: a thousand transactions of up to about
/// 1 KiB each, hex-encoded); a larger body is refused whole (413, `batch_too_large`).
pub const MAX_TX_BATCH_BODY_BYTES: usize = 2 * 1024 * 1024;

/// `POST /v1/txs/batch` body: borsh-encoded `SignedTx`s, hex, admitted in this order as if
/// each were sent to `POST /v1/txs`. At most [`MAX_TX_BATCH_TXS`] of them and
/// [`MAX_TX_BATCH_BODY_BYTES`] of body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SubmitTxBatch {
    /// At most 1000 ([`MAX_TX_BATCH_TXS`]); each as `SubmitTx::tx_hex`.
    #[schema(max_items = 1000)]
    pub txs_hex: Vec<String>,
    /// Set by a validator forwarding transactions its clients sent, with the request signed by
    /// its consensus key ([`crate::auth`] headers): this node does not forward them again, and
    /// gives them the room it keeps for the network's backlog (twice its mempool limits). A
    /// client leaves it out (false), so that its transactions reach every validator; a batch
    /// marked forwarded without a validator's signature is refused (403, `not_a_forwarder`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forwarded: bool,
}

/// What became of one transaction of a batch: exactly one of `tx_hash` (admitted) and `error`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TxBatchItem {
    /// The transaction's hash, when it was admitted to the mempool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub tx_hash: Option<Hash>,
    /// Why it was not admitted: the `ErrorBody` `POST /v1/txs` would have answered, with the
    /// rejection's stable `code` and `name` and a `message`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub error: Option<ErrorBody>,
}

/// `POST /v1/txs/batch` answer: one item per transaction sent, in the same order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SubmitTxBatchResult {
    /// The committed height the admission checks ran against.
    pub height: u64,
    /// How many of `results` were admitted.
    pub admitted: usize,
    pub results: Vec<TxBatchItem>,
}

/// Where a transaction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TxState {
    /// Waiting in the mempool.
    Pending,
    /// In a block and applied.
    Applied,
    /// In a block and rejected: nothing changed.
    Rejected,
    /// Not known to this node.
    Unknown,
}

/// `GET /v1/txs/{hash}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TxView {
    pub height: u64,
    #[schema(value_type = String)]
    pub tx_hash: Hash,
    pub state: TxState,
    /// The block that included it.
    pub block_height: Option<u64>,
    #[schema(value_type = Option<Object>)]
    pub rejection: Option<Rejection>,
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<Event>,
}

/// Entries `GET /v1/accounts/{address}/txs` returns when `limit` is not given.
pub const DEFAULT_ACCOUNT_TXS_LIMIT: usize = 50;
/// Most entries one page of `GET /v1/accounts/{address}/txs` holds; a larger `limit` is
/// refused (400).
pub const MAX_ACCOUNT_TXS_LIMIT: usize = 200;

/// Which way a transfer went, seen from the account whose history lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TransferDirection {
    /// The account signed it (a transfer to itself too).
    Sent,
    /// Another account paid it.
    Received,
}

/// A transfer as one side of it sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TransferView {
    pub direction: TransferDirection,
    /// The other side: the recipient of what was sent, the signer of what was received.
    #[schema(value_type = String)]
    pub counterparty: Address,
    #[schema(value_type = String)]
    pub amount: Amount,
    /// `usd` or `gpn`.
    #[schema(value_type = String)]
    pub denom: Denom,
}

/// One transaction of an account's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AccountTxView {
    #[schema(value_type = String)]
    pub tx_hash: Hash,
    /// The block that included it.
    pub block_height: u64,
    /// Its place in that block, from 0.
    pub position: u32,
    /// The block's time, in milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// What it did: `transfer`, `create_order`, `place_bid`, ….
    pub kind: String,
    #[schema(value_type = String)]
    pub signer: Address,
    /// For a transfer, which way it went, the other side and how much; `null` otherwise.
    pub transfer: Option<TransferView>,
    /// `applied`, or `rejected` (nothing changed; `rejection` says why).
    pub state: TxState,
    #[schema(value_type = Option<Object>)]
    pub rejection: Option<Rejection>,
}

/// `GET /v1/accounts/{address}/txs`: one page of the transactions an account signed, applied
/// or rejected, and the transfers that paid it, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AccountTxList {
    pub height: u64,
    #[schema(value_type = String)]
    pub address: Address,
    pub txs: Vec<AccountTxView>,
    /// The cursor of the next (older) page: pass it back as `after`; `null` when this page
    /// is the last. Opaque: build none yourself.
    #[serde(default)]
    pub next: Option<String>,
    /// The node holds the chain's blocks after this height: 0 when it has every block since
    /// genesis; a node that began from a state snapshot lists nothing older.
    pub base_height: u64,
}

/// A provider as the market sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProviderView {
    #[schema(value_type = String)]
    pub address: Address,
    #[schema(value_type = Object)]
    pub profile: ProviderProfile,
    #[schema(value_type = String)]
    pub stake: Amount,
    pub registered_height: u64,
    #[schema(value_type = Vec<u64>)]
    pub live_leases: Vec<LeaseId>,
    pub free_cpu_millis: u32,
    pub free_memory_mib: u64,
    pub free_gpus: u32,
    pub leases_completed: u64,
    pub leases_failed: u64,
    /// Height of its last heartbeat.
    pub last_heartbeat_height: u64,
    /// It announced it is leaving and takes no new leases.
    pub leaving: bool,
    /// Its reputation now, in millionths: `(good + 1) / (good + bad + 2)` over decaying
    /// evidence (ADR 0010). 500000 for a newcomer.
    pub reputation_ppm: u64,
    /// It takes no new leases before this height (a slash jails it); 0 if never jailed.
    pub jailed_until_height: u64,
    /// Stake it has lost to slashes, in all (gpn).
    #[schema(value_type = String)]
    pub slashed: Amount,
    /// Verified runs per GPU class (`h100`, `cpu`): probation in a class ends at the params'
    /// `probation_runs`.
    pub verified_runs: Vec<ClassRuns>,
    /// Its hardware claim's challenges.
    pub hardware: HardwareView,
    /// The `compare: tensors` orders it was asked to judge (`PostVerdict`) and has not yet.
    #[serde(default)]
    #[schema(value_type = Vec<u64>)]
    pub judging: Vec<OrderId>,
    /// Its record of being there while it held leases.
    #[serde(default)]
    pub uptime: UptimeView,
}

/// A provider's uptime under lease (`gpunet_ledger::uptime`): over its ended leases, the share
/// of the blocks they were held that it was there (not silent past its last proof of life).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UptimeView {
    /// `1 − lost / leased`, in millionths; absent before any of its leases ended.
    pub uptime_ppm: Option<u64>,
    /// Blocks its ended leases were held.
    pub leased_blocks: u64,
    /// Of those, blocks after the last proof of life of the leases it lost by silence.
    pub lost_blocks: u64,
    /// Leases it lost by silence.
    pub outages: u64,
    /// Blocks it has been silent now while holding live leases (0: on time, or idle).
    pub silent_blocks: u64,
}

/// Verified runs of a provider in one GPU class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClassRuns {
    pub class: String,
    pub runs: u32,
    /// Still on probation in this class: small orders only, every spot-checked run checked.
    pub on_probation: bool,
}

/// One run of a verified order that reported success.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RunView {
    #[schema(value_type = u64)]
    pub lease: LeaseId,
    #[schema(value_type = String)]
    pub provider: Address,
    /// The result tag it reported (hex).
    #[schema(value_type = String)]
    pub tag: gpunet_protocol::Hash,
    pub reveal_due: bool,
    pub revealed: bool,
    /// Judged wrong, its provider slashed.
    pub wrong: bool,
}

/// Where a verified order's comparison stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VerificationView {
    /// `running`, `drawing`, `revealing`, `disputable` (the check was not drawn; the tenant
    /// may dispute until `until_height`), or `judging` (`verifier` compares the outputs of a
    /// `compare: tensors` order and posts its verdict by `until_height`).
    pub stage: String,
    /// Runs the comparison needs now.
    pub needed: u8,
    /// The draw's, the reveals', the dispute window's or the verdict's height, when waiting
    /// on one.
    pub until_height: Option<u64>,
    /// The verifier asked, while `judging`.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub verifier: Option<Address>,
    pub runs: Vec<RunView>,
    /// How the comparison ended (`unchecked`, `agreed`, `majority`, `inconclusive`,
    /// `incomplete`), once it has.
    #[serde(default)]
    pub outcome: Option<String>,
}

/// Entries a list endpoint (`GET /v1/providers`, `GET /v1/orders`) returns when `limit` is
/// not given.
pub const DEFAULT_PAGE_LIMIT: usize = 100;
/// Most entries one page of a list endpoint holds; a larger `limit` is refused (400).
pub const MAX_PAGE_LIMIT: usize = 1_000;
/// Most entries one page of a filtered list examines (`GET /v1/orders?tenant=…&state=open`
/// walks the tenant's orders, keeping the open ones): a filter no range lookup answers stops
/// here, so one request costs at most this many reads however few entries match. Such a page
/// may hold fewer than `limit` entries, even none, with `next` set: follow it.
pub const MAX_PAGE_EXAMINED: usize = 10 * MAX_PAGE_LIMIT;

/// `GET /v1/providers`: one page of providers, by address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProviderList {
    pub height: u64,
    pub providers: Vec<ProviderView>,
    /// The cursor of the next page (pass it back as `after`), or `null` when this page is the
    /// last. Opaque: build none yourself.
    #[serde(default)]
    pub next: Option<String>,
}

/// `GET /v1/market/prices`: the price index, computed by the node from the newest leases (not
/// decided on chain). A class is a GPU model (priced per GPU-hour: the lease's price over its
/// GPU count) or `cpu` for leases without GPUs (priced per core-hour); its index is the median
/// of its fills' unit prices (the mean of the middle two for an even count).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PriceIndexView {
    pub height: u64,
    /// How many of the newest leases the index was made of (at most [`PRICE_INDEX_LEASES`]).
    pub leases_read: usize,
    /// Busiest class first, then by name.
    pub classes: Vec<PriceClassView>,
}

/// The most leases the price index reads, newest first.
pub const PRICE_INDEX_LEASES: usize = 200;

/// One class of the price index; prices in usd per unit-hour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PriceClassView {
    /// A GPU model (`h100-80gb`), or `cpu`.
    pub class: String,
    /// `gpu_hour` or `core_hour`.
    pub unit: String,
    /// Leases (fills) of this class among those read.
    pub fills: usize,
    #[schema(value_type = String)]
    pub median: Amount,
    #[schema(value_type = String)]
    pub low: Amount,
    #[schema(value_type = String)]
    pub high: Amount,
    /// The newest fill's unit price, and the height of the block that made its lease.
    #[schema(value_type = String)]
    pub last: Amount,
    pub last_height: u64,
}

/// `GET /v1/providers/{address}/challenges`: a provider's hardware challenge events, newest
/// first, from the node's index (kept since genesis, or since the node's state snapshot).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ChallengeHistoryView {
    pub height: u64,
    #[schema(value_type = String)]
    pub provider: Address,
    pub events: Vec<ChallengeEventView>,
}

/// The most challenge events one request returns.
pub const MAX_CHALLENGE_EVENTS: usize = 100;
/// Challenge events returned when `limit` is left out.
pub const DEFAULT_CHALLENGE_EVENTS: usize = 20;

/// One event of a hardware challenge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ChallengeEventView {
    /// The block it happened in, and its time.
    pub height: u64,
    pub time_ms: u64,
    pub challenge: u64,
    /// `issued`, `passed` or `failed`.
    pub step: String,
    /// Issued: the matrices' size, and the latest block time its commitment may have.
    #[serde(default)]
    pub n: Option<u32>,
    #[serde(default)]
    pub deadline_ms: Option<u64>,
    /// Passed: the height from which the next challenge is due.
    #[serde(default)]
    pub next_height: Option<u64>,
    /// Failed: why, the stake burned (gpn) and the end of the jail.
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub slashed: Option<Amount>,
    #[serde(default)]
    pub jailed_until_height: Option<u64>,
}

/// A bid on an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BidView {
    #[schema(value_type = String)]
    pub provider: Address,
    #[schema(value_type = String)]
    pub price_per_hour: Amount,
    pub height: u64,
}

/// Where an order is: `open`, `leased`, `expired`, `cancelled`, `closed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderState {
    Open,
    Leased,
    Expired,
    Cancelled,
    Closed,
    /// A verified order's runs are being compared (a spot-check draw, reveals).
    Verifying,
}

/// An order with its bids and its lease, if any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OrderView {
    #[schema(value_type = u64)]
    pub id: OrderId,
    #[schema(value_type = String)]
    pub tenant: Address,
    #[schema(value_type = Object)]
    pub terms: OrderTerms,
    pub state: OrderState,
    pub created_height: u64,
    pub created_ms: u64,
    #[schema(value_type = String)]
    pub escrow: Amount,
    pub bids: Vec<BidView>,
    /// The current lease, or the last one once the order closed; none while (re)open.
    pub lease: Option<LeaseView>,
    /// Every attempt, oldest first: the leases this order has had.
    pub attempts: Vec<LeaseView>,
    /// Providers that failed or lost an attempt: they cannot bid on it again.
    #[schema(value_type = Vec<String>)]
    pub excluded: Vec<Address>,
    /// The height the order last (re)opened at.
    pub open_since_height: u64,
    /// No match before this block time (the backoff after a failed attempt).
    pub not_before_ms: u64,
    /// The comparison of a verified order's runs; none for an order without verification.
    #[serde(default)]
    pub verification: Option<VerificationView>,
}

/// `GET /v1/orders`: one page of orders, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OrderList {
    pub height: u64,
    pub orders: Vec<OrderView>,
    /// The cursor of the next page (pass it back as `after`), or `null` when this page is the
    /// last. Opaque: build none yourself. A filtered page may be short, even empty, and still
    /// have a `next` ([`MAX_PAGE_EXAMINED`]).
    #[serde(default)]
    pub next: Option<String>,
}

/// Where a lease is: `pending`, `running`, `ended`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LeaseState {
    Pending,
    Running,
    /// The escrow ran out: the workload is stopped until a top-up (`gpunet job top-up`).
    Paused,
    Ended,
}

/// A lease and its bill so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LeaseView {
    #[schema(value_type = u64)]
    pub id: LeaseId,
    #[schema(value_type = u64)]
    pub order: OrderId,
    #[schema(value_type = String)]
    pub tenant: Address,
    #[schema(value_type = String)]
    pub provider: Address,
    /// The provider's endpoint, where the tenant sends the manifest and reads logs and outputs.
    pub provider_endpoint: String,
    /// Where the lease's service is reached, as its provider recorded it (`PublishEndpoints`):
    /// each published port, and its names through the provider's ingress. Empty for a job that
    /// exposes nothing, or until the provider records them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<String>,
    #[schema(value_type = String)]
    pub price_per_hour: Amount,
    #[schema(value_type = Object)]
    pub resources: Resources,
    pub gpu_slots: Vec<u32>,
    /// Which attempt of its order this lease is, from 1.
    pub attempt: u32,
    pub state: LeaseState,
    #[schema(value_type = Option<String>)]
    pub end_reason: Option<LeaseEndReason>,
    pub created_height: u64,
    pub created_ms: u64,
    pub started_ms: Option<u64>,
    pub ended_ms: Option<u64>,
    /// Block time of the provider's last proof that the workload runs: billing stops here.
    pub last_proof_ms: u64,
    pub last_proof_height: u64,
    /// Since when the lease is paused for lack of escrow.
    pub paused_since_height: Option<u64>,
    pub billed_ms: u64,
    /// Paid by the tenant so far, protocol fee included.
    #[schema(value_type = String)]
    pub paid: Amount,
    #[schema(value_type = String)]
    pub protocol_fee: Amount,
    /// `paid − protocol_fee`.
    #[schema(value_type = String)]
    pub provider_earned: Amount,
    #[schema(value_type = String)]
    pub refund: Amount,
    #[schema(value_type = Option<Object>)]
    pub result: Option<LeaseResult>,
}

/// `GET /v1/orders/{id}/explain` and `POST /v1/quote`: what the market would do with an
/// order's terms now — which providers could run it and at what posted price, how many fail
/// each requirement, and what change would let it match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExplainView {
    /// The state explained.
    pub height: u64,
    /// The order explained; absent for a quote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<u64>)]
    pub order: Option<OrderId>,
    /// The least deposit that pays the max price per hour for the whole max duration (usd).
    #[schema(value_type = String)]
    pub min_deposit: Amount,
    /// `providers`, `matching`, `failing` (per requirement), `offers` (cheapest first), `near`
    /// (closest misses) and `changes`.
    #[schema(value_type = Object)]
    pub explanation: Explanation,
}

/// `POST /v1/quote` body: order terms not yet submitted, as `CreateOrder` carries them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QuoteRequest {
    #[schema(value_type = Object)]
    pub terms: OrderTerms,
}

/// One event on the stream, with where it happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EventEnvelope {
    pub height: u64,
    pub time_ms: u64,
    /// The transaction that caused it; `None` for end-of-block rules.
    #[schema(value_type = Option<String>)]
    pub tx_hash: Option<Hash>,
    #[schema(value_type = Object)]
    pub event: Event,
}

/// `GET /v1/state/{table}/{key}`: one entity of the replicated state at a height, and with
/// `?proof=true` the Merkle proof of it (or of its absence) against that height's state root.
///
/// Check a proof with `gpunet_protocol::merkle::verify_proof(root, key, value, proof)` over the
/// hex-decoded `key_hex`, `value_hex` and `proof_hex`; `value` is only a readable copy of
/// `value_hex` and is not what the proof covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StateEntryView {
    /// The height the value (and proof) is for.
    pub height: u64,
    /// `chain`, `accounts`, `providers`, `orders` or `leases`.
    pub table: String,
    /// Hex of the full state key (table tag, then the entity's key).
    pub key_hex: String,
    /// Whether the entity exists at that height.
    pub found: bool,
    /// Hex of the entity's canonical (borsh) encoding: what the proof covers.
    pub value_hex: Option<String>,
    /// The entity as JSON.
    #[schema(value_type = Option<Object>)]
    pub value: Option<serde_json::Value>,
    /// Hex of the state root after `height`; with `proof=true` only.
    pub root: Option<String>,
    /// Hex of the borsh-encoded sparse Merkle proof; with `proof=true` only.
    pub proof_hex: Option<String>,
}

/// `POST /v1/sync/snapshots`: a state snapshot pinned for a syncing node.
///
/// Read its chunks with `GET /v1/sync/snapshots/{id}/chunk?after=<leaf key hex>&limit=N`
/// (borsh of `gpunet_protocol::merkle::StateChunk`), from the first (no `after`) until one says
/// it is the last. The snapshot is dropped after [`SNAPSHOT_IDLE_SECS`] without a read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SnapshotView {
    /// Opaque id of the snapshot (32 hex digits).
    pub id: String,
    /// The height the snapshot is of.
    pub height: u64,
    /// Hash of the block at that height.
    #[schema(value_type = String)]
    pub block_hash: Hash,
    /// State root after that height: check it against the next block's `prev_state_root`,
    /// under that block's commit certificate, before trusting a chunk.
    #[schema(value_type = String)]
    pub state_root: Hash,
}

/// A snapshot nobody reads for this long is dropped.
pub const SNAPSHOT_IDLE_SECS: u64 = 60;
/// Most snapshots a node serves at once.
pub const MAX_SNAPSHOTS: usize = 4;

/// `GET /v1/sync/decided/{height}`: a decided block with the commit certificate the validators
/// signed for it (a BFT validator's only; a solo node keeps none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DecidedView {
    pub height: u64,
    /// Hex of the borsh-encoded block.
    pub block_hex: String,
    /// Hex of the borsh-encoded commit certificate.
    pub certificate_hex: String,
}

/// `GET /v1/blocks/{height}`: a summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BlockView {
    pub height: u64,
    pub time_ms: u64,
    #[schema(value_type = String)]
    pub block_hash: Hash,
    #[schema(value_type = String)]
    pub state_root: Hash,
    #[schema(value_type = Vec<String>)]
    pub tx_hashes: Vec<Hash>,
}
