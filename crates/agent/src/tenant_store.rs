//! A job's own blob store: the S3-compatible bucket its tenant names in the spec's `storage:`
//! section (`gpunet_protocol::storage`). When a manifest names one, the agent builds an
//! [`S3Store`] for that lease and uses it, instead of the operator's store, for the job's
//! checkpoints (upload and restore, the refs of [`crate::checkpoints`]) and, at the end, for
//! its outputs ([`upload_outputs`]), which the tenant then fetches from its own bucket.
//!
//! The tenant is not trusted:
//!
//! - **SSRF.** The endpoint must be `https://` and every address its name resolves to public
//!   ([`gpunet_blobs::guard`]) — checked once here, before anything is sent, so a refusal can be
//!   told to the tenant, and again at every connection by the store's own resolver (a name
//!   that changes its answer later is still refused). An operator may allow `http://` and
//!   private addresses (`gpunet provider start --allow-private-blob-endpoints`; `gpunet dev`
//!   and tests do, for a server on loopback).
//! - **Huge or garbage objects.** The blob store bounds what it reads and checks every digest;
//!   a checkpoint is opened with the job's key, so bytes the tenant's bucket returns that were
//!   not sealed for the job are refused (and the job starts fresh).
//! - **Someone else's bucket.** The agent writes there only with the credentials the tenant
//!   gave; a bucket those credentials may not write refuses the requests.
//!
//! When the manifest names an inputs blob (`inputs_blob`: the tenant's CLI sealed the inputs
//! to the job's key and left them in the bucket), the agent fetches them from there
//! ([`fetch_inputs`]) instead of waiting for the tenant to push them; a blob that is missing,
//! does not open or does not match leaves the lease waiting, as wrong pushed inputs do.
//!
//! Nothing else here fails a job: a refused endpoint, or an upload that fails, is written to the
//! lease's log (the tenant reads it) and the job runs on without checkpoints, its outputs kept
//! the old way (on the agent, fetched from it).
//!
//! The credentials are held in memory only, for as long as the lease runs. They are never
//! written to the lease's record, and the manifest is not kept: an agent restarted under a
//! running workload does not have them, so it stops checkpointing that lease (and says so in
//! its log) and keeps its outputs on the agent.

use gpunet_api::provider::OutputListing;
use gpunet_blobs::{BlobError, BlobStore, RefName, S3Config, S3Store};
use std::path::{Path, PathBuf};

use crate::checkpoints::CheckpointStore;
use gpunet_protocol::inputs::MAX_INPUTS_BYTES;
use gpunet_protocol::jobspec::JobSpec;
use gpunet_protocol::storage::{Endpoint, Storage};
use gpunet_protocol::{EncryptionKey, Hash, LeaseId, OrderId, Purpose, SealContext};

/// Why a job's own store is not used.
#[derive(Debug, thiserror::Error)]
pub enum TenantStoreError {
    #[error(
        "the job's storage endpoint {endpoint} is refused: {why}; the job runs without \
         checkpoints, and its outputs stay on this provider"
    )]
    Refused { endpoint: String, why: String },
    #[error("the job's storage cannot be used: {source}")]
    Config {
        #[source]
        source: Box<BlobError>,
    },
}

/// Builds the store the manifest names. Unless `allow_private`, the endpoint must be
/// `https://` and resolve only to public addresses, and the store it gives connects to public
/// addresses only. Makes no request to the store.
pub async fn open(storage: &Storage, allow_private: bool) -> Result<S3Store, TenantStoreError> {
    open_with_limits(storage, allow_private, gpunet_blobs::Limits::default()).await
}

/// As [`open`], with the store reading no blob larger than `limits.max_blob_bytes` (the job's
/// inputs are fetched through a store bounded by their limit, refused before they are read).
pub async fn open_with_limits(
    storage: &Storage,
    allow_private: bool,
    limits: gpunet_blobs::Limits,
) -> Result<S3Store, TenantStoreError> {
    let endpoint = storage.s3.endpoint.clone();
    let refused = |why: String| TenantStoreError::Refused {
        endpoint: endpoint.clone(),
        why,
    };
    let parsed = Endpoint::parse(&endpoint).map_err(&refused)?;
    if !allow_private {
        if !parsed.https {
            return Err(refused(
                "only https:// endpoints are used (unless the provider's operator allows \
                 private endpoints)"
                    .into(),
            ));
        }
        gpunet_blobs::guard::resolve_public(&parsed.host)
            .await
            .map_err(|e| refused(e.to_string()))?;
    }
    let c = &storage.credentials;
    let value = |v: &Option<gpunet_protocol::storage::SecretString>| {
        v.as_ref().map(|s| s.expose().to_owned())
    };
    let config = S3Config {
        endpoint: Some(endpoint.trim_end_matches('/').to_owned()),
        bucket: storage.s3.bucket.clone(),
        region: storage.s3.region.clone(),
        // The manifest was checked: both are values (`Storage::check_resolved`).
        access_key_id: value(&c.access_key_id).unwrap_or_default(),
        secret_access_key: value(&c.secret_access_key).unwrap_or_default(),
        session_token: value(&c.session_token),
        prefix: storage.s3.prefix.clone(),
        allow_http: allow_private && !parsed.https,
        public_addresses_only: !allow_private,
    };
    S3Store::with_limits(config, limits).map_err(|source| match source {
        BlobError::EndpointRefused { source } => refused(source.to_string()),
        source => TenantStoreError::Config {
            source: Box::new(source),
        },
    })
}

/// Largest sealed inputs blob fetched from a job's bucket, in bytes: the sealed size of an
/// archive of [`MAX_INPUTS_BYTES`] (the archive is unpacked in memory, like pushed inputs).
pub fn max_sealed_inputs_bytes() -> u64 {
    gpunet_protocol::sealed::sealed_len(MAX_INPUTS_BYTES)
}

/// Why a job's inputs could not be taken from its own bucket. Each leaves the lease waiting
/// for its manifest, exactly as inputs that never arrived or did not match do: the workload
/// never starts with other inputs than the manifest commits to.
#[derive(Debug, thiserror::Error)]
pub enum InputsBlobError {
    #[error(
        "the manifest names an inputs blob without the inputs_archive, salt or checkpoint_key \
         it is checked with; submit the job with `gpunet job submit`"
    )]
    Incomplete,
    #[error("{source}")]
    Store {
        #[source]
        source: TenantStoreError,
    },
    #[error(
        "the job's sealed inputs (blob {blob}) could not be fetched from its bucket: {source}; \
         leave the blob `gpunet job submit` uploaded in the bucket (or submit the job again), \
         and check the credentials may read it"
    )]
    Fetch {
        blob: Hash,
        #[source]
        source: Box<BlobError>,
    },
    #[error(
        "the job's sealed inputs (blob {blob}) are {bytes} bytes, over the {max}-byte limit; \
         submit smaller inputs"
    )]
    TooLarge { blob: Hash, bytes: u64, max: u64 },
    #[error(
        "the job's sealed inputs (blob {blob}) do not open with the job's key: {source}; they \
         were not sealed for this job (the object in the bucket was replaced?) — submit the \
         job again so `gpunet job submit` uploads them afresh"
    )]
    Unreadable {
        blob: Hash,
        #[source]
        source: gpunet_protocol::SealError,
    },
    #[error(
        "the inputs in the job's bucket ({got}, {got_bytes} bytes) are not those the manifest \
         commits to ({expected}, {expected_bytes} bytes); submit the job again so `gpunet job \
         submit` uploads them afresh"
    )]
    Mismatch {
        expected: Hash,
        expected_bytes: u64,
        got: Hash,
        got_bytes: u64,
    },
    #[error("cannot {action} the fetched inputs at {path:?}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Fetches the job's sealed inputs (`spec.inputs_blob`) from `store` (the job's own bucket,
/// opened with [`open_with_limits`] bounded by [`max_sealed_inputs_bytes`]) through `scratch`
/// (removed after), opens them with the job's checkpoint key bound to the manifest's salt
/// (`SealContext::job_inputs`), and returns the archive once its digest and size are what
/// `inputs_archive` says. `Ok(None)`: the manifest names no inputs blob.
///
/// Three checks, each enough alone against a bucket owner who swaps the object: the store
/// verifies the sealed blob's digest (the manifest's `inputs_blob`), the seal authenticates
/// the archive to the job's key, and the archive's digest is the manifest's. A provider of
/// another job never holds this job's key, so it cannot open them, and this provider cannot
/// be fed another job's inputs (they do not open with this job's key and salt).
pub async fn fetch_inputs(
    store: &dyn BlobStore,
    spec: &JobSpec,
    scratch: &Path,
) -> Result<Option<Vec<u8>>, InputsBlobError> {
    let Some(blob) = spec.inputs_blob else {
        return Ok(None);
    };
    let (Some(expected), Some(salt), Some(key)) =
        (spec.inputs_archive, spec.salt, spec.checkpoint_key.as_ref())
    else {
        return Err(InputsBlobError::Incomplete);
    };
    store
        .get_to_file(&blob, scratch)
        .await
        .map_err(|source| InputsBlobError::Fetch {
            blob,
            source: Box::new(source),
        })?;
    let io = |action: &'static str| {
        let path = scratch.to_path_buf();
        move |source| InputsBlobError::Io {
            action,
            path,
            source,
        }
    };
    let read = std::fs::metadata(scratch)
        .map_err(io("inspect"))
        .and_then(|meta| {
            let max = max_sealed_inputs_bytes();
            if meta.len() > max {
                return Err(InputsBlobError::TooLarge {
                    blob,
                    bytes: meta.len(),
                    max,
                });
            }
            std::fs::read(scratch).map_err(io("read"))
        });
    let _ = std::fs::remove_file(scratch);
    let sealed = read?;
    let archive =
        gpunet_protocol::sealed::open(&key.secret(), SealContext::job_inputs(&salt), &sealed)
            .map_err(|source| InputsBlobError::Unreadable { blob, source })?;
    let got = Hash::of(&archive);
    if got != expected.digest || archive.len() as u64 != expected.bytes {
        return Err(InputsBlobError::Mismatch {
            expected: expected.digest,
            expected_bytes: expected.bytes,
            got,
            got_bytes: archive.len() as u64,
        });
    }
    Ok(Some(archive))
}

/// `jobs/<chain>/<order>/outputs/<lease>/<leaf>`: what one attempt left as outputs in the
/// job's own store — `listing` (the sealed listing) and `files/<plaintext digest hex>` (each
/// file, sealed).
pub fn outputs_ref(
    chain_id: &str,
    order: OrderId,
    lease: LeaseId,
    leaf: &str,
) -> Result<RefName, gpunet_blobs::RefNameError> {
    RefName::new(&format!(
        "jobs/{chain_id}/{}/outputs/{}/{leaf}",
        order.0, lease.0
    ))
}

/// Why outputs did not reach the job's store.
#[derive(Debug, thiserror::Error)]
pub enum OutputUploadError {
    #[error("could not {action} {path:?}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("could not seal an output: {source}")]
    Seal {
        #[source]
        source: gpunet_protocol::SealError,
    },
    #[error(transparent)]
    RefName(#[from] gpunet_blobs::RefNameError),
    #[error("the job's store refused an output: {source}")]
    Store {
        #[source]
        source: Box<BlobError>,
    },
}

/// Uploads a lease's outputs to the job's store (`job_store`: the store and the chain its refs
/// name), each file sealed to the tenant's `key` exactly
/// as the agent serves it (purpose `Output`, bound to the lease), then the listing, sealed the
/// same way; the listing's digest is the one reported on chain, so the tenant checks what it
/// opens. `blobs_dir` holds the plaintext copies ([`crate::outputs::collect_outputs`]);
/// `scratch` is a directory for the sealed copies, removed as they are sent. Returns the
/// number of files uploaded.
pub async fn upload_outputs(
    job_store: &CheckpointStore,
    order: OrderId,
    lease: LeaseId,
    listing: &OutputListing,
    blobs_dir: &Path,
    key: &EncryptionKey,
    scratch: &Path,
) -> Result<usize, OutputUploadError> {
    let ctx = SealContext {
        purpose: Purpose::Output,
        lease,
    };
    gpunet_files::create_private_dir_all(scratch).map_err(|source| OutputUploadError::Io {
        action: "create",
        path: scratch.to_path_buf(),
        source,
    })?;
    let (store, chain_id) = (&job_store.store, job_store.chain_id.as_str());
    let mut sent = 0;
    for file in &listing.files {
        let name = outputs_ref(chain_id, order, lease, &format!("files/{}", file.digest))?;
        // Dedup within the job: a file with the same contents was sent before.
        if store.get_ref(&name).await.map_err(store_error)?.is_some() {
            continue;
        }
        let src = crate::outputs::blob_path(blobs_dir, &file.digest);
        let sealed = scratch.join(file.digest.to_hex());
        let (key, s, d) = (*key, src.clone(), sealed.clone());
        tokio::task::spawn_blocking(move || seal_file(&key, ctx, &s, &d))
            .await
            .map_err(|e| OutputUploadError::Io {
                action: "seal",
                path: src.clone(),
                source: std::io::Error::other(e),
            })??;
        let put = store.put_file(&sealed).await;
        let _ = std::fs::remove_file(&sealed);
        let blob = put.map_err(store_error)?;
        store
            .set_ref(&name, &blob.digest)
            .await
            .map_err(store_error)?;
        sent += 1;
    }
    let json = serde_json::to_vec(listing).map_err(|e| OutputUploadError::Io {
        action: "encode",
        path: PathBuf::from("listing"),
        source: std::io::Error::other(e),
    })?;
    let sealed = gpunet_client::sealing::seal(key, ctx, &json)
        .map_err(|source| OutputUploadError::Seal { source })?;
    let blob = store.put_bytes(&sealed).await.map_err(store_error)?;
    let name = outputs_ref(chain_id, order, lease, "listing")?;
    store
        .set_ref(&name, &blob.digest)
        .await
        .map_err(store_error)?;
    Ok(sent)
}

fn store_error(source: BlobError) -> OutputUploadError {
    OutputUploadError::Store {
        source: Box::new(source),
    }
}

/// Seals the file at `src` into a new file at `dest` (0600), chunk by chunk, so a large output
/// is never whole in memory. Blocking.
fn seal_file(
    key: &EncryptionKey,
    ctx: SealContext,
    src: &Path,
    dest: &Path,
) -> Result<(), OutputUploadError> {
    use std::io::{Read, Write};
    let io = |action: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| OutputUploadError::Io {
            action,
            path,
            source,
        }
    };
    let (mut sealer, header) = gpunet_client::sealing::sealer(key, ctx)
        .map_err(|source| OutputUploadError::Seal { source })?;
    let mut input = std::fs::File::open(src).map_err(io("open", src))?;
    let _ = std::fs::remove_file(dest);
    let mut out = gpunet_files::create_private_new(dest).map_err(io("create", dest))?;
    out.write_all(&header).map_err(io("write", dest))?;
    let chunk_bytes = gpunet_protocol::sealed::SEALED_CHUNK_BYTES;
    let read_chunk = |input: &mut std::fs::File| -> std::io::Result<Vec<u8>> {
        let mut buf = vec![0u8; chunk_bytes];
        let mut filled = 0;
        while filled < buf.len() {
            let n = input.read(&mut buf[filled..])?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        buf.truncate(filled);
        Ok(buf)
    };
    let mut chunk = read_chunk(&mut input).map_err(io("read", src))?;
    loop {
        let ahead = if chunk.len() == chunk_bytes {
            read_chunk(&mut input).map_err(io("read", src))?
        } else {
            Vec::new()
        };
        let last = ahead.is_empty();
        out.write_all(&sealer.seal_chunk(&chunk, last))
            .map_err(io("write", dest))?;
        if last {
            break;
        }
        chunk = ahead;
    }
    out.sync_all().map_err(io("sync", dest))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpunet_protocol::storage::{Credentials, S3Bucket, SecretString};

    fn storage(endpoint: &str) -> Storage {
        Storage {
            s3: S3Bucket {
                endpoint: endpoint.into(),
                bucket: "b-1".into(),
                region: "us-east-1".into(),
                prefix: String::new(),
            },
            credentials: Credentials {
                access_key_id: Some(SecretString::new("AKIAKEY".into())),
                secret_access_key: Some(SecretString::new("s3cr3t-value".into())),
                ..Credentials::default()
            },
        }
    }

    #[tokio::test]
    async fn a_private_or_plain_http_endpoint_is_refused_unless_the_operator_allows_it() {
        for endpoint in [
            "http://127.0.0.1:9000",
            "https://127.0.0.1:9000",
            "https://localhost",
            "https://169.254.169.254",
            "https://[::1]",
            "https://10.1.2.3",
        ] {
            let err = open(&storage(endpoint), false).await.expect_err(endpoint);
            let text = err.to_string();
            assert!(
                matches!(err, TenantStoreError::Refused { .. }),
                "{endpoint}: {text}"
            );
            assert!(!text.contains("s3cr3t"), "{text}");
            // The operator of a test network allows them.
            open(&storage(endpoint), true).await.expect(endpoint);
        }
    }

    /// A submitted spec with inputs in its own bucket, as `gpunet job submit` makes it, and
    /// the sealed blob it names, stored in `store`.
    async fn submitted(store: &dyn BlobStore, archive: &[u8]) -> (JobSpec, Vec<u8>) {
        use gpunet_protocol::jobspec::{CheckpointKey, InputsArchive, Salt};
        let mut spec = JobSpec::parse_yaml(
            "version: 1\nname: t\nrun: { command: [\"true\"] }\nresources: { cpu: 1, memory: 64Mi, disk: 64Mi }\npricing: { max_per_hour: \"1.00\", deposit: \"1.00\" }\nlimits: { max_duration: 1m }\ninputs: [data.txt]\nstorage:\n  s3: { endpoint: https://s3.example.com, bucket: b-1, region: us-east-1 }\n  credentials: { access_key_id: AKIAKEY, secret_access_key: s3cr3t-value }\n",
        )
        .expect("a spec");
        spec.salt = Some(Salt([7; 32]));
        spec.checkpoint_key = Some(CheckpointKey::from_bytes(
            gpunet_client::sealing::random_secret().to_bytes(),
        ));
        spec.inputs_archive = Some(InputsArchive {
            digest: Hash::of(archive),
            bytes: archive.len() as u64,
        });
        let key = spec.checkpoint_key.as_ref().expect("key").public();
        let ctx = SealContext::job_inputs(&Salt([7; 32]));
        let sealed = gpunet_client::sealing::seal(&key, ctx, archive).expect("seals");
        let blob = store.put_bytes(&sealed).await.expect("stored");
        spec.inputs_blob = Some(blob.digest);
        spec.validate().expect("a valid manifest");
        (spec, sealed)
    }

    #[tokio::test]
    async fn inputs_from_the_bucket_open_only_for_their_job_and_only_as_committed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = gpunet_blobs::LocalStore::open(&dir.path().join("store")).expect("store");
        let scratch = dir.path().join("scratch");
        let (spec, _) = submitted(&store, b"the archive").await;
        let got = fetch_inputs(&store, &spec, &scratch)
            .await
            .expect("fetched");
        assert_eq!(got.as_deref(), Some(&b"the archive"[..]));
        assert!(!scratch.exists(), "the scratch file is removed");

        // Another job's blob (sealed to its own key) named in this job's manifest: it does not
        // open — a provider cannot be fed another job's inputs, nor open them.
        let (other, _) = submitted(&store, b"the archive").await;
        let mut fed = spec.clone();
        fed.inputs_blob = other.inputs_blob;
        let err = fetch_inputs(&store, &fed, &scratch)
            .await
            .expect_err("refused");
        assert!(matches!(err, InputsBlobError::Unreadable { .. }), "{err}");
        assert!(
            err.to_string().contains("do not open with the job's key")
                && err.to_string().contains("submit the job again"),
            "{err}"
        );

        // Sealed for this job but not the archive the manifest commits to (the tenant's
        // bucket holds other inputs under a manifest that names them): refused.
        let key = spec.checkpoint_key.as_ref().expect("key").public();
        let salt = spec.salt.expect("salt");
        let swapped =
            gpunet_client::sealing::seal(&key, SealContext::job_inputs(&salt), b"other inputs")
                .expect("seals");
        let mut swapped_spec = spec.clone();
        swapped_spec.inputs_blob = Some(store.put_bytes(&swapped).await.expect("stored").digest);
        let err = fetch_inputs(&store, &swapped_spec, &scratch)
            .await
            .expect_err("refused");
        assert!(matches!(err, InputsBlobError::Mismatch { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("not those the manifest commits to"),
            "{err}"
        );

        // A blob that is not in the bucket.
        let mut missing = spec.clone();
        missing.inputs_blob = Some(Hash::of(b"never stored"));
        let err = fetch_inputs(&store, &missing, &scratch)
            .await
            .expect_err("refused");
        assert!(matches!(err, InputsBlobError::Fetch { .. }), "{err}");
        assert!(err.to_string().contains("could not be fetched"), "{err}");
        assert!(!scratch.exists());

        // No inputs blob: nothing to fetch.
        let mut pushed = spec.clone();
        pushed.inputs_blob = None;
        assert!(
            fetch_inputs(&store, &pushed, &scratch)
                .await
                .expect("ok")
                .is_none()
        );
    }

    #[tokio::test]
    async fn a_replaced_object_in_the_bucket_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("store");
        let store = gpunet_blobs::LocalStore::open(&root).expect("store");
        let (spec, sealed) = submitted(&store, b"the archive").await;
        // The bucket's owner overwrites the object the manifest names.
        let blob = spec.inputs_blob.expect("blob");
        let mut replaced = sealed.clone();
        let last = replaced.len() - 1;
        replaced[last] ^= 1;
        let mut swapped = false;
        for entry in walk(&root) {
            if entry.file_name().and_then(|n| n.to_str()) == Some(blob.to_hex().as_str()) {
                std::fs::set_permissions(
                    &entry,
                    std::os::unix::fs::PermissionsExt::from_mode(0o600),
                )
                .expect("writable");
                std::fs::write(&entry, &replaced).expect("overwrite");
                swapped = true;
            }
        }
        assert!(swapped, "found the blob's file");
        let err = fetch_inputs(&store, &spec, &dir.path().join("scratch"))
            .await
            .expect_err("refused");
        assert!(matches!(err, InputsBlobError::Fetch { .. }), "{err}");
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
        out
    }

    #[test]
    fn a_sealed_output_opens_to_the_same_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("src");
        // More than one chunk, and not a whole number of them.
        let bytes: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&src, &bytes).expect("write");
        let secret = gpunet_client::sealing::random_secret();
        let ctx = SealContext {
            purpose: Purpose::Output,
            lease: LeaseId(4),
        };
        let dest = dir.path().join("sealed");
        seal_file(&secret.public(), ctx, &src, &dest).expect("seals");
        let sealed = std::fs::read(&dest).expect("read");
        let opened = gpunet_protocol::sealed::open(&secret, ctx, &sealed).expect("opens");
        assert_eq!(opened, bytes);
        assert_eq!(
            outputs_ref("gpunet-dev", OrderId(2), LeaseId(4), "listing")
                .expect("valid")
                .as_str(),
            "jobs/gpunet-dev/2/outputs/4/listing"
        );
    }
}
