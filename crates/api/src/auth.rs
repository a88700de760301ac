//! Signed HTTP requests. A tenant proves to a provider agent that it is the lease's tenant by
//! signing the method, path, a timestamp and the body's hash with its account key. The agent
//! checks the signer against the lease's tenant on chain and refuses stale timestamps, so a
//! captured request cannot be replayed later.

use gpunet_protocol::Address;

pub const SIGNER_HEADER: &str = "x-gpunet-signer";
pub const TIMESTAMP_HEADER: &str = "x-gpunet-timestamp-ms";
pub const SIGNATURE_HEADER: &str = "x-gpunet-signature";
/// How far a request's timestamp may be from the server's clock, in milliseconds.
pub const MAX_CLOCK_SKEW_MS: u64 = 5 * 60 * 1000;
const DOMAIN: &[u8] = b"gpunet/request/v1\0";

/// The bytes a request signature covers.
pub fn signing_bytes(
    method: &str,
    path_and_query: &str,
    timestamp_ms: u64,
    body: &[u8],
) -> Vec<u8> {
    let mut out = DOMAIN.to_vec();
    out.extend_from_slice(method.to_ascii_uppercase().as_bytes());
    out.push(b'\n');
    out.extend_from_slice(path_and_query.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(timestamp_ms.to_string().as_bytes());
    out.push(b'\n');
    out.extend_from_slice(blake3::hash(body).to_hex().as_bytes());
    out
}

/// The three header values for a request.
pub fn sign_request(
    key: &ed25519_dalek::SigningKey,
    method: &str,
    path_and_query: &str,
    timestamp_ms: u64,
    body: &[u8],
) -> [(&'static str, String); 3] {
    use ed25519_dalek::Signer;
    let sig = key.sign(&signing_bytes(method, path_and_query, timestamp_ms, body));
    [
        (
            SIGNER_HEADER,
            Address::from_key(&key.verifying_key()).to_string(),
        ),
        (TIMESTAMP_HEADER, timestamp_ms.to_string()),
        (SIGNATURE_HEADER, hex::encode(sig.to_bytes())),
    ]
}

/// Why a signed request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    Missing(&'static str),
    Malformed(&'static str),
    Stale { skew_ms: u64 },
    BadSignature,
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
        }
    }
}

/// Verifies the three header values and returns the signer.
pub fn verify_request(
    signer: Option<&str>,
    timestamp: Option<&str>,
    signature: Option<&str>,
    method: &str,
    path_and_query: &str,
    body: &[u8],
    now_ms: u64,
) -> Result<Address, AuthError> {
    let signer = signer.ok_or(AuthError::Missing(SIGNER_HEADER))?;
    let timestamp = timestamp.ok_or(AuthError::Missing(TIMESTAMP_HEADER))?;
    let signature = signature.ok_or(AuthError::Missing(SIGNATURE_HEADER))?;
    let address = Address::parse(signer).map_err(|_| AuthError::Malformed(SIGNER_HEADER))?;
    let ts: u64 = timestamp
        .parse()
        .map_err(|_| AuthError::Malformed(TIMESTAMP_HEADER))?;
    let skew_ms = now_ms.abs_diff(ts);
    if skew_ms > MAX_CLOCK_SKEW_MS {
        return Err(AuthError::Stale { skew_ms });
    }
    let mut sig = [0u8; 64];
    hex::decode_to_slice(signature, &mut sig)
        .map_err(|_| AuthError::Malformed(SIGNATURE_HEADER))?;
    let key = address.verifying_key().ok_or(AuthError::BadSignature)?;
    key.verify_strict(
        &signing_bytes(method, path_and_query, ts, body),
        &ed25519_dalek::Signature::from_bytes(&sig),
    )
    .map_err(|_| AuthError::BadSignature)?;
    Ok(address)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_request_verifies_and_any_change_breaks_it() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
        let [(_, signer), (_, ts), (_, sig)] =
            sign_request(&key, "GET", "/v1/leases/1/logs", 1_000, b"");
        let ok = verify_request(
            Some(&signer),
            Some(&ts),
            Some(&sig),
            "GET",
            "/v1/leases/1/logs",
            b"",
            1_500,
        );
        assert_eq!(ok, Ok(Address::from_key(&key.verifying_key())));
        let other_path = verify_request(
            Some(&signer),
            Some(&ts),
            Some(&sig),
            "GET",
            "/v1/leases/2/logs",
            b"",
            1_500,
        );
        assert_eq!(other_path, Err(AuthError::BadSignature));
        let stale = verify_request(
            Some(&signer),
            Some(&ts),
            Some(&sig),
            "GET",
            "/v1/leases/1/logs",
            b"",
            1_000 + MAX_CLOCK_SKEW_MS + 1,
        );
        assert!(matches!(stale, Err(AuthError::Stale { .. })));
        let missing = verify_request(
            None,
            Some(&ts),
            Some(&sig),
            "GET",
            "/v1/leases/1/logs",
            b"",
            1_500,
        );
        assert_eq!(missing, Err(AuthError::Missing(SIGNER_HEADER)));
    }
}
