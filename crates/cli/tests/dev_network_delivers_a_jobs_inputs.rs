//! End to end on the dev network: a job's `inputs` (a script and a data directory beside the
//! spec file) are packed, sealed to the winning provider, checked against the digest the
//! manifest commits to, and found read-only under `$GPUNET_INPUTS` by the job.

mod common;

use std::time::Duration;

use gpunet::jobs;
use gpunet::progress::Progress;
use gpunet_client::NodeClient;
use gpunet_protocol::LeaseEndReason;

const SPEC: &str = r#"
version: 1
name: with-inputs
kind: batch
run:
  command: [sh, -c, 'sh "$GPUNET_INPUTS/train.sh" > "$GPUNET_OUTPUTS/result.txt"; touch "$GPUNET_INPUTS/x" 2>/dev/null || echo inputs-read-only']
inputs: [train.sh, data/]
resources: { cpu: 1, memory: 256Mi, disk: 64Mi, gpu: { count: 0 } }
pricing: { max_per_hour: "2.50", deposit: "5.00" }
limits: { max_duration: 2m }
outputs: true
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_inputs_reach_it_read_only_with_their_relative_paths() {
    let home = tempfile::tempdir().expect("tempdir");
    let project = tempfile::tempdir().expect("tempdir");
    std::fs::write(project.path().join("job.yaml"), SPEC).expect("writes");
    std::fs::write(
        project.path().join("train.sh"),
        "cd \"$GPUNET_INPUTS\" && cat data/a.csv data/more/b.csv | wc -l\n",
    )
    .expect("writes");
    std::fs::create_dir_all(project.path().join("data/more")).expect("mkdir");
    std::fs::write(project.path().join("data/a.csv"), "1\n2\n").expect("writes");
    std::fs::write(project.path().join("data/more/b.csv"), "3\n").expect("writes");

    let net = common::ready_dev_net(home.path().to_path_buf()).await;

    let spec = jobs::read_spec(&project.path().join("job.yaml")).expect("spec parses");
    let client = NodeClient::new(&net.api).with_signer(net.tenant.clone());
    let followed = tokio::time::timeout(
        Duration::from_secs(90),
        jobs::submit_and_follow_in(
            &client,
            &net.tenant,
            &spec,
            Some(project.path()),
            true,
            &Progress::new(true),
        ),
    )
    .await
    .expect("the job finishes in time")
    .expect("the job runs");
    let lease = followed.lease.expect("the job got a lease");
    assert_eq!(
        lease.end_reason,
        Some(LeaseEndReason::Completed),
        "{lease:?}"
    );

    let (_, files) = jobs::fetch_outputs(&net.tenant, &lease, None)
        .await
        .expect("outputs");
    let result = files
        .iter()
        .find(|(p, _)| p == "result.txt")
        .expect("result.txt");
    assert_eq!(String::from_utf8_lossy(&result.1).trim(), "3");
    let mut log = String::new();
    jobs::read_logs(&net.tenant, &lease, false, |t| log.push_str(t))
        .await
        .expect("logs");
    assert!(log.contains("inputs-read-only"), "{log}");
    net.stop().await;
}

#[test]
fn inputs_that_climb_out_of_the_spec_directory_are_refused_before_submitting() {
    let spec = SPEC.replace("inputs: [train.sh, data/]", "inputs: [../secrets.txt]");
    let error = gpunet_protocol::jobspec::JobSpec::parse_yaml(&spec).expect_err("refused");
    assert!(error.to_string().contains("inputs[0]"), "{error}");
}

#[test]
fn the_bundled_inputs_example_parses_and_packs() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/jobs/inputs-demo");
    let spec = jobs::read_spec(&dir.join("job.yaml")).expect("the example parses");
    let key = gpunet_client::KeyFile::generate();
    let (prepared, archive) =
        jobs::prepare_submission_in(&spec, &key, Some(&dir)).expect("the example packs");
    let archive = archive.expect("the example has inputs");
    let digest = prepared
        .inputs_archive
        .expect("the spec commits to them")
        .digest;
    assert_eq!(digest, gpunet_protocol::Hash::of(&archive));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_inputs_are_refused_by_the_provider_and_the_right_ones_then_run() {
    use gpunet_api::node::LeaseState;
    use gpunet_client::ProviderClient;

    let home = tempfile::tempdir().expect("tempdir");
    let project = tempfile::tempdir().expect("tempdir");
    std::fs::write(project.path().join("job.yaml"), SPEC).expect("writes");
    std::fs::write(
        project.path().join("train.sh"),
        "cat \"$GPUNET_INPUTS/data/a.csv\" | wc -l\n",
    )
    .expect("writes");
    std::fs::create_dir_all(project.path().join("data")).expect("mkdir");
    std::fs::write(project.path().join("data/a.csv"), "1\n2\n").expect("writes");
    let net = common::ready_dev_net(home.path().to_path_buf()).await;
    let reader = NodeClient::new(&net.api);

    // The order commits to the inputs as packed now; then the data changes on disk.
    let spec = jobs::read_spec(&project.path().join("job.yaml")).expect("spec parses");
    let client = NodeClient::new(&net.api).with_signer(net.tenant.clone());
    let progress = Progress::new(true);
    let (order, submitted) =
        jobs::create_order(&client, &net.tenant, &spec, Some(project.path()), &progress)
            .await
            .expect("order created");
    let archive = submitted.inputs.clone().expect("inputs packed");
    std::fs::write(project.path().join("data/a.csv"), "6\n6\n6\n").expect("writes");
    let (_, tampered) =
        jobs::prepare_submission_in(&spec, &net.tenant, Some(project.path())).expect("packs");
    let tampered = tampered.expect("inputs packed");
    assert_ne!(tampered, archive);

    let lease = loop {
        let view = reader.order(order).await.expect("order");
        if let Some(lease) = view.lease {
            break lease;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let provider_key = jobs::provider_encryption_key(&reader, lease.provider)
        .await
        .expect("the provider's key");
    let provider = ProviderClient::new(&lease.provider_endpoint, net.tenant.clone());
    provider
        .deliver_inputs(lease.id, &provider_key, &tampered)
        .await
        .expect("sealed inputs are taken");
    let refused = provider
        .deliver_manifest(lease.id, &provider_key, &submitted.spec.manifest_bytes())
        .await
        .expect_err("tampered inputs refused");
    assert!(
        refused.to_string().contains("inputs_mismatch")
            || refused
                .to_string()
                .contains("not those the manifest commits to"),
        "{refused}"
    );
    assert_eq!(
        reader
            .order(order)
            .await
            .expect("order")
            .lease
            .map(|l| l.state),
        Some(LeaseState::Pending),
        "the lease waits for the right inputs"
    );

    provider
        .deliver_inputs(lease.id, &provider_key, &archive)
        .await
        .expect("inputs taken");
    provider
        .deliver_manifest(lease.id, &provider_key, &submitted.spec.manifest_bytes())
        .await
        .expect("the manifest is taken");
    let followed = tokio::time::timeout(
        Duration::from_secs(60),
        jobs::follow(
            &client,
            &net.tenant,
            order,
            None,
            true,
            std::time::Instant::now(),
            &progress,
        ),
    )
    .await
    .expect("ends in time")
    .expect("follows");
    let lease = followed.lease.expect("leased");
    assert_eq!(lease.end_reason, Some(LeaseEndReason::Completed));
    let (_, files) = jobs::fetch_outputs(&net.tenant, &lease, None)
        .await
        .expect("outputs");
    let result = files
        .iter()
        .find(|(p, _)| p == "result.txt")
        .expect("result");
    assert_eq!(
        String::from_utf8_lossy(&result.1).trim(),
        "2",
        "the committed data ran"
    );
    net.stop().await;
}
