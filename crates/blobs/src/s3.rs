//! The S3-compatible backend, through `object_store`.
//!
//! ```text
//! <prefix>/blobs/<hex>     a blob, named by its digest
//! <prefix>/refs/<name>     a ref: the digest's hex and a newline
//! <prefix>/uploads/<hex>   the record of an unfinished multi-part put of blob <hex> (JSON:
//!                          the S3 upload id, the part size, each stored part's ETag and BLAKE3)
//! ```
//!
//! A blob of one part is one `PUT`. A larger one is an S3 multipart upload driven through
//! `object_store`'s `MultipartStore` (create, put part, complete), whose upload id and part
//! ETags are plain values: after each part the record under `uploads/` is rewritten, so a put
//! retried later — by this process or by another on another machine — continues the same
//! upload. The record also holds each part's BLAKE3, and a retry re-reads those parts from its
//! source and compares: a part whose bytes differ is uploaded again (S3 replaces a part sent
//! twice under the same number). Before completing, the whole source must hash to the digest,
//! so the object under `blobs/<hex>` always holds exactly those bytes.
//!
//! Concurrent puts of one blob are safe: each completes the upload it holds in memory, and a
//! completion that fails because another put completed the blob first is success.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use gpunet_protocol::Hash;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as Key;
use object_store::{ObjectStoreExt, PutPayload, RetryConfig};
use serde::{Deserialize, Serialize};

use crate::download::VerifiedFile;
use crate::local::parse_ref;
use crate::parts::{HashedSource, PartPlan, Source};
use crate::{
    BlobError, BlobRef, BlobStore, Limits, NoProgress, PartDone, PutProgress, RefName,
    S3_MIN_PART_SIZE_BYTES,
};

/// Where an S3-compatible bucket is and how to sign in to it.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Config {
    /// The service's URL (`https://s3.eu-west-1.amazonaws.com`, `http://127.0.0.1:9000`);
    /// `None` for AWS S3 in `region`. Requests are path-style (`<endpoint>/<bucket>/<key>`).
    pub endpoint: Option<String>,
    pub bucket: String,
    pub region: String,
    pub access_key_id: String,
    /// Never printed: `Debug` shows `<redacted>`.
    pub secret_access_key: String,
    /// Keys are placed under this prefix (`""` for none); the same charset as ref names.
    pub prefix: String,
    /// A session token, for short-lived (STS) credentials. Never printed.
    pub session_token: Option<String>,
    /// Allow an `http://` endpoint (a test server on loopback); off, only `https://` is used.
    pub allow_http: bool,
    /// Connect only to public addresses ([`crate::guard`]): set for a store someone else
    /// named (a tenant's bucket), so it cannot point the client at this machine's network.
    pub public_addresses_only: bool,
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("prefix", &self.prefix)
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .field("allow_http", &self.allow_http)
            .field("public_addresses_only", &self.public_addresses_only)
            .finish()
    }
}

/// A blob store in an S3-compatible bucket. See the module docs for its keys.
#[derive(Debug, Clone)]
pub struct S3Store {
    s3: Arc<AmazonS3>,
    bucket: String,
    /// For error messages.
    endpoint: String,
    prefix: String,
    limits: Limits,
}

/// What is kept under `uploads/<hex>` while a multi-part put is unfinished.
#[derive(Debug, Serialize, Deserialize)]
struct UploadRecord {
    upload_id: String,
    part_size_bytes: u64,
    /// Parts 0.. in order.
    parts: Vec<PartRecord>,
}

#[derive(Debug, Serialize, Deserialize)]
struct PartRecord {
    etag: String,
    blake3: String,
}

/// How long and how often a request is retried before its error is returned.
const RETRY_MAX: usize = 3;
const RETRY_TIMEOUT: Duration = Duration::from_secs(60);

impl S3Store {
    /// A store in `config`'s bucket with the default [`Limits`]. Makes no request: a missing
    /// bucket or refused credentials show on first use.
    pub fn new(config: S3Config) -> Result<S3Store, BlobError> {
        S3Store::with_limits(config, Limits::default())
    }

    pub fn with_limits(config: S3Config, limits: Limits) -> Result<S3Store, BlobError> {
        limits.check(S3_MIN_PART_SIZE_BYTES)?;
        let bad = |reason: String| BlobError::BadS3Config {
            reason,
            source: None,
        };
        if !config.prefix.is_empty() {
            RefName::new(&config.prefix).map_err(|e| bad(format!("prefix: {}", e.reason)))?;
        }
        if config.bucket.is_empty() {
            return Err(bad("the bucket name is empty".into()));
        }
        let mut options = object_store::ClientOptions::new();
        if config.public_addresses_only {
            // An endpoint written as an address is never resolved: check it here. Names are
            // checked at every connection by the resolver.
            if let Some(host) = config.endpoint.as_deref().and_then(endpoint_host)
                && let Ok(ip) = host.parse::<std::net::IpAddr>()
            {
                crate::guard::check_addresses(&host, &[ip])
                    .map_err(|source| BlobError::EndpointRefused { source })?;
            }
            options = options.with_dns_resolver(Arc::new(crate::guard::PublicOnlyResolver));
        }
        // Client options first: they would override `allow_http`.
        let mut builder = AmazonS3Builder::new()
            .with_client_options(options)
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_access_key_id(&config.access_key_id)
            .with_secret_access_key(&config.secret_access_key)
            .with_allow_http(config.allow_http)
            .with_retry(RetryConfig {
                max_retries: RETRY_MAX,
                retry_timeout: RETRY_TIMEOUT,
                ..RetryConfig::default()
            });
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(token) = &config.session_token {
            builder = builder.with_token(token);
        }
        let s3 = builder.build().map_err(|source| BlobError::BadS3Config {
            reason: "object_store refused it".into(),
            source: Some(source),
        })?;
        Ok(S3Store {
            s3: Arc::new(s3),
            endpoint: config
                .endpoint
                .unwrap_or_else(|| format!("AWS S3 ({})", config.region)),
            bucket: config.bucket,
            prefix: config.prefix,
            limits,
        })
    }

    fn key(&self, rest: String) -> Key {
        if self.prefix.is_empty() {
            Key::from(rest)
        } else {
            Key::from(format!("{}/{rest}", self.prefix))
        }
    }

    fn blob_key(&self, digest: &Hash) -> Key {
        self.key(format!("blobs/{}", digest.to_hex()))
    }

    fn upload_key(&self, digest: &Hash) -> Key {
        self.key(format!("uploads/{}", digest.to_hex()))
    }

    fn ref_key(&self, name: &RefName) -> Key {
        self.key(format!("refs/{}", name.as_str()))
    }

    /// Names what went wrong: a missing bucket and refused credentials get their own errors.
    fn error(&self, action: &'static str, key: &Key, source: object_store::Error) -> BlobError {
        match &source {
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => BlobError::CredentialsRefused {
                bucket: self.bucket.clone(),
                endpoint: self.endpoint.clone(),
                source,
            },
            object_store::Error::NotFound { .. } if source.to_string().contains("NoSuchBucket") => {
                BlobError::BucketMissing {
                    bucket: self.bucket.clone(),
                    endpoint: self.endpoint.clone(),
                    source,
                }
            }
            _ => BlobError::S3 {
                action,
                key: key.to_string(),
                source,
            },
        }
    }

    /// The stored length of blob `digest`, or `None`.
    async fn head_len(&self, digest: &Hash) -> Result<Option<u64>, BlobError> {
        let key = self.blob_key(digest);
        match self.s3.head(&key).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error("head", &key, e)),
        }
    }

    async fn get_small(&self, key: &Key, max_bytes: u64) -> Result<Option<Vec<u8>>, BlobError> {
        let result = match self.s3.get(key).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { ref source, .. })
                if !source.to_string().contains("NoSuchBucket") =>
            {
                return Ok(None);
            }
            Err(e) => return Err(self.error("get", key, e)),
        };
        if result.meta.size > max_bytes {
            return Err(BlobError::TooLarge {
                what: key.to_string(),
                bytes: result.meta.size,
                max_bytes,
            });
        }
        let bytes = result
            .bytes()
            .await
            .map_err(|e| self.error("get", key, e))?;
        Ok(Some(bytes.to_vec()))
    }

    async fn put_small(&self, key: &Key, bytes: Vec<u8>) -> Result<(), BlobError> {
        self.s3
            .put(key, PutPayload::from(bytes))
            .await
            .map(drop)
            .map_err(|e| self.error("put", key, e))
    }

    async fn load_record(&self, digest: &Hash) -> Result<Option<UploadRecord>, BlobError> {
        let Some(bytes) = self
            .get_small(&self.upload_key(digest), 4 * 1024 * 1024)
            .await?
        else {
            return Ok(None);
        };
        // A record this version cannot read is dropped: the put starts over.
        Ok(serde_json::from_slice(&bytes).ok())
    }

    async fn save_record(&self, digest: &Hash, record: &UploadRecord) -> Result<(), BlobError> {
        let bytes = serde_json::to_vec(record).expect("a record serializes");
        self.put_small(&self.upload_key(digest), bytes).await
    }

    async fn forget_upload(&self, digest: &Hash, record: Option<&UploadRecord>) {
        // Best effort: an orphan upload costs storage until a lifecycle rule aborts it, and a
        // stale record is ignored once the blob exists.
        if let Some(record) = record {
            let _ = self
                .s3
                .abort_multipart(&self.blob_key(digest), &record.upload_id)
                .await;
        }
        let _ = self.s3.delete(&self.upload_key(digest)).await;
    }

    async fn put_source(
        &self,
        hashed: HashedSource<'_>,
        progress: &dyn PutProgress,
    ) -> Result<BlobRef, BlobError> {
        let HashedSource {
            mut source,
            digest,
            len_bytes,
        } = hashed;
        let done = BlobRef {
            digest,
            bytes: len_bytes,
        };
        if self.head_len(&digest).await? == Some(len_bytes) {
            return Ok(done);
        }
        let plan = PartPlan::new(len_bytes, &self.limits);
        let key = self.blob_key(&digest);
        if plan.parts_total == 1 {
            let bytes = source.read_part(&plan, 0, &digest).await?;
            if Hash::of(&bytes) != digest {
                return Err(source.changed(&digest));
            }
            self.put_small(&key, bytes).await?;
            return Ok(done);
        }

        let mut record = match self.load_record(&digest).await? {
            Some(r) if r.part_size_bytes == plan.part_size_bytes => r,
            stale => {
                self.forget_upload(&digest, stale.as_ref()).await;
                let upload_id = self
                    .s3
                    .create_multipart(&key)
                    .await
                    .map_err(|e| self.error("start multipart upload", &key, e))?;
                let record = UploadRecord {
                    upload_id,
                    part_size_bytes: plan.part_size_bytes,
                    parts: Vec::new(),
                };
                self.save_record(&digest, &record).await?;
                record
            }
        };
        let resuming = !record.parts.is_empty();
        let mut hasher = blake3::Hasher::new();
        for index in 0..plan.parts_total {
            let bytes = source.read_part(&plan, index, &digest).await?;
            hasher.update(&bytes);
            let part_hash = Hash::of(&bytes).to_hex();
            let i = index as usize;
            let resumed = record.parts.get(i).is_some_and(|p| p.blake3 == part_hash);
            if !resumed {
                record.parts.truncate(i);
                let part = self
                    .s3
                    .put_part(&key, &record.upload_id, i, PutPayload::from(bytes))
                    .await;
                let part = match part {
                    Ok(part) => part,
                    Err(source @ object_store::Error::NotFound { .. }) if resuming => {
                        self.forget_upload(&digest, None).await;
                        return Err(BlobError::UploadExpired { digest, source });
                    }
                    Err(e) => return Err(self.error("upload part", &key, e)),
                };
                record.parts.push(PartRecord {
                    etag: part.content_id,
                    blake3: part_hash,
                });
                self.save_record(&digest, &record).await?;
            }
            let part = PartDone {
                digest,
                index,
                parts_total: plan.parts_total,
                bytes: plan.part_len(index),
                resumed,
            };
            if progress.part_done(part).is_break() && index + 1 < plan.parts_total {
                return Err(BlobError::Interrupted {
                    digest,
                    parts_stored: index + 1,
                    parts_total: plan.parts_total,
                });
            }
        }
        if Hash(*hasher.finalize().as_bytes()) != digest {
            self.forget_upload(&digest, Some(&record)).await;
            return Err(source.changed(&digest));
        }
        let parts = record
            .parts
            .iter()
            .map(|p| PartId {
                content_id: p.etag.clone(),
            })
            .collect();
        let completed = self
            .s3
            .complete_multipart(&key, &record.upload_id, parts)
            .await;
        match completed {
            Ok(_) => {}
            // Another put of the same blob completed it first (and its upload with it).
            Err(_) if self.head_len(&digest).await? == Some(len_bytes) => {}
            Err(source @ object_store::Error::NotFound { .. }) if resuming => {
                self.forget_upload(&digest, None).await;
                return Err(BlobError::UploadExpired { digest, source });
            }
            Err(e) => return Err(self.error("complete multipart upload", &key, e)),
        }
        self.forget_upload(&digest, None).await;
        Ok(done)
    }
}

/// The host of an endpoint URL (`https://host:port/…`), an IPv6 address without brackets.
fn endpoint_host(endpoint: &str) -> Option<String> {
    let rest = endpoint.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split_once(']')?.0,
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    Some(host.to_owned())
}

#[async_trait::async_trait]
impl BlobStore for S3Store {
    async fn put_file_with(
        &self,
        path: &Path,
        progress: &dyn PutProgress,
    ) -> Result<BlobRef, BlobError> {
        let hashed = Source::open_file(path, &self.limits).await?;
        self.put_source(hashed, progress).await
    }

    async fn put_bytes(&self, bytes: &[u8]) -> Result<BlobRef, BlobError> {
        let hashed = Source::memory(bytes, &self.limits)?;
        self.put_source(hashed, &NoProgress).await
    }

    async fn get_to_file(&self, digest: &Hash, dest: &Path) -> Result<BlobRef, BlobError> {
        let key = self.blob_key(digest);
        let result = match self.s3.get(&key).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { ref source, .. })
                if !source.to_string().contains("NoSuchBucket") =>
            {
                return Err(BlobError::NotFound { digest: *digest });
            }
            Err(e) => return Err(self.error("get", &key, e)),
        };
        if result.meta.size > self.limits.max_blob_bytes {
            return Err(BlobError::TooLarge {
                what: format!("blob {digest}"),
                bytes: result.meta.size,
                max_bytes: self.limits.max_blob_bytes,
            });
        }
        let mut out = VerifiedFile::create(dest, self.limits.max_blob_bytes)?;
        let mut stream = result.into_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.error("get", &key, e))?;
            out.write(&chunk).await?;
        }
        let bytes = out.finish(digest).await?;
        Ok(BlobRef {
            digest: *digest,
            bytes,
        })
    }

    async fn exists(&self, digest: &Hash) -> Result<bool, BlobError> {
        Ok(self.head_len(digest).await?.is_some())
    }

    async fn delete(&self, digest: &Hash) -> Result<(), BlobError> {
        let key = self.blob_key(digest);
        match self.s3.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error("delete", &key, e)),
        }
    }

    async fn set_ref(&self, name: &RefName, digest: &Hash) -> Result<(), BlobError> {
        let contents = format!("{}\n", digest.to_hex());
        self.put_small(&self.ref_key(name), contents.into_bytes())
            .await
    }

    async fn get_ref(&self, name: &RefName) -> Result<Option<Hash>, BlobError> {
        match self.get_small(&self.ref_key(name), 1024).await? {
            Some(bytes) => parse_ref(name, &bytes).map(Some),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_the_secret() {
        let config = S3Config {
            endpoint: Some("http://127.0.0.1:9".into()),
            bucket: "b".into(),
            region: "us-east-1".into(),
            access_key_id: "AKIAEXAMPLE".into(),
            secret_access_key: "s3cr3t-do-not-print".into(),
            prefix: "".into(),
            session_token: Some("t0k3n-do-not-print".into()),
            allow_http: true,
            public_addresses_only: false,
        };
        let shown = format!("{config:?} {config:#?}");
        assert!(!shown.contains("t0k3n"), "{shown}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("AKIAEXAMPLE"), "{shown}");
        let store = S3Store::new(config).expect("valid");
        let shown = format!("{store:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }

    #[test]
    fn a_guarded_store_refuses_an_endpoint_written_as_a_private_address() {
        let config = |endpoint: &str| S3Config {
            endpoint: Some(endpoint.into()),
            bucket: "b".into(),
            region: "us-east-1".into(),
            access_key_id: "k".into(),
            secret_access_key: "s".into(),
            prefix: "".into(),
            session_token: None,
            allow_http: true,
            public_addresses_only: true,
        };
        for endpoint in [
            "http://127.0.0.1:9000",
            "https://169.254.169.254",
            "https://[::1]:443",
            "https://[fd00::1]/",
        ] {
            let err = S3Store::new(config(endpoint)).expect_err(endpoint);
            assert!(
                matches!(err, BlobError::EndpointRefused { .. }),
                "{endpoint}: {err}"
            );
        }
        // A public address, or a name (checked when it is resolved), is accepted here.
        S3Store::new(config("https://52.216.0.1")).expect("a public address");
        S3Store::new(config("https://s3.example.com")).expect("a name");
        assert_eq!(endpoint_host("https://[::1]:443/x").as_deref(), Some("::1"));
        assert_eq!(endpoint_host("http://a.b:9").as_deref(), Some("a.b"));
    }
}
