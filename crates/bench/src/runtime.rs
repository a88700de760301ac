//! `gpunet bench runtime`: container start overhead of the agent against `docker run`, on the
//! local Docker Engine with the test image (built from host binaries; no registry needed).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};

/// Milliseconds of each, sorted.
#[derive(Debug, Clone, Default)]
pub struct RuntimeFigures {
    /// Parse a manifest, build the workload spec and `DockerDriver::start` until the container
    /// runs, as the agent does once a manifest checked out.
    pub agent_start_ms: Vec<u64>,
    /// `docker run --rm IMAGE /bin/sh -c :`, a whole no-op run.
    pub docker_run_ms: Vec<u64>,
}

/// `runs` of each, one after the other.
pub async fn run(runs: usize) -> Result<RuntimeFigures> {
    use gpunet_runtime::{DockerDriver, Driver, WorkloadSpec};
    let driver = DockerDriver::new();
    driver
        .fingerprint()
        .await
        .context("bench runtime needs a Docker Engine")?;
    let image = gpunet_runtime::testimage::ensure_test_image()
        .await
        .context("building the test image")?;
    let mut spec = gpunet_protocol::jobspec::JobSpec::parse_yaml(gpunet_devnet::HELLO_SPEC)
        .map_err(|e| anyhow::anyhow!("bundled example spec: {e}"))?;
    spec.run.image = Some(image.clone());
    spec.run.command = vec!["/bin/sleep".into(), "30".into()];
    let manifest = spec.manifest_bytes();
    let root = tempfile_dir()?;
    let mut agent_ms = Vec::with_capacity(runs);
    let mut docker_ms = Vec::with_capacity(runs);
    for i in 0..runs {
        let id = format!("bench-{}-{i}", std::process::id());
        let started = Instant::now();
        let parsed = gpunet_protocol::jobspec::JobSpec::from_manifest_bytes(&manifest)
            .map_err(|e| anyhow::anyhow!("manifest: {e}"))?;
        let workload = WorkloadSpec {
            image: parsed.run.image.clone(),
            cpu_millis: parsed.resources().cpu_millis,
            memory_mib: parsed.resources().memory_mib,
            env: parsed.run.env.clone(),
            ..WorkloadSpec::new(id.clone(), parsed.run.command.clone(), root.join(&id))
        };
        let handle = driver.start(&workload).await.context("starting")?;
        agent_ms.push(started.elapsed().as_millis() as u64);
        driver
            .stop(&handle, std::time::Duration::from_millis(100))
            .await
            .context("stopping")?;
        driver.destroy(&handle).await.context("removing")?;

        let started = Instant::now();
        let status = tokio::process::Command::new("docker")
            // The test image has no /bin/true; `sh -c :` is its no-op.
            .args(["run", "--rm", &image, "/bin/sh", "-c", ":"])
            .stdout(std::process::Stdio::null())
            .status()
            .await
            .context("running `docker run`")?;
        anyhow::ensure!(status.success(), "`docker run` failed: {status}");
        docker_ms.push(started.elapsed().as_millis() as u64);
        eprintln!(
            "run {}/{runs}: agent start {} ms, docker run {} ms",
            i + 1,
            agent_ms[i],
            docker_ms[i]
        );
    }
    let _ = std::fs::remove_dir_all(&root);
    agent_ms.sort_unstable();
    docker_ms.sort_unstable();
    Ok(RuntimeFigures {
        agent_start_ms: agent_ms,
        docker_run_ms: docker_ms,
    })
}

/// A fresh, absolute scratch directory under the system temp dir.
fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("gpunet-bench-runtime-{}", std::process::id()));
    gpunet_files::create_private_dir_all(&dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
