//! A tiny container image for tests of the Docker driver on machines that cannot reach a
//! registry (behind the `test-image` feature, so the agent's tests can use it too).
//!
//! [`ensure_test_image`] copies a few host programs ([`TEST_IMAGE_PROGRAMS`], with `/bin/sh`
//! being the host's shell, e.g. dash) to `/bin` of a root filesystem, adds the shared libraries
//! `ldd` lists for them and the dynamic loader at their host paths, writes it as a tar in memory
//! and imports it into the engine as `gpunet-test/busybox:<hash of the contents>`, unless an
//! image of that name is already there. Same host binaries, same tag, so it is built once per
//! machine.
//!
//! [`ContainerCleanup`] removes a test's containers (found by the `gpunet.workload` label) when
//! dropped, so a failing test leaves none behind.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use bollard::Docker;
use bollard::query_parameters::{
    CreateImageOptions, ListContainersOptions, RemoveContainerOptions,
};
use futures::StreamExt;

use crate::docker::{DEFAULT_DOCKER_SOCKET, LABEL_MANAGED, LABEL_WORKLOAD};

/// Repository of the test image; its tag is a hash of its contents.
pub const TEST_IMAGE_REPO: &str = "gpunet-test/busybox";
/// Host programs copied to the image's `/bin`, looked up in [`HOST_PROGRAM_DIRS`].
pub const TEST_IMAGE_PROGRAMS: &[&str] = &[
    "sh", "cat", "ls", "sleep", "head", "tr", "mount", "id", "hostname", "touch", "mkdir", "mv",
    "chown", "setpriv",
];
/// Where the host programs are looked for, in order.
pub const HOST_PROGRAM_DIRS: &[&str] = &["/usr/bin", "/bin", "/usr/sbin", "/sbin"];
/// Empty directories the image has (mount points and writable places).
const IMAGE_DIRS: &[&str] = &[
    "bin", "dev", "etc", "inputs", "outputs", "proc", "sys", "tmp",
];
/// Seconds the engine has to answer (the import sends a few MiB).
const REQUEST_TIMEOUT_SECS: u64 = 120;

/// Why the test image could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TestImageError {
    #[error("program {name:?} is not in any of {dirs:?} on this host")]
    ProgramNotFound {
        name: &'static str,
        dirs: &'static [&'static str],
    },
    #[error("could not {action} {path:?}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`ldd {program:?}` failed: {detail}")]
    Ldd { program: PathBuf, detail: String },
    #[error("could not reach the docker engine at {socket}: {source}")]
    Connect {
        socket: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("the docker engine could not {action}: {source}")]
    Engine {
        action: &'static str,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("the docker engine could not import the test image: {message}")]
    Import { message: String },
}

/// Connects to the engine the way [`crate::DockerDriver::new`] does.
async fn connect() -> Result<Docker, TestImageError> {
    let socket = std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|host| host.strip_prefix("unix://").map(str::to_owned))
        .unwrap_or_else(|| DEFAULT_DOCKER_SOCKET.to_owned());
    let connect_error = |source| TestImageError::Connect {
        socket: socket.clone(),
        source,
    };
    let docker =
        Docker::connect_with_unix(&socket, REQUEST_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
            .map_err(connect_error)?;
    docker.negotiate_version().await.map_err(connect_error)
}

/// Serialises builds within a test process: parallel imports of one tag would leave all but
/// one image dangling.
static BUILDING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Makes sure the test image exists and returns its reference (`repo:tag`).
pub async fn ensure_test_image() -> Result<String, TestImageError> {
    ensure_test_image_with(&[]).await
}

/// The test image plus `extra` host programs, each copied to `/bin/<name>` with the libraries it
/// needs (e.g. a test server built by cargo). Its tag is the hash of everything in it.
pub async fn ensure_test_image_with(extra: &[(&str, &Path)]) -> Result<String, TestImageError> {
    ensure_image(extra, None, &[]).await
}

/// The test image run as `uid` (its `USER`), as images that are not meant to run as root are
/// (nginx's uid 101, postgres's 999).
pub async fn ensure_test_image_as(uid: u32) -> Result<String, TestImageError> {
    ensure_image(&[], Some(uid), &[]).await
}

/// The test image with an `ENTRYPOINT` and a `CMD`, as most published images have: for jobs
/// that run their image's own entrypoint.
pub async fn ensure_test_image_with_entrypoint(
    entrypoint: &[&str],
    cmd: &[&str],
) -> Result<String, TestImageError> {
    let json = |v: &[&str]| serde_json::to_string(v).expect("a list of strings encodes");
    let changes = [
        format!("ENTRYPOINT {}", json(entrypoint)),
        format!("CMD {}", json(cmd)),
    ];
    ensure_image(&[], None, &changes).await
}

async fn ensure_image(
    extra: &[(&str, &Path)],
    uid: Option<u32>,
    config: &[String],
) -> Result<String, TestImageError> {
    let _building = BUILDING.lock().await;
    let files = collect_files(extra)?;
    let user = uid.map_or(String::new(), |uid| format!("-u{uid}"));
    // The configuration is part of the name, so each variant is built once.
    let configured = if config.is_empty() {
        String::new()
    } else {
        let mut described = ImageFiles::new();
        described.insert(config.join("\n"), (0, Vec::new()));
        format!("-c{:08x}", content_hash(&described) as u32)
    };
    let reference = format!(
        "{TEST_IMAGE_REPO}:{:016x}{user}{configured}",
        content_hash(&files)
    );
    let docker = connect().await?;
    if docker.inspect_image(&reference).await.is_ok() {
        return Ok(reference);
    }
    let tar = build_tar(&files);
    let (repo, tag) = reference
        .rsplit_once(':')
        .expect("the reference was formatted with a tag");
    let options = CreateImageOptions {
        from_src: Some("-".into()),
        repo: Some(repo.into()),
        tag: Some(tag.into()),
        changes: std::iter::once("ENV PATH=/bin".to_owned())
            .chain(uid.map(|uid| format!("USER {uid}")))
            .chain(config.iter().cloned())
            .collect(),
        ..Default::default()
    };
    let mut progress =
        docker.create_image(Some(options), Some(bollard::body_full(tar.into())), None);
    while let Some(item) = progress.next().await {
        let info = item.map_err(|source| TestImageError::Engine {
            action: "import the test image",
            source,
        })?;
        if let Some(message) = info.error_detail.and_then(|d| d.message) {
            return Err(TestImageError::Import { message });
        }
    }
    docker
        .inspect_image(&reference)
        .await
        .map_err(|source| TestImageError::Engine {
            action: "find the imported test image",
            source,
        })?;
    Ok(reference)
}

/// A file of the image: its mode and contents.
type ImageFiles = BTreeMap<String, (u32, Vec<u8>)>;

/// The image's files, keyed by their path inside it (relative, no leading `/`).
fn collect_files(extra: &[(&str, &Path)]) -> Result<ImageFiles, TestImageError> {
    let mut files = ImageFiles::new();
    let mut libraries = BTreeSet::new();
    for &(name, host) in extra {
        files.insert(format!("bin/{name}"), (0o755, read(host)?));
        libraries.extend(shared_libraries(host)?);
    }
    for &name in TEST_IMAGE_PROGRAMS {
        let host = HOST_PROGRAM_DIRS
            .iter()
            .map(|dir| Path::new(dir).join(name))
            .find(|path| path.is_file())
            .ok_or(TestImageError::ProgramNotFound {
                name,
                dirs: HOST_PROGRAM_DIRS,
            })?;
        files.insert(format!("bin/{name}"), (0o755, read(&host)?));
        libraries.extend(shared_libraries(&host)?);
    }
    for library in libraries {
        let inside = library.to_string_lossy().trim_start_matches('/').to_owned();
        files.insert(inside, (0o755, read(&library)?));
    }
    Ok(files)
}

fn read(path: &Path) -> Result<Vec<u8>, TestImageError> {
    std::fs::read(path).map_err(|source| TestImageError::Io {
        action: "read",
        path: path.to_path_buf(),
        source,
    })
}

/// The absolute paths `ldd` lists for `program` (libraries and the loader).
fn shared_libraries(program: &Path) -> Result<Vec<PathBuf>, TestImageError> {
    let output = Command::new("ldd")
        .arg(program)
        .output()
        .map_err(|e| TestImageError::Ldd {
            program: program.to_path_buf(),
            detail: e.to_string(),
        })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        if stdout.contains("not a dynamic executable")
            || stderr.contains("not a dynamic executable")
        {
            return Ok(Vec::new());
        }
        return Err(TestImageError::Ldd {
            program: program.to_path_buf(),
            detail: format!("{}: {stderr}", output.status),
        });
    }
    Ok(parse_ldd(&stdout))
}

/// Paths from `ldd` output: `libc.so.6 => /lib/.../libc.so.6 (0x..)` and
/// `/lib64/ld-linux-x86-64.so.2 (0x..)`; the vDSO has none.
fn parse_ldd(output: &str) -> Vec<PathBuf> {
    output
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            let path = match line.split_once("=>") {
                Some((_, after)) => after.trim(),
                None => line,
            };
            let path = path.split(" (").next()?.trim();
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// FNV-1a over every path, mode and content, in path order.
fn content_hash(files: &ImageFiles) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for &b in bytes {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for (path, (mode, contents)) in files {
        feed(path.as_bytes());
        feed(&[0]);
        feed(&mode.to_le_bytes());
        feed(&(contents.len() as u64).to_le_bytes());
        feed(contents);
    }
    hash
}

/// A ustar archive of the files and every directory they and [`IMAGE_DIRS`] need.
fn build_tar(files: &ImageFiles) -> Vec<u8> {
    let mut dirs: BTreeSet<String> = IMAGE_DIRS.iter().map(|d| (*d).to_owned()).collect();
    for path in files.keys() {
        let mut parent = Path::new(path).parent();
        while let Some(dir) = parent.filter(|d| !d.as_os_str().is_empty()) {
            dirs.insert(dir.to_string_lossy().into_owned());
            parent = dir.parent();
        }
    }
    let mut tar = Vec::new();
    // BTreeSet order puts every parent before its children.
    for dir in &dirs {
        tar.extend_from_slice(&tar_header(&format!("{dir}/"), 0o755, 0, b'5'));
    }
    // /tmp is a tmpfs in the driver's containers, but the image's own copy stays sane too.
    for (path, (mode, contents)) in files {
        tar.extend_from_slice(&tar_header(path, *mode, contents.len() as u64, b'0'));
        tar.extend_from_slice(contents);
        let padding = (512 - contents.len() % 512) % 512;
        tar.extend(std::iter::repeat_n(0u8, padding));
    }
    tar.extend(std::iter::repeat_n(0u8, 1024));
    tar
}

/// One ustar header block; paths over 100 bytes are split into prefix and name.
fn tar_header(path: &str, mode: u32, size: u64, typeflag: u8) -> [u8; 512] {
    let mut header = [0u8; 512];
    let (prefix, name) = if path.len() <= 100 {
        ("", path)
    } else {
        let split = path[..path.len().min(156)]
            .rfind('/')
            .filter(|&at| path.len() - at - 1 <= 100)
            .expect("test image paths fit a ustar header");
        (&path[..split], &path[split + 1..])
    };
    let mut put = |offset: usize, bytes: &[u8]| {
        header[offset..offset + bytes.len()].copy_from_slice(bytes);
    };
    put(0, name.as_bytes());
    put(100, format!("{mode:07o}\0").as_bytes());
    put(108, b"0000000\0");
    put(116, b"0000000\0");
    put(124, format!("{size:011o}\0").as_bytes());
    put(136, b"00000000000\0");
    put(148, b"        ");
    put(156, &[typeflag]);
    put(257, b"ustar\0");
    put(263, b"00");
    put(345, prefix.as_bytes());
    let checksum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    header[148..156].copy_from_slice(format!("{checksum:06o}\0 ").as_bytes());
    header
}

/// Removes (forcibly) every container of `workload_id` this crate's driver created. Blocking:
/// runs on its own thread and runtime, so it also works from `Drop` inside an async test.
pub fn remove_workload_containers(workload_id: &str) {
    let workload_id = workload_id.to_owned();
    let removal = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("no runtime: {e}"))?;
        runtime.block_on(async {
            let docker = connect().await.map_err(|e| e.to_string())?;
            let filters = HashMap::from([(
                "label".to_owned(),
                vec![
                    format!("{LABEL_MANAGED}=true"),
                    format!("{LABEL_WORKLOAD}={workload_id}"),
                ],
            )]);
            let options = ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            };
            let found = docker
                .list_containers(Some(options))
                .await
                .map_err(|e| e.to_string())?;
            for id in found.into_iter().filter_map(|c| c.id) {
                let options = RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                };
                docker
                    .remove_container(&id, Some(options))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            // A workload with companions has a network of its own; none is fine.
            let _ = docker
                .remove_network(&crate::group_network_name(&workload_id))
                .await;
            Ok::<(), String>(())
        })
    });
    match removal.join() {
        Ok(Ok(())) => {}
        Ok(Err(error)) => eprintln!("could not clean up containers: {error}"),
        Err(_) => eprintln!("the container clean-up thread panicked"),
    }
}

/// For a test that needs the Docker Engine: the test image, or `None` (after printing
/// "skipped: `test`: …") when the engine is unreachable — unless `GPUNET_REQUIRE_DOCKER=1`
/// (set by `.ci/run`), when an unreachable engine fails the test instead of skipping it.
/// Panics (a test helper) when the image cannot be built.
pub async fn test_image_or_skip(test: &str) -> Option<String> {
    use crate::Driver;
    if let Err(error) = crate::DockerDriver::new().fingerprint().await {
        if std::env::var("GPUNET_REQUIRE_DOCKER").as_deref() == Ok("1") {
            panic!(
                "the Docker Engine is needed by this test and is unreachable: {error}\n\
                 (GPUNET_REQUIRE_DOCKER=1 is set, so the Docker tests may not be skipped)"
            );
        }
        println!(
            "skipped: {test}: no Docker Engine ({error}); set GPUNET_REQUIRE_DOCKER=1 to make this fail"
        );
        return None;
    }
    Some(
        ensure_test_image()
            .await
            .unwrap_or_else(|e| panic!("could not build the test image: {e}")),
    )
}

/// The process driver with its sandbox (hiding `protected`, as the agent hides its data), or
/// `None` after printing "skipped: `test`: …" where this machine cannot build the sandbox —
/// unless `GPUNET_REQUIRE_SANDBOX=1` (set by `.ci/run`), when that fails the test instead.
pub fn sandboxed_driver_or_skip(
    test: &str,
    protected: Vec<PathBuf>,
) -> Option<crate::ProcessDriver> {
    let driver = crate::ProcessDriver::with_protected_paths(protected);
    if driver.isolation().is_sandboxed() {
        return Some(driver);
    }
    if std::env::var("GPUNET_REQUIRE_SANDBOX").as_deref() == Ok("1") {
        panic!(
            "the process sandbox is needed by this test and cannot be built here: {:?}\n\
             (GPUNET_REQUIRE_SANDBOX=1 is set, so the sandbox tests may not be skipped)",
            driver.isolation()
        );
    }
    println!(
        "skipped: {test}: no sandbox here ({:?}); set GPUNET_REQUIRE_SANDBOX=1 to make this fail",
        driver.isolation()
    );
    None
}

/// Removes a workload's containers when dropped, even when the test fails.
#[derive(Debug)]
pub struct ContainerCleanup {
    workload_id: String,
}

impl ContainerCleanup {
    pub fn new(workload_id: impl Into<String>) -> Self {
        Self {
            workload_id: workload_id.into(),
        }
    }
}

impl Drop for ContainerCleanup {
    fn drop(&mut self) {
        remove_workload_containers(&self.workload_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_lines_yield_library_and_loader_paths() {
        let output = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                      \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\
                      \t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        assert_eq!(
            parse_ldd(output),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
    }

    #[test]
    fn tar_headers_carry_a_valid_checksum_and_long_paths_use_the_prefix() {
        let header = tar_header("bin/sh", 0o755, 10, b'0');
        let stored = std::str::from_utf8(&header[148..154]).expect("octal");
        let mut blank = header;
        blank[148..156].copy_from_slice(b"        ");
        let sum: u32 = blank.iter().map(|&b| u32::from(b)).sum();
        assert_eq!(u32::from_str_radix(stored, 8).expect("octal"), sum);

        let long = format!("{}/{}", "d".repeat(120), "f".repeat(20));
        let header = tar_header(&long, 0o644, 0, b'0');
        assert!(header[..100].starts_with(&[b'f'; 20]));
        assert!(header[345..].starts_with(&[b'd'; 120]));
    }

    #[test]
    fn the_hash_changes_with_any_content() {
        let mut files = ImageFiles::new();
        files.insert("bin/sh".into(), (0o755, b"a".to_vec()));
        let first = content_hash(&files);
        files.insert("bin/sh".into(), (0o755, b"b".to_vec()));
        assert_ne!(first, content_hash(&files));
    }
}
