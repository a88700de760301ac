//! The randomness behind sealed boxes and signed requests: `gpunet_protocol::sealed` and
//! `gpunet_api::auth` are pure and take ephemeral seeds and request nonces from their caller;
//! these wrappers draw them (and manifest salts and secrets) from the operating system.

use gpunet_protocol::jobspec::Salt;
use gpunet_protocol::sealed::{self, SEALED_HEADER_BYTES, Sealer};
use gpunet_protocol::{EncryptionKey, EncryptionSecret, EphemeralSeed, SealContext, SealError};
use rand_core::RngCore;

/// 32 bytes from the operating system's randomness (a stream's key).
pub fn random_key_bytes() -> [u8; 32] {
    random_bytes()
}

fn random_bytes() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut bytes);
    bytes
}

/// A fresh X25519 secret from the operating system's randomness.
pub fn random_secret() -> EncryptionSecret {
    EncryptionSecret::from_bytes(random_bytes())
}

/// A fresh seed for one sealed box's ephemeral key.
fn random_seed() -> EphemeralSeed {
    EphemeralSeed::from_random_bytes(random_bytes())
}

/// A fresh nonce for one signed request.
pub fn random_request_nonce() -> gpunet_api::auth::RequestNonce {
    let mut bytes = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut bytes);
    gpunet_api::auth::RequestNonce(bytes)
}

/// A fresh manifest salt.
pub fn random_salt() -> Salt {
    Salt(random_bytes())
}

/// Seals `plaintext` to `recipient` for `ctx` with a fresh ephemeral key.
pub fn seal(
    recipient: &EncryptionKey,
    ctx: SealContext,
    plaintext: &[u8],
) -> Result<Vec<u8>, SealError> {
    sealed::seal(recipient, random_seed(), ctx, plaintext)
}

/// A streaming sealer to `recipient` for `ctx` with a fresh ephemeral key, and its header.
pub fn sealer(
    recipient: &EncryptionKey,
    ctx: SealContext,
) -> Result<(Sealer, [u8; SEALED_HEADER_BYTES]), SealError> {
    Sealer::new(recipient, random_seed(), ctx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpunet_protocol::{LeaseId, Purpose};

    #[test]
    fn each_seal_uses_a_fresh_ephemeral_key() {
        let me = random_secret();
        let ctx = SealContext {
            purpose: Purpose::Manifest,
            lease: LeaseId(1),
        };
        let a = seal(&me.public(), ctx, b"same").expect("seals");
        let b = seal(&me.public(), ctx, b"same").expect("seals");
        assert_ne!(a, b);
        assert_eq!(sealed::open(&me, ctx, &a).expect("opens"), b"same");
        assert_ne!(random_salt(), random_salt());
    }
}
