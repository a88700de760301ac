//! Signed HTTP requests. A tenant proves to a provider agent that it is the lease's tenant by
//! signing the method, path, a timestamp, a random nonce and the body's hash with its account
//! key; validators sign the batches they forward to each other the same way.
//!
//! The timestamp bounds how long a captured request stays usable ([`MAX_CLOCK_SKEW_MS`]); the
//! nonce closes that window: a verifier that keeps a [`NonceBook`] accepts each signed request
//! once. This module draws no randomness: signers supply the nonce, and the book reads no clock.

use std::collections::BTreeMap;

use gpunet_protocol::Address;

pub const SIGNER_HEADER: &str = "x-gpunet-signer";
pub const TIMESTAMP_HEADER: &str = "x-gpunet-timestamp-ms";
pub const NONCE_HEADER: &str = "x-gpunet-nonce";
pub const SIGNATURE_HEADER: &str = "x-gpunet-signature";
/// How far a request's timestamp may be from the server's clock, in milliseconds.
pub const MAX_CLOCK_SKEW_MS: u64 = 5 * 60 * 1000;
/// Version 2 added the nonce; a version-1 signature does not verify as version 2.
const DOMAIN: &[u8] = b"gpunet/request/v2\0";

/// 128 random bits that make one signed request unique; hex in [`NONCE_HEADER`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestNonce(pub [u8; 16]);

impl RequestNonce {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Exactly 32 hex characters.
    pub fn from_hex(s: &str) -> Option<RequestNonce> {
        let mut out = [0u8; 16];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(RequestNonce(out))
    }
}

/// The bytes a request signature covers.
pub fn signing_bytes(
    method: &str,
    path_and_query: &str,
    timestamp_ms: u64,
    nonce: &RequestNonce,
    body: &[u8],
) -> Vec<u8> {
    let mut out = DOMAIN.to_vec();
    out.extend_from_slice(method.to_ascii_uppercase().as_bytes());
    out.push(b'\n');
    out.extend_from_slice(path_and_query.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(timestamp_ms.to_string().as_bytes());
    out.push(b'\n');
    out.extend_from_slice(nonce.to_hex().as_bytes());
    out.push(b'\n');
    out.extend_from_slice(blake3::hash(body).to_hex().as_bytes());
    out
}

/// The four header values for a request. `nonce` must be fresh and random for every request
/// (a repeated one is refused as a replay by verifiers that remember nonces).
pub fn sign_request(
    key: &ed25519_dalek::SigningKey,
    method: &str,
    path_and_query: &str,
    timestamp_ms: u64,
    nonce: RequestNonce,
    body: &[u8],
) -> [(&'static str, String); 4] {
    use ed25519_dalek::Signer;
    let sig = key.sign(&signing_bytes(
        method,
        path_and_query,
        timestamp_ms,
        &nonce,
        body,
    ));
    [
        (
            SIGNER_HEADER,
            Address::from_key(&key.verifying_key()).to_string(),
        ),
        (TIMESTAMP_HEADER, timestamp_ms.to_string()),
        (NONCE_HEADER, nonce.to_hex()),
        (SIGNATURE_HEADER, hex::encode(sig.to_bytes())),
    ]
}

/// The signing headers of a request as it arrived, each `None` when absent.
#[derive(Debug, Clone, Copy, Default)]
pub struct AuthHeaders<'a> {
    pub signer: Option<&'a str>,
    pub timestamp: Option<&'a str>,
    pub nonce: Option<&'a str>,
    pub signature: Option<&'a str>,
}

impl<'a> AuthHeaders<'a> {
    /// The four headers, looked up by name with `get` (e.g. over an HTTP header map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<&'a str>) -> AuthHeaders<'a> {
        AuthHeaders {
            signer: get(SIGNER_HEADER),
            timestamp: get(TIMESTAMP_HEADER),
            nonce: get(NONCE_HEADER),
            signature: get(SIGNATURE_HEADER),
        }
    }
}

/// What a verified request proves: who signed it, when and with which nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedRequest {
    pub signer: Address,
    pub timestamp_ms: u64,
    pub nonce: RequestNonce,
}

/// Why a signed request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    Missing(&'static str),
    Malformed(&'static str),
    Stale {
        skew_ms: u64,
    },
    BadSignature,
    /// The signer already sent a request with this nonce within the skew window.
    Replayed,
    /// The signer has as many requests remembered as the verifier keeps for one signer (or
    /// for all); the oldest are forgotten as their timestamps leave the skew window.
    TooManyRequests {
        limit: usize,
    },
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthError::Missing(h) => write!(
                f,
                "header {h} is missing; sign the request with the lease's tenant key"
            ),
            AuthError::Malformed(h) => write!(f, "header {h} is malformed"),
            AuthError::Stale { skew_ms } => write!(
                f,
                "the request timestamp is {skew_ms} ms from the provider's clock (limit {MAX_CLOCK_SKEW_MS} ms); check your clock"
            ),
            AuthError::BadSignature => write!(
                f,
                "the request signature does not verify for the named signer"
            ),
            AuthError::Replayed => write!(
                f,
                "this signed request was already received (same signer and nonce); sign each \
                 request afresh with a new random nonce"
            ),
            AuthError::TooManyRequests { limit } => write!(
                f,
                "more than {limit} signed requests in the last {} minutes are remembered; wait \
                 a minute and retry",
                2 * MAX_CLOCK_SKEW_MS / 60_000
            ),
        }
    }
}

/// Verifies the signing headers and returns what they prove. It does not decide whether the
/// nonce was seen before: that is [`NonceBook::admit`]'s job, for verifiers that keep one.
pub fn verify_request(
    headers: &AuthHeaders<'_>,
    method: &str,
    path_and_query: &str,
    body: &[u8],
    now_ms: u64,
) -> Result<SignedRequest, AuthError> {
    let signer = headers.signer.ok_or(AuthError::Missing(SIGNER_HEADER))?;
    let timestamp = headers
        .timestamp
        .ok_or(AuthError::Missing(TIMESTAMP_HEADER))?;
    let nonce = headers.nonce.ok_or(AuthError::Missing(NONCE_HEADER))?;
    let signature = headers
        .signature
        .ok_or(AuthError::Missing(SIGNATURE_HEADER))?;
    let address = Address::parse(signer).map_err(|_| AuthError::Malformed(SIGNER_HEADER))?;
    let ts: u64 = timestamp
        .parse()
        .map_err(|_| AuthError::Malformed(TIMESTAMP_HEADER))?;
    let nonce = RequestNonce::from_hex(nonce).ok_or(AuthError::Malformed(NONCE_HEADER))?;
    let skew_ms = now_ms.abs_diff(ts);
    if skew_ms > MAX_CLOCK_SKEW_MS {
        return Err(AuthError::Stale { skew_ms });
    }
    let mut sig = [0u8; 64];
    hex::decode_to_slice(signature, &mut sig)
        .map_err(|_| AuthError::Malformed(SIGNATURE_HEADER))?;
    let key = address.verifying_key().ok_or(AuthError::BadSignature)?;
    key.verify_strict(
        &signing_bytes(method, path_and_query, ts, &nonce, body),
        &ed25519_dalek::Signature::from_bytes(&sig),
    )
    .map_err(|_| AuthError::BadSignature)?;
    Ok(SignedRequest {
        signer: address,
        timestamp_ms: ts,
        nonce,
    })
}

/// Requests remembered for one signer at most: over the ten minutes an entry can live, a
/// little over 27 requests a second — far above what `job logs --follow` (4 a second) or a
/// person needs.
pub const MAX_NONCES_PER_SIGNER: usize = 16_384;
/// Requests remembered for all signers together, at about 50 bytes each some 13 MiB.
pub const MAX_NONCES_TOTAL: usize = 262_144;
/// How often, at most, the whole book is swept of forgotten entries, in milliseconds.
const SWEEP_EVERY_MS: u64 = 60_000;

/// The nonces of accepted requests, per signer, each kept until its timestamp leaves the skew
/// window — after that the timestamp check refuses the request anyway. Bounded: at a cap it
/// first forgets what has expired, and if that is not enough it refuses the new request
/// ([`AuthError::TooManyRequests`]) rather than forget a live nonce, which would reopen a
/// replay. Pure: the caller passes the time; it is a `BTreeMap`, so nothing depends on hashing.
#[derive(Debug)]
pub struct NonceBook {
    /// Per signer: nonce → the time after which it can be forgotten, in ms.
    by_signer: BTreeMap<Address, BTreeMap<RequestNonce, u64>>,
    entries: usize,
    per_signer_cap: usize,
    total_cap: usize,
    next_sweep_ms: u64,
}

impl Default for NonceBook {
    fn default() -> NonceBook {
        NonceBook::with_caps(MAX_NONCES_PER_SIGNER, MAX_NONCES_TOTAL)
    }
}

impl NonceBook {
    /// A book that keeps at most `per_signer_cap` nonces for one signer and `total_cap` in all.
    pub fn with_caps(per_signer_cap: usize, total_cap: usize) -> NonceBook {
        NonceBook {
            by_signer: BTreeMap::new(),
            entries: 0,
            per_signer_cap,
            total_cap,
            next_sweep_ms: 0,
        }
    }

    /// Nonces remembered now, over all signers.
    pub fn len(&self) -> usize {
        self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Accepts `request` (already verified at `now_ms`) if its nonce is new for its signer and
    /// there is room to remember it.
    pub fn admit(&mut self, request: &SignedRequest, now_ms: u64) -> Result<(), AuthError> {
        if now_ms >= self.next_sweep_ms {
            self.sweep(now_ms);
            self.next_sweep_ms = now_ms.saturating_add(SWEEP_EVERY_MS);
        }
        if self
            .by_signer
            .get(&request.signer)
            .is_some_and(|n| n.contains_key(&request.nonce))
        {
            return Err(AuthError::Replayed);
        }
        if self.count(&request.signer) >= self.per_signer_cap {
            self.forget_expired(&request.signer, now_ms);
            if self.count(&request.signer) >= self.per_signer_cap {
                return Err(AuthError::TooManyRequests {
                    limit: self.per_signer_cap,
                });
            }
        }
        if self.entries >= self.total_cap {
            self.sweep(now_ms);
            if self.entries >= self.total_cap {
                return Err(AuthError::TooManyRequests {
                    limit: self.total_cap,
                });
            }
        }
        let forget_after_ms = request.timestamp_ms.saturating_add(MAX_CLOCK_SKEW_MS);
        self.by_signer
            .entry(request.signer)
            .or_default()
            .insert(request.nonce, forget_after_ms);
        self.entries += 1;
        Ok(())
    }

    fn count(&self, signer: &Address) -> usize {
        self.by_signer.get(signer).map_or(0, BTreeMap::len)
    }

    /// Drops `signer`'s nonces whose requests would now be refused as stale.
    fn forget_expired(&mut self, signer: &Address, now_ms: u64) {
        if let Some(nonces) = self.by_signer.get_mut(signer) {
            let before = nonces.len();
            nonces.retain(|_, forget_after_ms| *forget_after_ms >= now_ms);
            self.entries -= before - nonces.len();
            if nonces.is_empty() {
                self.by_signer.remove(signer);
            }
        }
    }

    /// Drops every signer's expired nonces.
    fn sweep(&mut self, now_ms: u64) {
        let mut entries = 0;
        self.by_signer.retain(|_, nonces| {
            nonces.retain(|_, forget_after_ms| *forget_after_ms >= now_ms);
            entries += nonces.len();
            !nonces.is_empty()
        });
        self.entries = entries;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = "/v1/leases/1/logs";

    fn key(seed: u8) -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
    }

    fn nonce(n: u128) -> RequestNonce {
        RequestNonce(n.to_be_bytes())
    }

    /// Signs a GET of [`PATH`] and verifies it as a server would at `now_ms`, with `change`
    /// applied to what arrives.
    fn check(
        ts: u64,
        now_ms: u64,
        change: impl FnOnce(&mut [(&'static str, String); 4], &mut String),
    ) -> Result<SignedRequest, AuthError> {
        let mut headers = sign_request(&key(3), "GET", PATH, ts, nonce(7), b"");
        let mut path = PATH.to_owned();
        change(&mut headers, &mut path);
        let get = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
        };
        verify_request(&AuthHeaders::from_lookup(get), "GET", &path, b"", now_ms)
    }

    #[test]
    fn a_signed_request_verifies_and_any_change_breaks_it() {
        assert_eq!(
            check(1_000, 1_500, |_, _| {}),
            Ok(SignedRequest {
                signer: Address::from_key(&key(3).verifying_key()),
                timestamp_ms: 1_000,
                nonce: nonce(7),
            })
        );
        assert_eq!(
            check(1_000, 1_500, |_, path| *path = "/v1/leases/2/logs".into()),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            check(1_000, 1_500, |h, _| h[2].1 = nonce(8).to_hex()),
            Err(AuthError::BadSignature),
            "the nonce is signed"
        );
        assert!(matches!(
            check(1_000, 1_000 + MAX_CLOCK_SKEW_MS + 1, |_, _| {}),
            Err(AuthError::Stale { .. })
        ));
        assert_eq!(
            check(1_000, 1_500, |h, _| h[2].1 = "xyz".into()),
            Err(AuthError::Malformed(NONCE_HEADER))
        );
        assert_eq!(
            check(1_000, 1_500, |h, _| h[0].0 = "x-other"),
            Err(AuthError::Missing(SIGNER_HEADER))
        );
        assert_eq!(
            check(1_000, 1_500, |h, _| h[2].0 = "x-other"),
            Err(AuthError::Missing(NONCE_HEADER))
        );
    }

    fn request(signer: u8, n: u128, ts: u64) -> SignedRequest {
        SignedRequest {
            signer: Address::from_key(&key(signer).verifying_key()),
            timestamp_ms: ts,
            nonce: nonce(n),
        }
    }

    #[test]
    fn the_same_nonce_is_accepted_once_per_signer_within_the_window() {
        let mut book = NonceBook::default();
        let now = 10_000_000;
        assert_eq!(book.admit(&request(1, 5, now), now), Ok(()));
        assert_eq!(
            book.admit(&request(1, 5, now), now + 1),
            Err(AuthError::Replayed)
        );
        // Even with another timestamp: the nonce alone makes it the same request.
        assert_eq!(
            book.admit(&request(1, 5, now + 10), now + 10),
            Err(AuthError::Replayed)
        );
        // Another signer's nonces are its own.
        assert_eq!(book.admit(&request(2, 5, now), now), Ok(()));
        // Remembered until the timestamp leaves the window, whatever sweeps run meanwhile.
        assert_eq!(
            book.admit(&request(1, 5, now), now + MAX_CLOCK_SKEW_MS),
            Err(AuthError::Replayed)
        );
    }

    #[test]
    fn a_flood_of_distinct_nonces_stays_within_the_caps() {
        let mut book = NonceBook::with_caps(100, 250);
        let now = 10_000_000;
        for n in 0..100 {
            assert_eq!(book.admit(&request(1, n, now), now), Ok(()));
        }
        // One signer at its cap is refused, not given room by forgetting live nonces.
        assert_eq!(
            book.admit(&request(1, 1_000, now), now),
            Err(AuthError::TooManyRequests { limit: 100 })
        );
        assert_eq!(
            book.admit(&request(1, 0, now), now),
            Err(AuthError::Replayed),
            "a refused flood forgot nothing"
        );
        // Many signers together meet the total cap.
        let mut refused = 0;
        for signer in 2..6 {
            for n in 0..100 {
                if book.admit(&request(signer, n, now), now).is_err() {
                    refused += 1;
                }
            }
        }
        assert_eq!(book.len(), 250);
        assert_eq!(refused, 4 * 100 - 150);
        // Once the timestamps leave the window the room comes back, and the count is exact.
        let later = now + MAX_CLOCK_SKEW_MS + 1;
        assert_eq!(book.admit(&request(1, 1_000, later), later), Ok(()));
        assert_eq!(book.len(), 1);
        for n in 0..99 {
            assert_eq!(book.admit(&request(1, 2_000 + n, later), later), Ok(()));
        }
        assert_eq!(book.len(), 100);
        assert!(matches!(
            book.admit(&request(1, 9_999, later), later),
            Err(AuthError::TooManyRequests { .. })
        ));
    }
}
