//! `gpunet bench submit`: submit-to-running latency of the bundled example job on a fresh
//! one-process dev network, jobs one after another, their submit moments spread over a block.

use anyhow::{Context, Result};

use crate::SubmitAndFollow;

/// Milliseconds from submit to running of `jobs_n` jobs, sorted, each submitted and followed by
/// `tenant` on a dev network with `block_ms` blocks in a scratch home.
pub async fn run(jobs_n: usize, block_ms: u64, tenant: &dyn SubmitAndFollow) -> Result<Vec<u64>> {
    use gpunet_devnet::{DevNet, DevOptions};
    let home = std::env::temp_dir().join(format!("gpunet-bench-{}", std::process::id()));
    let net = DevNet::start(DevOptions {
        home: home.clone(),
        listen: "127.0.0.1:0".parse().expect("a literal socket address"),
        block_ms,
    })
    .await?;
    let spec = gpunet_protocol::jobspec::JobSpec::parse_yaml(gpunet_devnet::HELLO_SPEC)
        .map_err(|e| anyhow::anyhow!("bundled example spec: {e}"))?;
    let client = gpunet_client::NodeClient::new(&net.api).with_signer(net.tenant.clone());
    let mut samples = Vec::with_capacity(jobs_n);
    let run = async {
        gpunet_devnet::wait_for_provider(&client).await?;
        for i in 0..jobs_n {
            // Jobs run back to back would all be submitted at the same point of the block
            // cycle; spread the submit moments evenly over one block instead.
            let phase_ms = (i as u64 * block_ms) / jobs_n as u64;
            tokio::time::sleep(std::time::Duration::from_millis(phase_ms)).await;
            let f = tenant
                .submit_and_follow(&client, &net.tenant, &spec)
                .await?;
            let ms = f.submit_to_running_ms.context("the job never ran")?;
            eprintln!("job {}/{jobs_n}: running after {ms} ms", i + 1);
            samples.push(ms);
        }
        anyhow::Ok(())
    }
    .await;
    net.stop().await;
    let _ = std::fs::remove_dir_all(&home);
    run?;
    samples.sort_unstable();
    Ok(samples)
}
