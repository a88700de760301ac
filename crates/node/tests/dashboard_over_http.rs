//! The dashboard a real node serves, read over real HTTP as a browser would (without running
//! its script): every page answers 200 with the chain's data, an unknown id is a 404 page and a
//! malformed one a 400 page (HTML, never a 500), search redirects to the page it names, and a
//! tenant's hostile text shows as text.

use std::path::Path;
use std::time::{Duration, Instant};

use gpunet_api::node::{OrderView, SubmitTxResult, TxState, TxView};
use gpunet_ledger::{Genesis, GenesisAccount, Params};
use gpunet_node::{MempoolLimits, NodeConfig, NodeHandle};
use gpunet_protocol::{
    Address, Amount, Balances, Denom, Hash, Msg, OrderId, OrderTerms, Resources, Runtime, SignedTx,
    TxBody,
};

const CHAIN: &str = "gpunet-dashboard-test";
const PATIENCE: Duration = Duration::from_secs(15);
/// What a hostile tenant or provider writes where the chain keeps free text.
const HOSTILE: &str = "<script>alert(1)</script>";
const HOSTILE_ESCAPED: &str = "&lt;script&gt;alert(1)&lt;/script&gt;";
const TENANT: u8 = 1;
const PROVIDER: u8 = 10;
const GPU_PROVIDER: u8 = 11;

fn key(seed: u8) -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
}

fn addr(seed: u8) -> Address {
    Address::from_key(&key(seed).verifying_key())
}

fn units(n: u64) -> Amount {
    Amount::from_units(n).expect("small amounts fit")
}

fn genesis() -> Genesis {
    Genesis {
        chain_id: CHAIN.into(),
        genesis_time_ms: 1_700_000_000_000,
        params: Params::default(),
        accounts: [TENANT, PROVIDER, GPU_PROVIDER]
            .into_iter()
            .map(|seed| GenesisAccount {
                address: addr(seed),
                balances: Balances {
                    usd: units(1_000),
                    gpn: units(1_000),
                },
            })
            .collect(),
    }
}

async fn start_node(home: &Path) -> NodeHandle {
    gpunet_node::start(NodeConfig {
        home: home.to_path_buf(),
        listen: "127.0.0.1:0".parse().expect("valid address"),
        // Slow enough that the lease, which gets no heartbeats here, stays live for the test.
        block_ms: 100,
        genesis: genesis(),
        mempool: MempoolLimits::default(),
    })
    .await
    .expect("node starts")
}

fn signed(seed: u8, nonce: u64, msg: Msg) -> SignedTx {
    TxBody {
        chain_id: CHAIN.into(),
        signer: addr(seed),
        nonce,
        fee: Params::default().min_tx_fee,
        msg,
    }
    .sign(&key(seed))
}

fn create_order(nonce: u64, name: &str) -> SignedTx {
    signed(
        TENANT,
        nonce,
        Msg::CreateOrder {
            terms: OrderTerms {
                name: name.into(),
                manifest_hash: Hash::of(b"manifest"),
                resources: Resources {
                    cpu_millis: 1_000,
                    memory_mib: 1_024,
                    ..Resources::default()
                },
                regions: Vec::new(),
                runtime: Runtime::Process,
                max_price_per_hour: units(2),
                deposit: units(10),
                max_duration_secs: 3_600,
                recovery: gpunet_protocol::RecoveryPolicy::none(),
                verification: Default::default(),
                capabilities: Default::default(),
            },
        },
    )
}

/// A provider with these GPUs whose containers get at most `capabilities`.
fn register_provider(
    seed: u8,
    gpus: Vec<gpunet_protocol::GpuSlot>,
    capabilities: gpunet_protocol::Capabilities,
) -> SignedTx {
    let profile = gpunet_protocol::ProviderProfile {
        capabilities,
        ..gpunet_testkit::fixtures::provider_profile(4_000, 8_192, gpus.clone())
    };
    signed(
        seed,
        0,
        Msg::RegisterProvider {
            stake: gpunet_ledger::trust::required_stake(&Params::default(), gpus.len()),
            profile,
        },
    )
}

struct Site {
    base: String,
    http: reqwest::Client,
}

/// A page as it came back.
struct Got {
    status: u16,
    content_type: String,
    csp: bool,
    location: Option<String>,
    body: String,
}

impl Site {
    fn new(node: &NodeHandle) -> Site {
        Site {
            base: format!("http://{}", node.api_addr()),
            // Redirects are what search answers; the test looks at them, not past them.
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
        }
    }

    async fn fetch(&self, path: &str) -> Got {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request reaches the node");
        let header = |name: &str| {
            r.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        Got {
            status: r.status().as_u16(),
            content_type: header("content-type").unwrap_or_default(),
            csp: header("content-security-policy").is_some_and(|v| v.contains("script-src 'self'")),
            location: header("location"),
            body: r.text().await.expect("a body"),
        }
    }

    /// A page that must answer `status` in HTML, with the hostile text never raw.
    async fn page(&self, path: &str, status: u16) -> String {
        let got = self.fetch(path).await;
        assert_eq!(got.status, status, "GET {path}: {}", got.body);
        assert!(
            got.content_type.starts_with("text/html"),
            "GET {path}: {}",
            got.content_type
        );
        assert!(got.csp, "GET {path} has a Content-Security-Policy");
        assert!(
            !got.body.contains(HOSTILE),
            "GET {path} shows hostile text unescaped"
        );
        assert!(
            got.body.contains("action=\"/search\""),
            "GET {path}: a search box"
        );
        got.body
    }

    async fn ok(&self, path: &str, expect: &[&str]) -> String {
        let body = self.page(path, 200).await;
        for e in expect {
            assert!(body.contains(e), "GET {path} lacks {e:?}:\n{body}");
        }
        body
    }

    async fn redirects(&self, query: &str, to: &str) {
        let path = format!("/search?q={}", urlencode(query));
        let got = self.fetch(&path).await;
        assert_eq!(got.status, 303, "GET {path}: {}", got.body);
        assert_eq!(got.location.as_deref(), Some(to), "GET {path}");
    }

    async fn submit(&self, tx: &SignedTx) -> Hash {
        let r = self
            .http
            .post(format!("{}/v1/txs", self.base))
            .json(&serde_json::json!({ "tx_hex": hex::encode(tx.encode()) }))
            .send()
            .await
            .expect("request reaches the node");
        let status = r.status();
        let body = r.text().await.expect("a body");
        assert_eq!(status, 202, "submit {:?}: {body}", tx.body.msg.kind());
        serde_json::from_str::<SubmitTxResult>(&body)
            .expect("JSON")
            .tx_hash
    }

    async fn json<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request reaches the node");
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().await.expect("JSON")
    }

    async fn applied(&self, tx: &SignedTx) -> TxView {
        let hash = self.submit(tx).await;
        self.until_applied(hash).await
    }

    /// Waits for a submitted transaction to be applied.
    async fn until_applied(&self, hash: Hash) -> TxView {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let view: TxView = self.json(&format!("/v1/txs/{hash}")).await;
            match view.state {
                TxState::Applied => return view,
                TxState::Pending | TxState::Unknown => {}
                TxState::Rejected => panic!("{hash} rejected: {view:?}"),
            }
            assert!(Instant::now() < deadline, "{hash} never applied");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Enough percent-encoding for the queries used here.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_shows_the_chain_and_errors_are_html_pages_with_the_right_status() {
    let home = tempfile::tempdir().expect("temp dir");
    let node = start_node(home.path()).await;
    let site = Site::new(&node);
    let (tenant, provider) = (addr(TENANT), addr(PROVIDER));

    // A CPU provider that takes job 1, a GPU provider for the census, a hostile job name, an
    // open job, a transfer, and a lease whose provider publishes a hostile endpoint.
    site.applied(&register_provider(
        PROVIDER,
        Vec::new(),
        gpunet_protocol::Capabilities::None,
    ))
    .await;
    let h100 = gpunet_testkit::fixtures::h100();
    site.applied(&register_provider(
        GPU_PROVIDER,
        vec![h100.clone(), h100],
        gpunet_protocol::Capabilities::Baseline,
    ))
    .await;
    site.applied(&create_order(0, HOSTILE)).await;
    let bid = Msg::PlaceBid {
        order: OrderId(1),
        price_per_hour: units(1),
    };
    site.applied(&signed(PROVIDER, 1, bid)).await;
    let deadline = Instant::now() + PATIENCE;
    let lease = loop {
        let order: OrderView = site.json("/v1/orders/1").await;
        if let Some(l) = order.lease {
            break l.id;
        }
        assert!(Instant::now() < deadline, "order 1 never leased");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    site.applied(&signed(PROVIDER, 2, Msg::StartLease { lease }))
        .await;
    let endpoints = vec![format!("http://x.example/{HOSTILE}")];
    site.applied(&signed(
        PROVIDER,
        3,
        Msg::PublishEndpoints { lease, endpoints },
    ))
    .await;
    site.applied(&create_order(1, "train-small")).await;
    let transfer = Msg::Transfer {
        to: addr(2),
        denom: Denom::Usd,
        amount: units(25),
    };
    let sent = site.applied(&signed(TENANT, 2, transfer)).await;
    let sent_height = sent.block_height.expect("in a block");

    // Every page, with what it must show.
    let home_page = site
        .ok(
            "/",
            &[
                CHAIN,
                "Recent blocks",
                "h100-80gb",
                "Utilisation",
                "GPUs by model",
            ],
        )
        .await;
    assert!(home_page.contains("1 running"), "{home_page}");
    // A solo node decides alone: no validator table, and its status names none.
    assert!(home_page.contains("this node decides every block alone"));
    assert!(home_page.contains("ms target") && home_page.contains("ms over the last"));
    let status: gpunet_api::node::StatusView = site.json("/v1/status").await;
    assert!(status.validators.is_empty(), "{:?}", status.validators);
    assert!(home_page.contains("src=\"/assets/live.js\""));
    assert!(home_page.contains("data-live"));
    site.ok(
        "/market",
        &[
            "href=\"/jobs/2\"",
            "train-small",
            &format!("href=\"/leases/{}\"", lease.0),
            "1.00 USD/h",
            "Order book",
            // The lease is a fill: 1 USD/h for one core.
            "Price index",
            "1.00 USD/core-hour",
            "<circle",
            // Job 2 is open: one side of the book's depth.
            "Depth",
            "<polyline class=\"depth s0\"",
        ],
    )
    .await;
    site.ok(
        "/providers",
        &[
            "href=\"/providers/",
            "h100-80gb ×2",
            "(containers: baseline capabilities)",
        ],
    )
    .await;
    site.ok(
        &format!("/providers/{provider}"),
        &[
            "Posted rates",
            "process",
            "Hardware challenges",
            "1 live",
            "Uptime under lease",
            "no lease ended yet",
        ],
    )
    .await;
    let jobs = site
        .ok(
            &format!("/jobs?tenant={tenant}"),
            &["train-small", HOSTILE_ESCAPED, "href=\"/jobs/1\""],
        )
        .await;
    assert!(jobs.contains("label for=\"tenant\""), "a labelled field");
    site.ok("/jobs", &["train-small", "Tenant address"]).await;
    site.ok(
        "/jobs/1",
        &[
            HOSTILE_ESCAPED,
            "gpunet job logs 1",
            &format!("href=\"/leases/{}\"", lease.0),
            "10.00 USD",
        ],
    )
    .await;
    site.ok("/jobs/2", &["open", "train-small"]).await;
    site.ok(
        &format!("/leases/{}", lease.0),
        &[
            "running",
            "1.00 USD/h",
            &format!("http://x.example/{HOSTILE_ESCAPED}"),
            "gpunet job logs 1",
        ],
    )
    .await;
    site.ok(
        &format!("/accounts/{tenant}"),
        &[
            "Balance USD",
            "GPN",
            "sent <span class=\"amount\">25.00 USD</span>",
            "train-small",
            // From the node's index by account: every transaction, back to genesis.
            "back to genesis.",
            &format!("href=\"/txs/{}\"", sent.tx_hash),
            &format!("href=\"/blocks/{sent_height}\""),
            "create_order",
        ],
    )
    .await;
    site.ok(
        &format!("/accounts/{}", addr(2)),
        &[
            "received <span class=\"amount\">25.00 USD</span>",
            &format!("href=\"/txs/{}\"", sent.tx_hash),
        ],
    )
    .await;
    site.ok(
        &format!("/blocks/{sent_height}"),
        &["transfer", &sent.tx_hash.to_string(), "applied"],
    )
    .await;
    site.ok(
        &format!("/txs/{}", sent.tx_hash),
        &[
            "applied",
            "transfer",
            &format!("href=\"/blocks/{sent_height}\""),
        ],
    )
    .await;

    // The assets the pages name.
    let css = site.fetch("/assets/dashboard.css").await;
    assert_eq!(css.status, 200);
    assert!(css.content_type.starts_with("text/css"));
    let js = site.fetch("/assets/live.js").await;
    assert_eq!(js.status, 200);
    assert!(js.content_type.starts_with("text/javascript"));
    assert!(js.body.contains("/v1/events"));

    // Unknown ids: 404 pages.
    let unknown_hash = Hash::of(b"never sent");
    for path in [
        "/jobs/999".to_owned(),
        "/leases/999".to_owned(),
        "/blocks/999999".to_owned(),
        format!("/providers/{}", addr(2)),
        format!("/txs/{unknown_hash}"),
    ] {
        let body = site.page(&path, 404).await;
        assert!(body.contains("Not found"), "{path}: {body}");
    }
    // Malformed ones: 400 pages that say what was wrong.
    let garbled_cursor = format!("/accounts/{tenant}?after=garbage");
    let other_lists_cursor = format!("/accounts/{tenant}?after=o.1");
    for path in [
        "/jobs/abc",
        "/leases/lease-x",
        "/blocks/-1",
        "/accounts/gpn1nope",
        "/providers/nope",
        "/txs/zz",
        "/jobs?tenant=nope",
        &garbled_cursor,
        &other_lists_cursor,
        "/market?after=garbage",
        "/providers?after=o.1",
    ] {
        let body = site.page(path, 400).await;
        assert!(body.contains("Not a valid request"), "{path}: {body}");
    }
    let body = site.page(&garbled_cursor, 400).await;
    assert!(
        body.contains("a cursor is the `next` string of an earlier page"),
        "the page says what a cursor is: {body}"
    );

    // Search: every form redirects to its page.
    site.redirects(&tenant.to_string(), &format!("/accounts/{tenant}"))
        .await;
    site.redirects("job-2", "/jobs/2").await;
    site.redirects("order-2", "/jobs/2").await;
    site.redirects(
        &format!("lease-{}", lease.0),
        &format!("/leases/{}", lease.0),
    )
    .await;
    site.redirects("block-3", "/blocks/3").await;
    site.redirects(&sent.tx_hash.to_string(), &format!("/txs/{}", sent.tx_hash))
        .await;
    // A bare number names a block alone once no job or lease has it.
    site.redirects(&sent_height.to_string(), &format!("/blocks/{sent_height}"))
        .await;
    // ... and several things when they all exist.
    let both = site.ok("/search?q=2", &["names more than one thing"]).await;
    assert!(both.contains("href=\"/jobs/2\"") && both.contains("href=\"/blocks/2\""));
    for nothing in [
        "job-999",
        "lease-999",
        "block-999999",
        "hello",
        &unknown_hash.to_string(),
    ] {
        let path = format!("/search?q={}", urlencode(nothing));
        let body = site.page(&path, 404).await;
        assert!(body.contains("The search box takes"), "{path}: {body}");
    }
    let hostile = format!("/search?q={}", urlencode(HOSTILE));
    let body = site.page(&hostile, 404).await;
    assert!(
        body.contains("&lt;script&gt;"),
        "the query is shown as text"
    );
    site.page("/search?q=", 400).await;

    // The lease ends with outputs: its page shows their public digest, and its provider's
    // uptime counts the lease, attended to the end.
    let mut result =
        gpunet_testkit::world::lease_result(gpunet_protocol::WorkloadOutcome::Succeeded);
    let digest = Hash::of(b"the output listing");
    result.output_digest = Some(digest);
    site.applied(&signed(PROVIDER, 4, Msg::CompleteLease { lease, result }))
        .await;
    site.ok(
        &format!("/leases/{}", lease.0),
        &[
            "ended: completed",
            "listing digest",
            &digest.to_string(),
            "gpunet job output 1",
        ],
    )
    .await;
    let provider_page = site
        .ok(
            &format!("/providers/{provider}"),
            &["Uptime under lease", "100.0 %", "0 were lost to silence"],
        )
        .await;
    assert!(!provider_page.contains("silent for"), "{provider_page}");
    let listed: gpunet_api::node::ProviderView =
        site.json(&format!("/v1/providers/{provider}")).await;
    assert_eq!(listed.uptime.uptime_ppm, Some(1_000_000));
    assert_eq!(listed.uptime.outages, 0);
    assert!(listed.uptime.leased_blocks > 0, "{:?}", listed.uptime);

    // The price index as JSON: the one lease, 1 USD/h for one core.
    let index: gpunet_api::node::PriceIndexView = site.json("/v1/market/prices").await;
    assert_eq!(index.leases_read, 1, "{index:?}");
    assert_eq!(index.classes.len(), 1, "{index:?}");
    let cpu = &index.classes[0];
    assert_eq!(
        (cpu.class.as_str(), cpu.unit.as_str()),
        ("cpu", "core_hour")
    );
    assert_eq!(
        (cpu.median, cpu.low, cpu.high, cpu.last),
        (units(1), units(1), units(1), units(1))
    );
    // No band covers these providers: no challenge, an empty history; bad limits are refused.
    let history: gpunet_api::node::ChallengeHistoryView = site
        .json(&format!("/v1/providers/{provider}/challenges"))
        .await;
    assert!(history.events.is_empty(), "{history:?}");
    for bad in ["limit=0", "limit=101", "limit=ten"] {
        let got = site
            .fetch(&format!("/v1/providers/{provider}/challenges?{bad}"))
            .await;
        assert_eq!(got.status, 400, "{bad}: {}", got.body);
        assert!(got.body.contains("from 1 to 100"), "{bad}: {}", got.body);
    }
    let got = site.fetch("/v1/providers/gpn1nope/challenges").await;
    assert_eq!(got.status, 400, "{}", got.body);

    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_chain_renders_every_list_empty_rather_than_failing() {
    let home = tempfile::tempdir().expect("temp dir");
    let node = start_node(home.path()).await;
    let site = Site::new(&node);
    site.ok("/", &["No providers registered."]).await;
    site.ok(
        "/market",
        &[
            "No open orders.",
            "No leases yet.",
            "No fills yet",
            "the book is empty",
        ],
    )
    .await;
    site.ok("/providers", &["No providers registered."]).await;
    site.ok("/jobs", &["No jobs."]).await;
    site.ok(
        &format!("/accounts/{}", addr(3)),
        &["0.00 USD", "No jobs as a tenant.", "No transactions yet."],
    )
    .await;
    // Block 0 is genesis, not a block anyone can open.
    site.page("/blocks/0", 404).await;
    node.shutdown().await;
}

/// The `after=` cursor of a page's "Older" link, if it has one.
fn older_link(body: &str) -> Option<String> {
    let link = body.find("rel=\"next\"").map(|end| &body[..end])?;
    let start = link.rfind("after=")? + "after=".len();
    let cursor = &link[start..];
    Some(cursor[..cursor.find('"')?].to_owned())
}

/// The transaction hashes a page links to, in the order it lists them.
fn tx_links(body: &str) -> Vec<String> {
    body.split("href=\"/txs/")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accounts_page_lists_its_whole_history_fifty_at_a_time() {
    let home = tempfile::tempdir().expect("temp dir");
    let node = start_node(home.path()).await;
    let site = Site::new(&node);
    let (sender, recipient) = (addr(GPU_PROVIDER), addr(2));

    // 60 transfers, ten to a block or so, over at least six blocks.
    let mut sent = Vec::new();
    for round in 0..6u64 {
        for i in 0..10 {
            let tx = signed(
                GPU_PROVIDER,
                round * 10 + i,
                Msg::Transfer {
                    to: recipient,
                    denom: Denom::Usd,
                    amount: Amount::from_micros(1 + round * 10 + i),
                },
            );
            sent.push(site.submit(&tx).await);
        }
        site.until_applied(*sent.last().expect("sent")).await;
    }
    let newest_first: Vec<String> = sent.iter().rev().map(Hash::to_string).collect();

    for who in [sender, recipient] {
        let first = site
            .ok(
                &format!("/accounts/{who}"),
                &["back to genesis.", "applied"],
            )
            .await;
        let on_first = tx_links(&first);
        assert_eq!(on_first, newest_first[..50], "{who}: the newest 50 first");
        let after = older_link(&first).expect("an Older link");
        let second = site
            .ok(&format!("/accounts/{who}?after={after}"), &[])
            .await;
        assert_eq!(
            tx_links(&second),
            newest_first[50..],
            "{who}: then the rest"
        );
        assert_eq!(older_link(&second), None, "{who}: the last page");
        // The API gives the same page.
        let api: gpunet_api::node::AccountTxList =
            site.json(&format!("/v1/accounts/{who}/txs")).await;
        let api_hashes: Vec<String> = api.txs.iter().map(|t| t.tx_hash.to_string()).collect();
        assert_eq!(api_hashes, on_first);
        assert_eq!(api.next.as_deref(), Some(after.as_str()));
    }
    let recipient_page = site.ok(&format!("/accounts/{recipient}"), &[]).await;
    assert!(recipient_page.contains("received <span class=\"amount\">0.00006 USD</span>"));
    let sender_page = site.ok(&format!("/accounts/{sender}"), &[]).await;
    assert!(sender_page.contains("sent <span class=\"amount\">0.00006 USD</span>"));
    node.shutdown().await;
}
