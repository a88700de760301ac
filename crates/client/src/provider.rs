//! The client a tenant uses to talk to its lease's provider agent. Every request is signed with
//! the tenant's key, with a fresh random nonce (see `gpunet_api::auth`). Manifests go out sealed to the provider's
//! registered encryption key; output files and log slices come back sealed to the tenant's
//! output key.

use std::time::Duration;

use futures::{SinkExt, StreamExt};

use gpunet_api::auth::sign_request;
use gpunet_api::provider::{
    LogChunkView, LogSlice, ManifestDelivery, OutputListing, SealedLogChunk, WorkloadView,
};
use gpunet_protocol::sealed::open;
use gpunet_protocol::{EncryptionKey, EncryptionSecret, Hash, LeaseId, Purpose, SealContext};

use crate::{ClientError, KeyFile, decode, now_ms};

/// Seals `plain` to `key` for `purpose` and `lease`; `what` names it in the error.
fn seal_for(
    key: &EncryptionKey,
    purpose: Purpose,
    lease: LeaseId,
    plain: &[u8],
    what: impl FnOnce() -> String,
) -> Result<Vec<u8>, ClientError> {
    crate::sealing::seal(key, SealContext { purpose, lease }, plain).map_err(|source| {
        ClientError::Sealed {
            what: what(),
            source,
        }
    })
}

/// A client for one provider agent, signing as a tenant.
pub struct ProviderClient {
    base: String,
    http: reqwest::Client,
    key: KeyFile,
}

impl ProviderClient {
    pub fn new(endpoint: &str, key: KeyFile) -> ProviderClient {
        ProviderClient {
            base: endpoint.trim_end_matches('/').to_owned(),
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .build()
                .expect("a plain HTTP client always builds"),
            key,
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<reqwest::Response, ClientError> {
        self.send_typed(method, path, body, "application/json")
            .await
    }

    async fn send_typed(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Vec<u8>,
        content_type: &'static str,
    ) -> Result<reqwest::Response, ClientError> {
        let url = format!("{}{}", self.base, path);
        let mut req = self
            .http
            .request(method.clone(), &url)
            .timeout(Duration::from_secs(60));
        let nonce = crate::sealing::random_request_nonce();
        let signed = sign_request(&self.key.key, method.as_str(), path, now_ms(), nonce, &body);
        for (name, value) in signed {
            req = req.header(name, value);
        }
        if !body.is_empty() {
            req = req.header("content-type", content_type).body(body);
        }
        req.send()
            .await
            .map_err(|source| ClientError::Unreachable { url, source })
    }

    /// Seals the manifest for `lease` to `provider_key` (the provider's registered encryption
    /// key) and sends it; the agent opens it and checks it against the order's hash.
    pub async fn deliver_manifest(
        &self,
        lease: LeaseId,
        provider_key: &EncryptionKey,
        manifest: &[u8],
    ) -> Result<WorkloadView, ClientError> {
        let sealed = seal_for(provider_key, Purpose::Manifest, lease, manifest, || {
            format!("the manifest of lease {lease}")
        })?;
        self.deliver_sealed_manifest(lease, &sealed).await
    }

    /// Sends a manifest already sealed (`gpunet_protocol::sealed`) for `lease`.
    pub async fn deliver_sealed_manifest(
        &self,
        lease: LeaseId,
        sealed: &[u8],
    ) -> Result<WorkloadView, ClientError> {
        let path = format!("/v1/leases/{lease}/manifest");
        let body = serde_json::to_vec(&ManifestDelivery {
            sealed_hex: hex::encode(sealed),
        })
        .expect("a manifest delivery always serialises");
        let resp = self.send(reqwest::Method::POST, &path, body).await?;
        decode(&format!("{}{}", self.base, path), resp).await
    }

    /// Seals the packed inputs (`gpunet_protocol::inputs`) for `lease` to `provider_key` and
    /// sends them; deliver them before the manifest, which commits to their digest.
    pub async fn deliver_inputs(
        &self,
        lease: LeaseId,
        provider_key: &EncryptionKey,
        archive: &[u8],
    ) -> Result<(), ClientError> {
        let sealed = seal_for(provider_key, Purpose::Inputs, lease, archive, || {
            format!("the inputs of lease {lease}")
        })?;
        self.deliver_sealed_inputs(lease, sealed).await
    }

    /// Sends inputs already sealed for `lease` (a test can send tampered ones).
    pub async fn deliver_sealed_inputs(
        &self,
        lease: LeaseId,
        sealed: Vec<u8>,
    ) -> Result<(), ClientError> {
        self.put_sealed(&format!("/v1/leases/{lease}/inputs"), sealed)
            .await
    }

    /// PUTs sealed bytes to `path`; any success status is success.
    async fn put_sealed(&self, path: &str, sealed: Vec<u8>) -> Result<(), ClientError> {
        let resp = self
            .send_typed(
                reqwest::Method::PUT,
                path,
                sealed,
                "application/octet-stream",
            )
            .await?;
        let url = format!("{}{}", self.base, path);
        if resp.status().is_success() {
            return Ok(());
        }
        decode::<serde_json::Value>(&url, resp).await.map(|_| ())
    }

    /// Seals one run's bundle (`RunBundle`) of a `compare: tensors` order to the verifier's
    /// registered encryption key, bound to the run's lease, and sends it to the verifier's
    /// agent (this client's endpoint), which checks it against the chain.
    pub async fn deliver_run_for_verdict(
        &self,
        order: gpunet_protocol::OrderId,
        lease: LeaseId,
        verifier_key: &EncryptionKey,
        bundle: &gpunet_protocol::RunBundle,
    ) -> Result<(), ClientError> {
        let plain = borsh::to_vec(bundle).expect("borsh encoding into a Vec cannot fail");
        let sealed = seal_for(verifier_key, Purpose::Verdict, lease, &plain, || {
            format!("the outputs of lease {lease} for the verifier")
        })?;
        self.put_sealed(&format!("/v1/verdicts/{order}/runs/{lease}"), sealed)
            .await
    }

    /// Runs a command inside `lease`'s running workload (`gpunet job exec`): the request is
    /// sealed to `provider_key`, the answer opened with `output_secret` (the tenant's).
    pub async fn exec(
        &self,
        lease: LeaseId,
        provider_key: &EncryptionKey,
        output_secret: &EncryptionSecret,
        request: &gpunet_api::provider::ExecRequest,
    ) -> Result<gpunet_api::provider::ExecResult, ClientError> {
        use gpunet_api::provider::ExecSealed;
        let plain = serde_json::to_vec(request).expect("an exec request always serialises");
        let sealed = seal_for(provider_key, Purpose::Exec, lease, &plain, || {
            format!("the command for lease {lease}")
        })?;
        let path = format!("/v1/leases/{lease}/exec");
        let body = serde_json::to_vec(&ExecSealed {
            sealed_hex: hex::encode(sealed),
        })
        .expect("a sealed exec always serialises");
        let url = format!("{}{}", self.base, path);
        let resp = self.send(reqwest::Method::POST, &path, body).await?;
        let answer: ExecSealed = decode(&url, resp).await?;
        let what = || format!("the exec output of lease {lease}");
        let sealed =
            hex::decode(answer.sealed_hex.trim()).map_err(|e| ClientError::LogMismatch {
                what: what(),
                why: format!("not hex: {e}"),
            })?;
        let ctx = SealContext {
            purpose: Purpose::ExecOutput,
            lease,
        };
        let plain = open(output_secret, ctx, &sealed).map_err(|source| ClientError::Sealed {
            what: what(),
            source,
        })?;
        serde_json::from_slice(&plain).map_err(|source| ClientError::Decode { url, source })
    }

    /// Opens a shell into `lease`'s running workload (`gpunet job shell`): a signed WebSocket
    /// upgrade, then the opening — `argv`, `service`, the terminal size and a fresh stream key —
    /// sealed to `provider_key`. What goes either way after it is sealed under that key
    /// (`gpunet_protocol::stream`).
    pub async fn shell(
        &self,
        lease: LeaseId,
        provider_key: &EncryptionKey,
        argv: Vec<String>,
        service: Option<String>,
        tty: Option<(u16, u16)>,
    ) -> Result<(ShellTx, ShellRx), ClientError> {
        use tokio_tungstenite::tungstenite::Message;
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let path = format!("/v1/leases/{lease}/shell");
        let url = format!("{}{}", self.base, path);
        let failed = |why: String| ClientError::Shell {
            url: url.clone(),
            why,
        };
        let ws_url = if let Some(rest) = self.base.strip_prefix("http://") {
            format!("ws://{rest}{path}")
        } else {
            return Err(failed(
                "this gpunet opens shells over http:// provider endpoints only".into(),
            ));
        };
        let mut request = ws_url
            .as_str()
            .into_client_request()
            .map_err(|e| failed(e.to_string()))?;
        let nonce = crate::sealing::random_request_nonce();
        for (name, value) in sign_request(&self.key.key, "GET", &path, now_ms(), nonce, b"") {
            let value = value
                .parse()
                .map_err(|_| failed(format!("bad header {name}")))?;
            request.headers_mut().insert(name, value);
        }
        let (ws, _) = tokio::time::timeout(
            Duration::from_secs(30),
            tokio_tungstenite::connect_async(request),
        )
        .await
        .map_err(|_| failed("no answer within 30 s".into()))?
        .map_err(|e| match e {
            tokio_tungstenite::tungstenite::Error::Http(answer) => {
                let body = answer
                    .body()
                    .as_deref()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default()
                    .into_owned();
                failed(format!("the provider answered {}: {body}", answer.status()))
            }
            e => failed(e.to_string()),
        })?;
        let key = gpunet_protocol::stream::StreamKey(crate::sealing::random_key_bytes());
        let open = gpunet_api::provider::ShellOpen {
            argv,
            service,
            tty,
            key_hex: hex::encode(key.0),
        };
        open.validate().map_err(&failed)?;
        let plain = serde_json::to_vec(&open).expect("a shell opening always serialises");
        let sealed = seal_for(provider_key, Purpose::Shell, lease, &plain, || {
            format!("the shell opening for lease {lease}")
        })?;
        let (mut sink, stream) = ws.split();
        sink.send(Message::Binary(sealed.into()))
            .await
            .map_err(|e| failed(e.to_string()))?;
        Ok((
            ShellTx {
                sink,
                sealer: gpunet_protocol::stream::Sealer::new(
                    &key,
                    gpunet_protocol::stream::Direction::ToProvider,
                ),
            },
            ShellRx {
                stream,
                opener: gpunet_protocol::stream::Opener::new(
                    &key,
                    gpunet_protocol::stream::Direction::ToTenant,
                ),
            },
        ))
    }

    pub async fn status(&self, lease: LeaseId) -> Result<WorkloadView, ClientError> {
        let path = format!("/v1/leases/{lease}/status");
        let resp = self.send(reqwest::Method::GET, &path, Vec::new()).await?;
        decode(&format!("{}{}", self.base, path), resp).await
    }

    /// Up to `max` bytes of the lease's log from `offset`, opened with `output_secret` (the
    /// tenant's, see `KeyFile::output_secret`). The slice must say, inside its sealed box, that
    /// it starts at `offset`, and the fields outside must agree with it.
    pub async fn logs(
        &self,
        lease: LeaseId,
        offset: u64,
        max: usize,
        output_secret: &EncryptionSecret,
    ) -> Result<LogChunkView, ClientError> {
        let sealed = self.logs_sealed(lease, offset, max).await?;
        let what = || format!("the log of lease {lease} from byte {offset}");
        let bytes =
            hex::decode(sealed.sealed_hex.trim()).map_err(|_| ClientError::LogMismatch {
                what: what(),
                why: "sealed_hex is not hex".into(),
            })?;
        let ctx = SealContext {
            purpose: Purpose::Logs,
            lease,
        };
        let opened = open(output_secret, ctx, &bytes).map_err(|source| ClientError::Sealed {
            what: what(),
            source,
        })?;
        let slice = LogSlice::from_bytes(&opened).ok_or_else(|| ClientError::LogMismatch {
            what: what(),
            why: "the opened box is not a log slice".into(),
        })?;
        let why = if slice.offset != offset {
            Some(format!("it holds the slice from byte {}", slice.offset))
        } else if (sealed.offset, sealed.next_offset, sealed.finished)
            != (slice.offset, slice.next_offset(), slice.finished)
        {
            Some("the fields outside the sealed box disagree with those inside".to_owned())
        } else {
            None
        };
        if let Some(why) = why {
            return Err(ClientError::LogMismatch { what: what(), why });
        }
        Ok(LogChunkView {
            text: String::from_utf8_lossy(&slice.data).into_owned(),
            next_offset: slice.next_offset(),
            finished: slice.finished,
        })
    }

    /// The log slice as the agent serves it: sealed to the manifest's `output_key`.
    /// [`ProviderClient::logs`] opens and checks it.
    pub async fn logs_sealed(
        &self,
        lease: LeaseId,
        offset: u64,
        max: usize,
    ) -> Result<SealedLogChunk, ClientError> {
        let path = format!("/v1/leases/{lease}/logs?offset={offset}&max={max}");
        let resp = self.send(reqwest::Method::GET, &path, Vec::new()).await?;
        decode(&format!("{}{}", self.base, path), resp).await
    }

    pub async fn outputs(&self, lease: LeaseId) -> Result<OutputListing, ClientError> {
        let path = format!("/v1/leases/{lease}/outputs");
        let resp = self.send(reqwest::Method::GET, &path, Vec::new()).await?;
        decode(&format!("{}{}", self.base, path), resp).await
    }

    /// One output file, opened with `output_secret` (the tenant's, see
    /// `KeyFile::output_secret`) and checked against `digest`.
    pub async fn output_opened(
        &self,
        lease: LeaseId,
        digest: &Hash,
        output_secret: &EncryptionSecret,
    ) -> Result<Vec<u8>, ClientError> {
        let sealed = self.output(lease, digest).await?;
        let what = || format!("output {digest} of lease {lease}");
        let ctx = SealContext {
            purpose: Purpose::Output,
            lease,
        };
        let bytes = open(output_secret, ctx, &sealed).map_err(|source| ClientError::Sealed {
            what: what(),
            source,
        })?;
        if Hash::of(&bytes) != *digest {
            return Err(ClientError::DigestMismatch {
                what: what(),
                expected: *digest,
            });
        }
        Ok(bytes)
    }

    /// One output file's bytes as the agent serves them: sealed to the manifest's `output_key`
    /// for this lease. [`ProviderClient::output_opened`] opens and checks them.
    pub async fn output(&self, lease: LeaseId, digest: &Hash) -> Result<Vec<u8>, ClientError> {
        let path = format!("/v1/leases/{lease}/outputs/{digest}");
        let url = format!("{}{}", self.base, path);
        let resp = self.send(reqwest::Method::GET, &path, Vec::new()).await?;
        if !resp.status().is_success() {
            return Err(decode::<()>(&url, resp)
                .await
                .err()
                .unwrap_or(ClientError::Stream {
                    url,
                    why: "unexpected status".into(),
                }));
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|source| ClientError::Body { url, source })?;
        Ok(bytes.to_vec())
    }
}

type ShellSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The sending half of a shell: frames sealed to the provider, in order.
pub struct ShellTx {
    sink: futures::stream::SplitSink<ShellSocket, tokio_tungstenite::tungstenite::Message>,
    sealer: gpunet_protocol::stream::Sealer,
}

impl ShellTx {
    /// Sends one frame (input bytes, a resize, end-of-file).
    pub async fn send(&mut self, frame: &gpunet_protocol::stream::Frame) -> Result<(), String> {
        let sealed = self.sealer.seal(frame).map_err(|e| e.to_string())?;
        self.sink
            .send(tokio_tungstenite::tungstenite::Message::Binary(
                sealed.into(),
            ))
            .await
            .map_err(|e| e.to_string())
    }

    /// Ends the connection.
    pub async fn close(&mut self) {
        let _ = self.sink.close().await;
    }
}

/// The receiving half of a shell: the provider's frames, opened in order.
pub struct ShellRx {
    stream: futures::stream::SplitStream<ShellSocket>,
    opener: gpunet_protocol::stream::Opener,
}

impl ShellRx {
    /// The next frame; `None` once the connection has ended. A close from the provider
    /// before any exit says why as an error.
    pub async fn recv(&mut self) -> Option<Result<gpunet_protocol::stream::Frame, String>> {
        use tokio_tungstenite::tungstenite::Message;
        loop {
            return match self.stream.next().await? {
                Ok(Message::Binary(bytes)) => {
                    Some(self.opener.open(&bytes).map_err(|e| e.to_string()))
                }
                Ok(Message::Close(Some(frame))) if !frame.reason.is_empty() => Some(Err(format!(
                    "the provider ended the shell: {}",
                    frame.reason
                ))),
                Ok(Message::Close(_)) => None,
                Ok(_) => continue,
                Err(e) => Some(Err(e.to_string())),
            };
        }
    }
}
