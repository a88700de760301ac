//! Sealed boxes: bytes encrypted to one X25519 public key, so that only the holder of its secret
//! can read them. The tenant seals a lease's manifest to the provider's registered
//! [`EncryptionKey`]; the provider seals each output file to the key the tenant put in the
//! manifest (`output_key`).
//!
//! Construction (version 1):
//!
//! - the sealer draws an ephemeral X25519 secret `e` (the caller supplies it: this crate draws
//!   no randomness) and computes `shared = X25519(e, recipient)`; a shared secret that is all
//!   zeros (a low-order recipient or ephemeral key) is refused;
//! - `key = BLAKE3-derive_key(purpose label, shared ‖ E ‖ recipient ‖ lease id as u64 LE)`,
//!   where `E` is the ephemeral public key and the label is `gpunet manifest v1` or
//!   `gpunet output v1`. Both public keys, the purpose and the lease are bound into the key, so
//!   bytes sealed for one lease or one purpose do not open as another;
//! - the plaintext is cut into chunks of [`SEALED_CHUNK_BYTES`] (the last may be shorter, and is
//!   empty only when the whole plaintext is) and each is encrypted with ChaCha20-Poly1305 under
//!   `key`, with the nonce `chunk index (u64 BE) ‖ 0 0 0 ‖ last-chunk flag` — the STREAM
//!   construction, so chunks cannot be reordered, dropped or the stream cut short unnoticed.
//!   A fresh ephemeral key gives a fresh `key` every time, so counter nonces never repeat.
//!
//! Wire form: `E` (32 bytes), then each chunk's ciphertext followed by its 16-byte tag.
//! Chunking lets the agent seal a large output file as it streams it.
//!
//! Architecture Invariant: pure — no I/O and no randomness; callers supply ephemeral secrets.

use std::fmt;
use std::str::FromStr;

use borsh::{BorshDeserialize, BorshSerialize};
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::LeaseId;

/// Bytes before the first chunk: the ephemeral public key.
pub const SEALED_HEADER_BYTES: usize = 32;
/// Plaintext bytes per chunk (every chunk but the last is exactly this long).
pub const SEALED_CHUNK_BYTES: usize = 64 * 1024;
/// Authentication tag after each chunk's ciphertext.
pub const SEALED_TAG_BYTES: usize = 16;
/// BLAKE3 `derive_key` context for the output key a tenant derives from its account key.
pub const OUTPUT_KEY_CONTEXT: &str = "gpunet output key v1";

/// An X25519 public key: a provider's registered encryption key, or a tenant's output key.
/// JSON shows it as 64 hex characters.
#[derive(
    Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize,
)]
pub struct EncryptionKey(pub [u8; 32]);

impl EncryptionKey {
    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Result<EncryptionKey, SealError> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut out).map_err(|_| SealError::BadKey {
            given: s.to_owned(),
        })?;
        Ok(EncryptionKey(out))
    }

    /// Whether this is the all-zero key, which nothing can be sealed to.
    pub fn is_zero(&self) -> bool {
        self.0 == [0u8; 32]
    }
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EncryptionKey({})", self.to_hex())
    }
}

impl fmt::Display for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl FromStr for EncryptionKey {
    type Err = SealError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EncryptionKey::from_hex(s)
    }
}

impl Serialize for EncryptionKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for EncryptionKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as Deserialize>::deserialize(d)?;
        EncryptionKey::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

/// An X25519 secret. Its `Debug` never shows the bytes; it is wiped from memory when dropped.
#[derive(Clone)]
pub struct EncryptionSecret(x25519_dalek::StaticSecret);

impl EncryptionSecret {
    pub fn from_bytes(bytes: [u8; 32]) -> EncryptionSecret {
        EncryptionSecret(x25519_dalek::StaticSecret::from(bytes))
    }

    /// The secret's bytes, for writing it to a key file.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The public key others seal to.
    pub fn public(&self) -> EncryptionKey {
        EncryptionKey(x25519_dalek::PublicKey::from(&self.0).to_bytes())
    }

    /// The output secret of a tenant, derived from its ed25519 account secret so that it can
    /// always be derived again and never needs storing: `derive_key(OUTPUT_KEY_CONTEXT, secret)`.
    pub fn derive_from_account_secret(account_secret: &[u8; 32]) -> EncryptionSecret {
        EncryptionSecret::from_bytes(blake3::derive_key(OUTPUT_KEY_CONTEXT, account_secret))
    }
}

impl fmt::Debug for EncryptionSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EncryptionSecret(public {})", self.public())
    }
}

/// What sealed bytes are for; each purpose has its own key-derivation label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A lease's manifest, sealed by the tenant to the provider.
    Manifest,
    /// One output file of a lease, sealed by the provider to the tenant.
    Output,
}

impl Purpose {
    /// The BLAKE3 `derive_key` context of this purpose.
    pub fn label(self) -> &'static str {
        match self {
            Purpose::Manifest => "gpunet manifest v1",
            Purpose::Output => "gpunet output v1",
        }
    }
}

/// What sealed bytes are bound to: opening needs the same purpose and lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealContext {
    pub purpose: Purpose,
    pub lease: LeaseId,
}

/// Why bytes could not be sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("{given:?} is not an encryption key; expected 64 hex characters")]
    BadKey { given: String },
    #[error(
        "the encryption key is a low-order point, so nothing sealed to it would be secret; \
         register a key made from a random secret"
    )]
    WeakKey,
    #[error("the sealed bytes are {bytes} long, too short for a header and one tag ({min} bytes)")]
    Truncated { bytes: usize, min: usize },
    #[error(
        "the sealed bytes do not open: they were sealed to another key, for another lease or \
         purpose, or altered on the way"
    )]
    Unreadable,
}

/// The sealed length of `plaintext_bytes` of plaintext.
pub fn sealed_len(plaintext_bytes: u64) -> u64 {
    let chunks = plaintext_bytes.div_ceil(SEALED_CHUNK_BYTES as u64).max(1);
    SEALED_HEADER_BYTES as u64 + chunks * SEALED_TAG_BYTES as u64 + plaintext_bytes
}

fn derive_cipher(
    shared: &x25519_dalek::SharedSecret,
    ephemeral: &EncryptionKey,
    recipient: &EncryptionKey,
    ctx: SealContext,
) -> Result<ChaCha20Poly1305, SealError> {
    if !shared.was_contributory() {
        return Err(SealError::WeakKey);
    }
    let mut material = [0u8; 32 * 3 + 8];
    material[..32].copy_from_slice(shared.as_bytes());
    material[32..64].copy_from_slice(&ephemeral.0);
    material[64..96].copy_from_slice(&recipient.0);
    material[96..].copy_from_slice(&ctx.lease.0.to_le_bytes());
    let key = blake3::derive_key(ctx.purpose.label(), &material);
    material.fill(0);
    Ok(ChaCha20Poly1305::new(Key::from_slice(&key)))
}

fn chunk_nonce(index: u64, last: bool) -> [u8; 12] {
    let mut nonce = [0u8; 12];
    nonce[..8].copy_from_slice(&index.to_be_bytes());
    nonce[11] = u8::from(last);
    nonce
}

/// Seals a stream chunk by chunk; [`seal`] is the one-shot form.
pub struct Sealer {
    cipher: ChaCha20Poly1305,
    next_index: u64,
    finished: bool,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("next_index", &self.next_index)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl Sealer {
    /// A sealer to `recipient` with the caller's fresh random `ephemeral` secret (never reuse
    /// one), and the header to send before the first chunk.
    pub fn new(
        recipient: &EncryptionKey,
        ephemeral: EncryptionSecret,
        ctx: SealContext,
    ) -> Result<(Sealer, [u8; SEALED_HEADER_BYTES]), SealError> {
        let header = ephemeral.public();
        let shared = ephemeral
            .0
            .diffie_hellman(&x25519_dalek::PublicKey::from(recipient.0));
        let cipher = derive_cipher(&shared, &header, recipient, ctx)?;
        let sealer = Sealer {
            cipher,
            next_index: 0,
            finished: false,
        };
        Ok((sealer, header.0))
    }

    /// Seals the next chunk: exactly [`SEALED_CHUNK_BYTES`] unless `last`, at most that when
    /// `last`, and nothing after the last.
    pub fn seal_chunk(&mut self, chunk: &[u8], last: bool) -> Vec<u8> {
        assert!(!self.finished, "a chunk was sealed after the last one");
        assert!(
            chunk.len() == SEALED_CHUNK_BYTES || (last && chunk.len() < SEALED_CHUNK_BYTES),
            "a chunk of {} bytes (last: {last}) breaks the chunking rule",
            chunk.len()
        );
        let nonce = chunk_nonce(self.next_index, last);
        self.next_index += 1;
        self.finished = last;
        self.cipher
            .encrypt(Nonce::from_slice(&nonce), chunk)
            .expect("ChaCha20-Poly1305 encrypts any chunk of at most 64 KiB")
    }
}

/// Seals `plaintext` to `recipient` in one go.
pub fn seal(
    recipient: &EncryptionKey,
    ephemeral: EncryptionSecret,
    ctx: SealContext,
    plaintext: &[u8],
) -> Result<Vec<u8>, SealError> {
    let (mut sealer, header) = Sealer::new(recipient, ephemeral, ctx)?;
    let total = usize::try_from(sealed_len(plaintext.len() as u64))
        .expect("a plaintext held in memory has a sealed length that fits in memory");
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&header);
    let mut chunks = plaintext.chunks(SEALED_CHUNK_BYTES).peekable();
    if chunks.peek().is_none() {
        out.extend(sealer.seal_chunk(&[], true));
    }
    while let Some(chunk) = chunks.next() {
        out.extend(sealer.seal_chunk(chunk, chunks.peek().is_none()));
    }
    Ok(out)
}

/// Opens bytes sealed to `secret`'s public key for `ctx`. Any change to them — a flipped bit, a
/// dropped, reordered or appended chunk, a cut — makes this fail.
pub fn open(
    secret: &EncryptionSecret,
    ctx: SealContext,
    sealed: &[u8],
) -> Result<Vec<u8>, SealError> {
    let min = SEALED_HEADER_BYTES + SEALED_TAG_BYTES;
    if sealed.len() < min {
        return Err(SealError::Truncated {
            bytes: sealed.len(),
            min,
        });
    }
    let (header, body) = sealed.split_at(SEALED_HEADER_BYTES);
    let mut ephemeral = [0u8; 32];
    ephemeral.copy_from_slice(header);
    let ephemeral = EncryptionKey(ephemeral);
    let shared = secret
        .0
        .diffie_hellman(&x25519_dalek::PublicKey::from(ephemeral.0));
    let cipher = derive_cipher(&shared, &ephemeral, &secret.public(), ctx)
        .map_err(|_| SealError::Unreadable)?;
    let mut out = Vec::with_capacity(body.len());
    let mut pieces = body
        .chunks(SEALED_CHUNK_BYTES + SEALED_TAG_BYTES)
        .peekable();
    let mut index = 0u64;
    while let Some(piece) = pieces.next() {
        let last = pieces.peek().is_none();
        let nonce = chunk_nonce(index, last);
        let plain = cipher
            .decrypt(Nonce::from_slice(&nonce), piece)
            .map_err(|_| SealError::Unreadable)?;
        out.extend_from_slice(&plain);
        index += 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(seed: u8) -> EncryptionSecret {
        EncryptionSecret::from_bytes([seed; 32])
    }

    fn ctx(purpose: Purpose, lease: u64) -> SealContext {
        SealContext {
            purpose,
            lease: LeaseId(lease),
        }
    }

    fn sealed(plaintext: &[u8]) -> Vec<u8> {
        seal(
            &secret(1).public(),
            secret(9),
            ctx(Purpose::Manifest, 7),
            plaintext,
        )
        .expect("seals")
    }

    #[test]
    fn sealed_bytes_open_with_the_recipients_secret_at_every_size() {
        let sizes = [
            0,
            1,
            100,
            SEALED_CHUNK_BYTES - 1,
            SEALED_CHUNK_BYTES,
            SEALED_CHUNK_BYTES + 1,
            3 * SEALED_CHUNK_BYTES,
        ];
        for size in sizes {
            let plaintext: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let bytes = sealed(&plaintext);
            assert_eq!(bytes.len() as u64, sealed_len(size as u64), "{size}");
            let opened = open(&secret(1), ctx(Purpose::Manifest, 7), &bytes).expect("opens");
            assert_eq!(opened, plaintext, "{size}");
            if size > 32 {
                assert!(
                    !bytes.windows(32).any(|w| w == &plaintext[..32]),
                    "the plaintext shows through"
                );
            }
        }
    }

    #[test]
    fn streaming_and_one_shot_sealing_agree() {
        let plaintext = vec![5u8; SEALED_CHUNK_BYTES + 10];
        let (mut sealer, header) =
            Sealer::new(&secret(1).public(), secret(9), ctx(Purpose::Output, 7)).expect("new");
        let mut streamed = header.to_vec();
        streamed.extend(sealer.seal_chunk(&plaintext[..SEALED_CHUNK_BYTES], false));
        streamed.extend(sealer.seal_chunk(&plaintext[SEALED_CHUNK_BYTES..], true));
        let one_shot = seal(
            &secret(1).public(),
            secret(9),
            ctx(Purpose::Output, 7),
            &plaintext,
        )
        .expect("seals");
        assert_eq!(streamed, one_shot);
    }

    #[test]
    fn the_wrong_secret_purpose_or_lease_cannot_open() {
        let bytes = sealed(b"the manifest");
        for (who, purpose, lease) in [
            (secret(2), Purpose::Manifest, 7),
            (secret(9), Purpose::Manifest, 7),
            (secret(1), Purpose::Output, 7),
            (secret(1), Purpose::Manifest, 8),
        ] {
            assert_eq!(
                open(&who, ctx(purpose, lease), &bytes),
                Err(SealError::Unreadable),
                "{purpose:?} {lease}"
            );
        }
    }

    #[test]
    fn any_change_to_sealed_bytes_is_detected() {
        let plaintext = vec![3u8; 2 * SEALED_CHUNK_BYTES + 5];
        let bytes = sealed(&plaintext);
        let piece = SEALED_CHUNK_BYTES + SEALED_TAG_BYTES;
        let open_it = |b: &[u8]| open(&secret(1), ctx(Purpose::Manifest, 7), b);
        for at in [0, 31, 32, 40, SEALED_HEADER_BYTES + piece, bytes.len() - 1] {
            let mut tampered = bytes.clone();
            tampered[at] ^= 1;
            assert!(open_it(&tampered).is_err(), "flipped byte {at}");
        }
        // Cut after a whole chunk: the stream must end with a chunk sealed as the last.
        let cut = &bytes[..SEALED_HEADER_BYTES + piece];
        assert_eq!(open_it(cut), Err(SealError::Unreadable));
        // Chunks swapped.
        let mut swapped = bytes[..SEALED_HEADER_BYTES].to_vec();
        swapped.extend_from_slice(
            &bytes[SEALED_HEADER_BYTES + piece..SEALED_HEADER_BYTES + 2 * piece],
        );
        swapped.extend_from_slice(&bytes[SEALED_HEADER_BYTES..SEALED_HEADER_BYTES + piece]);
        swapped.extend_from_slice(&bytes[SEALED_HEADER_BYTES + 2 * piece..]);
        assert_eq!(open_it(&swapped), Err(SealError::Unreadable));
        // Appended bytes, and bytes too short to hold anything.
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(open_it(&longer), Err(SealError::Unreadable));
        assert!(matches!(
            open_it(&bytes[..40]),
            Err(SealError::Truncated { .. })
        ));
    }

    #[test]
    fn low_order_keys_are_refused() {
        // The all-zero point (and every other low-order point) gives an all-zero shared secret.
        let zero = EncryptionKey([0; 32]);
        assert_eq!(
            seal(&zero, secret(9), ctx(Purpose::Manifest, 1), b"x").map(|_| ()),
            Err(SealError::WeakKey)
        );
        let mut bytes = sealed(b"x");
        bytes[..32].fill(0);
        assert_eq!(
            open(&secret(1), ctx(Purpose::Manifest, 7), &bytes),
            Err(SealError::Unreadable)
        );
    }

    #[test]
    fn keys_show_as_hex_and_secrets_never_show() {
        let s = secret(1);
        let key = s.public();
        let json = serde_json::to_string(&key).expect("serialises");
        assert_eq!(json, format!("\"{}\"", key.to_hex()));
        assert_eq!(
            serde_json::from_str::<EncryptionKey>(&json).expect("parses"),
            key
        );
        assert!(EncryptionKey::from_hex("abc").is_err());
        let shown = format!("{s:?}");
        assert!(!shown.contains(&hex::encode([1u8; 32])), "{shown}");
        let derived = EncryptionSecret::derive_from_account_secret(&[4; 32]);
        assert_eq!(
            derived.public(),
            EncryptionSecret::derive_from_account_secret(&[4; 32]).public()
        );
        assert_ne!(derived.to_bytes(), [4; 32]);
    }
}
