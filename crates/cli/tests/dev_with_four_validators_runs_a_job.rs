//! `gpunet dev --validators 4` as a process: four `gpunet node start` children on Malachite
//! and a provider agent against validator 0. A job submitted through validator 2 runs to
//! completion, and all four validators have the same state root at the height where it ended.
//! SIGTERM to `gpunet dev` stops every validator.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gpunet::jobs;
use gpunet::progress::Progress;
use gpunet_api::node::LeaseState;
use gpunet_client::{KeyFile, NodeClient};
use gpunet_protocol::LeaseEndReason;
use gpunet_protocol::jobspec::JobSpec;

const HELLO: &str = include_str!("../../../examples/jobs/hello.yaml");
const VALIDATORS: u16 = 4;
/// Generous: the machine running tests may be busy compiling.
const PATIENCE: Duration = Duration::from_secs(120);

/// A base port with `n` consecutive free ports after it, in this test's own range.
fn free_port_run(n: u16, avoid: &[u16]) -> u16 {
    gpunet_devnet::free_port_run(37_000..46_000, n, avoid).expect("free ports")
}

/// Stops `gpunet dev` (SIGTERM, so it stops its validators too; SIGKILL after ten seconds) if
/// the test fails before its own orderly stop.
struct Dev(Option<Child>);

impl Drop for Dev {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            terminate(&c);
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(c.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn terminate(c: &Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &c.id().to_string()])
        .status();
}

async fn root_at(http: &reqwest::Client, api: &str, h: u64) -> Option<String> {
    let v: serde_json::Value = http
        .get(format!("{api}/v1/blocks/{h}"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    Some(v.get("state_root")?.as_str()?.to_owned())
}

fn logs_hint(home: &Path) -> String {
    format!("see {}/node-*/node.log", home.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dev_with_four_validators_runs_a_job_and_they_agree() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("dev");
    let api_base = free_port_run(VALIDATORS, &[]);
    let p2p = free_port_run(
        VALIDATORS,
        &(api_base..api_base + VALIDATORS).collect::<Vec<_>>(),
    );
    let child = Command::new(env!("CARGO_BIN_EXE_gpunet"))
        .args(["dev", "--validators", "4", "--block-ms", "200", "--home"])
        .arg(&home)
        .args(["--listen", &format!("127.0.0.1:{api_base}")])
        .args(["--p2p-port", &p2p.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn gpunet dev");
    let mut dev = Dev(Some(child));
    let apis: Vec<String> = (0..VALIDATORS)
        .map(|i| format!("http://127.0.0.1:{}", api_base + i))
        .collect();

    // Every validator answers.
    let deadline = Instant::now() + PATIENCE;
    for api in &apis {
        while NodeClient::new(api).status().await.is_err() {
            if let Some(c) = dev.0.as_mut() {
                assert!(
                    matches!(c.try_wait(), Ok(None)),
                    "gpunet dev exited early; {}",
                    logs_hint(&home)
                );
            }
            assert!(
                Instant::now() < deadline,
                "{api} never answered; {}",
                logs_hint(&home)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // The job, through validator 2.
    let tenant = KeyFile::load(&home.join("keys").join("tenant.json")).expect("tenant key");
    let client = NodeClient::new(&apis[2]).with_signer(tenant.clone());
    common::wait_for_provider(&client, PATIENCE).await;
    let spec = JobSpec::parse_yaml(HELLO).expect("example parses");
    let followed = tokio::time::timeout(
        PATIENCE,
        jobs::submit_and_follow(&client, &tenant, &spec, true, &Progress::new(true)),
    )
    .await
    .expect("the job finishes in time")
    .expect("the job runs");
    let lease = followed.lease.expect("the job got a lease");
    assert_eq!(lease.state, LeaseState::Ended);
    assert_eq!(lease.end_reason, Some(LeaseEndReason::Completed));

    // The height validator 2 is at once the job ended: every validator reaches it with the
    // same state root.
    let h = client.status().await.expect("status").height;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("http client");
    let mut roots = Vec::new();
    for api in &apis {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(r) = root_at(&http, api, h).await {
                roots.push(r);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{api} never reached height {h}; {}",
                logs_hint(&home)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert!(
        roots.windows(2).all(|w| w[0] == w[1]),
        "state roots differ at height {h}: {roots:?}"
    );

    // Each validator names all four, with their voting power, and itself as the one answering;
    // the dashboard's network page shows them.
    let mut seen = None;
    for (i, api) in apis.iter().enumerate() {
        let status = NodeClient::new(api).status().await.expect("status");
        let v = &status.validators;
        assert_eq!(v.len(), VALIDATORS as usize, "{api}: {v:?}");
        assert!(v.iter().all(|v| v.voting_power > 0), "{api}: {v:?}");
        let me: Vec<usize> = (0..v.len()).filter(|&j| v[j].this_node).collect();
        assert_eq!(me, vec![i], "{api} marks itself, and only itself: {v:?}");
        let names: Vec<(String, gpunet_protocol::Address, u64)> = v
            .iter()
            .map(|v| (v.name.clone(), v.address, v.voting_power))
            .collect();
        match &seen {
            None => seen = Some(names),
            Some(first) => assert_eq!(first, &names, "{api} names other validators"),
        }
        let page = http
            .get(format!("{api}/"))
            .send()
            .await
            .expect("network page")
            .text()
            .await
            .expect("page text");
        for v in v {
            assert!(
                page.contains(&v.address.to_string()),
                "{api}/ lacks {}",
                v.address
            );
        }
        assert!(
            page.contains("(this node)"),
            "{api}/ marks no validator as itself"
        );
    }

    // SIGTERM to `gpunet dev` stops it and every validator.
    let mut c = dev.0.take().expect("still running");
    terminate(&c);
    let deadline = Instant::now() + Duration::from_secs(30);
    while matches!(c.try_wait(), Ok(None)) {
        assert!(Instant::now() < deadline, "gpunet dev did not stop");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for api in &apis {
        assert!(
            NodeClient::new(api).status().await.is_err(),
            "{api} still answers after gpunet dev stopped"
        );
    }
}
