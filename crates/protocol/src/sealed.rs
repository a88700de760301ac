//! Sealed boxes: bytes encrypted to one X25519 public key, so that only the holder of its secret
//! can read them. The tenant seals a lease's manifest to the provider's registered
//! [`EncryptionKey`]; the provider seals each output file, and each slice of the lease's log, to
//! the key the tenant put in the manifest (`output_key`).
//!
//! Format version 2 is HPKE (RFC 9180) in base mode with the suite DHKEM(X25519, HKDF-SHA256),
//! HKDF-SHA256, ChaCha20-Poly1305, from the `hpke` crate — a published, reviewed construction
//! rather than one of our own (see `docs/adr/0002-sealing-with-hpke.md`):
//!
//! - the sender encapsulates to the recipient's key with an ephemeral key pair derived (HPKE's
//!   `DeriveKeyPair`) from 32 random bytes the caller supplies as an [`EphemeralSeed`]: this
//!   crate draws no randomness;
//! - HPKE's `info` is the purpose's label followed by the lease id (u64 big-endian), so bytes
//!   sealed for one lease or one purpose do not open as another;
//! - the plaintext is cut into chunks of [`SEALED_CHUNK_BYTES`] (the last may be shorter, and
//!   is empty only when the whole plaintext is), each sealed in order with the one HPKE context.
//!   HPKE's sequence number is in every chunk's nonce, so chunks cannot be dropped or reordered;
//!   each chunk's associated data is one byte that says whether it is the last, so a stream cut
//!   at a chunk boundary, or extended past its last chunk, does not open either.
//!
//! Wire form: the tag `gpn`, the format version byte (2), HPKE's encapsulated key (32 bytes),
//! then each chunk's ciphertext followed by its 16-byte tag. Version 1 (a hand-made X25519,
//! BLAKE3 and ChaCha20-Poly1305 STREAM composition) had no tag and is refused with
//! [`SealError::UnknownFormat`]. Chunking lets the agent seal a large output file as it streams.
//!
//! Architecture Invariant: pure — no I/O and no randomness; callers supply ephemeral seeds.

use std::fmt;
use std::str::FromStr;

use borsh::{BorshDeserialize, BorshSerialize};
use hpke::aead::{AeadCtxR, AeadCtxS, ChaCha20Poly1305};
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem, OpModeR, OpModeS, Serializable};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::LeaseId;

/// The three bytes every sealed box starts with, before its format version.
pub const SEALED_TAG: [u8; 3] = *b"gpn";
/// The format version this code writes and reads.
pub const SEALED_VERSION: u8 = 2;
/// Bytes before the first chunk: the tag, the version and HPKE's encapsulated key.
pub const SEALED_HEADER_BYTES: usize = SEALED_TAG.len() + 1 + 32;
/// Plaintext bytes per chunk (every chunk but the last is exactly this long).
pub const SEALED_CHUNK_BYTES: usize = 64 * 1024;
/// Authentication tag after each chunk's ciphertext.
pub const SEALED_TAG_BYTES: usize = 16;
/// BLAKE3 `derive_key` context for the output key a tenant derives from its account key.
pub const OUTPUT_KEY_CONTEXT: &str = "gpunet output key v1";

/// HPKE's suite for sealed boxes; the names say which RFC 9180 algorithms they are.
type SuiteAead = ChaCha20Poly1305;
type SuiteKdf = HkdfSha256;
type SuiteKem = X25519HkdfSha256;
type SenderContext = AeadCtxS<SuiteAead, SuiteKdf, SuiteKem>;
type ReceiverContext = AeadCtxR<SuiteAead, SuiteKdf, SuiteKem>;

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

/// What sealed bytes are for; each purpose has its own label in HPKE's `info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A lease's manifest, sealed by the tenant to the provider.
    Manifest,
    /// One output file of a lease, sealed by the provider to the tenant.
    Output,
    /// A slice of a lease's log, sealed by the provider to the tenant.
    Logs,
    /// A lease's packed inputs (`crate::inputs`), sealed by the tenant to the provider.
    Inputs,
    /// A job's packed checkpoint directory, sealed by the provider of one attempt to the job's
    /// checkpoint key and opened by the next attempt's provider. Bound to the order, not the
    /// lease: see [`SealContext::checkpoint`].
    Checkpoint,
    /// A job's packed inputs, sealed by the tenant to the job's checkpoint key and left in the
    /// job's own bucket, for every attempt's provider to fetch. Bound to the manifest's salt,
    /// not a lease: see [`SealContext::job_inputs`].
    JobInputs,
    /// One run's declared outputs of a `compare: tensors` order ([`crate::RunBundle`]), sealed
    /// by the tenant to the verifier the ledger chose. Bound to the run's lease.
    Verdict,
    /// A command to run inside a lease's workload (`job exec`), sealed by the tenant to the
    /// provider.
    Exec,
    /// What that command gave, sealed by the provider to the tenant's output key.
    ExecOutput,
    /// The opening of a shell stream into a lease's workload (`job shell`): the command and
    /// the stream's key ([`crate::stream`]), sealed by the tenant to the provider.
    Shell,
}

impl Purpose {
    /// The label that starts HPKE's `info` for this purpose. Never change one: bytes sealed
    /// under it would stop opening.
    pub fn label(self) -> &'static str {
        match self {
            Purpose::Manifest => "gpunet/sealed/v2/manifest",
            Purpose::Output => "gpunet/sealed/v2/output",
            Purpose::Logs => "gpunet/sealed/v2/logs",
            Purpose::Inputs => "gpunet/sealed/v2/inputs",
            Purpose::Checkpoint => "gpunet/sealed/v2/checkpoint",
            Purpose::JobInputs => "gpunet/sealed/v2/job-inputs",
            Purpose::Verdict => "gpunet/sealed/v2/verdict-run",
            Purpose::Exec => "gpunet/sealed/v2/exec",
            Purpose::ExecOutput => "gpunet/sealed/v2/exec-output",
            Purpose::Shell => "gpunet/sealed/v2/shell",
        }
    }
}

/// What sealed bytes are bound to: opening needs the same purpose and lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealContext {
    pub purpose: Purpose,
    pub lease: LeaseId,
}

impl SealContext {
    /// A job's checkpoints: purpose [`Purpose::Checkpoint`], bound to the order (every attempt
    /// of a job is a different lease, and the next one must open what the last one sealed).
    /// The order id takes the id's place in `info`; the purpose's own label keeps it apart
    /// from any lease's context.
    pub fn checkpoint(order: crate::OrderId) -> SealContext {
        SealContext {
            purpose: Purpose::Checkpoint,
            lease: LeaseId(order.0),
        }
    }

    /// A job's inputs in its own bucket: purpose [`Purpose::JobInputs`], bound to the
    /// manifest's salt (its first 8 bytes, big-endian, in the id's place). The order does not
    /// exist yet when the tenant seals them (the manifest, which names the sealed blob, is what
    /// the order commits to), and every attempt's provider reads the salt from the manifest it
    /// was given. The key they are sealed to is fresh for every job (`checkpoint_key`), so the
    /// salt only adds that a blob sealed for one submission does not open as another's, should
    /// a key ever be reused.
    pub fn job_inputs(salt: &crate::jobspec::Salt) -> SealContext {
        let mut id = [0u8; 8];
        id.copy_from_slice(&salt.0[..8]);
        SealContext {
            purpose: Purpose::JobInputs,
            lease: LeaseId(u64::from_be_bytes(id)),
        }
    }

    /// HPKE's `info`: the purpose's label, then the lease id (u64 big-endian). The id has a
    /// fixed width at the end, so no two contexts give the same bytes.
    fn info(self) -> Vec<u8> {
        let mut info = self.purpose.label().as_bytes().to_vec();
        info.extend_from_slice(&self.lease.0.to_be_bytes());
        info
    }
}

/// 32 random bytes from the caller, from which the sealer derives its ephemeral HPKE key pair
/// (RFC 9180 `DeriveKeyPair`). Draw a fresh one for every box: a repeated seed repeats the key
/// and the nonces. Its `Debug` never shows the bytes.
#[derive(Clone)]
pub struct EphemeralSeed([u8; 32]);

impl EphemeralSeed {
    /// A seed from 32 bytes of the operating system's (or a seeded test's) randomness.
    pub fn from_random_bytes(bytes: [u8; 32]) -> EphemeralSeed {
        EphemeralSeed(bytes)
    }
}

impl fmt::Debug for EphemeralSeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EphemeralSeed(..)")
    }
}

impl Drop for EphemeralSeed {
    fn drop(&mut self) {
        self.0.fill(0);
    }
}

/// The one "random" draw HPKE's encapsulation makes, answered with the caller's seed: this is
/// how the crate stays free of randomness while `hpke` asks for an RNG. X25519's key generation
/// reads exactly one 32-byte block; any other read is a change in `hpke` that must not go
/// unnoticed, so it stops the program rather than hand out repeated bytes.
struct SeedRng(Option<EphemeralSeed>);

impl hpke::rand_core::RngCore for SeedRng {
    fn next_u32(&mut self) -> u32 {
        unreachable!("hpke's X25519 encapsulation reads one 32-byte block, not a u32")
    }

    fn next_u64(&mut self) -> u64 {
        unreachable!("hpke's X25519 encapsulation reads one 32-byte block, not a u64")
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        let seed = self
            .0
            .take()
            .expect("hpke's X25519 encapsulation reads the ephemeral seed once");
        assert_eq!(
            dest.len(),
            seed.0.len(),
            "hpke's X25519 encapsulation reads exactly 32 bytes"
        );
        dest.copy_from_slice(&seed.0);
    }
}

impl hpke::rand_core::CryptoRng for SeedRng {}

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
        "the bytes do not start with the sealed-box tag \"gpn\": they are not sealed bytes, or \
         were sealed in format 1 by a gpunet older than this one; seal them again"
    )]
    UnknownFormat,
    #[error(
        "the bytes are sealed in format version {version}, and this gpunet reads version \
         {SEALED_VERSION} only; upgrade gpunet, or seal them again"
    )]
    UnsupportedVersion { version: u8 },
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

/// Each chunk's associated data: whether it is the last. Binding it is what makes a stream cut
/// at a chunk boundary fail to open — HPKE's sequence numbers alone only order the chunks.
fn chunk_aad(last: bool) -> [u8; 1] {
    [u8::from(last)]
}

/// HPKE's sender side: encapsulate to `recipient` with the key pair derived from `seed`, and
/// the context that seals the chunks in order.
fn setup_sender(
    recipient: &EncryptionKey,
    seed: EphemeralSeed,
    info: &[u8],
) -> Result<([u8; 32], SenderContext), SealError> {
    let recipient = <SuiteKem as Kem>::PublicKey::from_bytes(&recipient.0)
        .expect("any 32 bytes are an X25519 public key");
    let (encapped, ctx) = hpke::setup_sender::<SuiteAead, SuiteKdf, SuiteKem, _>(
        &OpModeS::Base,
        &recipient,
        info,
        &mut SeedRng(Some(seed)),
    )
    // The only failure of X25519 encapsulation: an all-zero shared secret (RFC 9180 §7.1.4).
    .map_err(|_| SealError::WeakKey)?;
    let mut enc = [0u8; 32];
    enc.copy_from_slice(&encapped.to_bytes());
    Ok((enc, ctx))
}

/// HPKE's receiver side for the encapsulated key `enc`.
fn setup_receiver(
    secret: &EncryptionSecret,
    enc: &[u8],
    info: &[u8],
) -> Result<ReceiverContext, SealError> {
    let secret = <SuiteKem as Kem>::PrivateKey::from_bytes(&secret.to_bytes())
        .expect("any 32 bytes are an X25519 secret");
    let encapped = <SuiteKem as Kem>::EncappedKey::from_bytes(enc)
        .expect("the header holds exactly 32 bytes of encapsulated key");
    hpke::setup_receiver::<SuiteAead, SuiteKdf, SuiteKem>(&OpModeR::Base, &secret, &encapped, info)
        .map_err(|_| SealError::Unreadable)
}

/// Seals a stream chunk by chunk; [`seal`] is the one-shot form.
pub struct Sealer {
    ctx: SenderContext,
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
    /// A sealer to `recipient` whose ephemeral key comes from the caller's fresh random `seed`
    /// (never reuse one), and the header to send before the first chunk.
    pub fn new(
        recipient: &EncryptionKey,
        seed: EphemeralSeed,
        ctx: SealContext,
    ) -> Result<(Sealer, [u8; SEALED_HEADER_BYTES]), SealError> {
        let (enc, hpke_ctx) = setup_sender(recipient, seed, &ctx.info())?;
        let mut header = [0u8; SEALED_HEADER_BYTES];
        header[..SEALED_TAG.len()].copy_from_slice(&SEALED_TAG);
        header[SEALED_TAG.len()] = SEALED_VERSION;
        header[SEALED_TAG.len() + 1..].copy_from_slice(&enc);
        let sealer = Sealer {
            ctx: hpke_ctx,
            next_index: 0,
            finished: false,
        };
        Ok((sealer, header))
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
        self.next_index += 1;
        self.finished = last;
        self.ctx.seal(chunk, &chunk_aad(last)).expect(
            "HPKE seals any chunk until 2^96 - 1 of them, far more than a stream of u64 bytes holds",
        )
    }
}

/// Seals `plaintext` to `recipient` in one go.
pub fn seal(
    recipient: &EncryptionKey,
    seed: EphemeralSeed,
    ctx: SealContext,
    plaintext: &[u8],
) -> Result<Vec<u8>, SealError> {
    let (mut sealer, header) = Sealer::new(recipient, seed, ctx)?;
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
    // The format is checked before the length, so that old or foreign bytes get the error that
    // says what they are, whatever their size.
    if sealed.len() >= SEALED_TAG.len() && sealed[..SEALED_TAG.len()] != SEALED_TAG {
        return Err(SealError::UnknownFormat);
    }
    if let Some(&version) = sealed.get(SEALED_TAG.len())
        && version != SEALED_VERSION
    {
        return Err(SealError::UnsupportedVersion { version });
    }
    let min = SEALED_HEADER_BYTES + SEALED_TAG_BYTES;
    if sealed.len() < min {
        return Err(SealError::Truncated {
            bytes: sealed.len(),
            min,
        });
    }
    let (header, body) = sealed.split_at(SEALED_HEADER_BYTES);
    let mut hpke_ctx = setup_receiver(secret, &header[SEALED_TAG.len() + 1..], &ctx.info())?;
    let mut out = Vec::with_capacity(body.len());
    let mut pieces = body
        .chunks(SEALED_CHUNK_BYTES + SEALED_TAG_BYTES)
        .peekable();
    while let Some(piece) = pieces.next() {
        let last = pieces.peek().is_none();
        let plain = hpke_ctx
            .open(piece, &chunk_aad(last))
            .map_err(|_| SealError::Unreadable)?;
        out.extend_from_slice(&plain);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(seed: u8) -> EncryptionSecret {
        EncryptionSecret::from_bytes([seed; 32])
    }

    fn seed(byte: u8) -> EphemeralSeed {
        EphemeralSeed::from_random_bytes([byte; 32])
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
            seed(9),
            ctx(Purpose::Manifest, 7),
            plaintext,
        )
        .expect("seals")
    }

    fn open_it(bytes: &[u8]) -> Result<Vec<u8>, SealError> {
        open(&secret(1), ctx(Purpose::Manifest, 7), bytes)
    }

    fn hex_bytes(text: &str) -> Vec<u8> {
        hex::decode(text).expect("test vectors are hex")
    }

    /// Where chunk `i` of a sealed box starts.
    fn piece_at(i: usize) -> usize {
        SEALED_HEADER_BYTES + i * (SEALED_CHUNK_BYTES + SEALED_TAG_BYTES)
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
            2 * SEALED_CHUNK_BYTES,
            3 * SEALED_CHUNK_BYTES,
        ];
        for size in sizes {
            let plaintext: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let bytes = sealed(&plaintext);
            assert_eq!(bytes.len() as u64, sealed_len(size as u64), "{size}");
            assert_eq!(&bytes[..4], b"gpn\x02", "{size}");
            let opened = open_it(&bytes).expect("opens");
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
    fn an_exact_multiple_of_the_chunk_size_has_no_empty_last_chunk() {
        let plaintext = vec![8u8; 2 * SEALED_CHUNK_BYTES];
        let bytes = sealed(&plaintext);
        assert_eq!(bytes.len(), piece_at(2));
        // The second chunk is the last; dropping it leaves a first chunk not sealed as last.
        assert_eq!(open_it(&bytes[..piece_at(1)]), Err(SealError::Unreadable));
    }

    #[test]
    fn streaming_and_one_shot_sealing_agree() {
        let plaintext = vec![5u8; SEALED_CHUNK_BYTES + 10];
        let (mut sealer, header) =
            Sealer::new(&secret(1).public(), seed(9), ctx(Purpose::Output, 7)).expect("new");
        let mut streamed = header.to_vec();
        streamed.extend(sealer.seal_chunk(&plaintext[..SEALED_CHUNK_BYTES], false));
        streamed.extend(sealer.seal_chunk(&plaintext[SEALED_CHUNK_BYTES..], true));
        let one_shot = seal(
            &secret(1).public(),
            seed(9),
            ctx(Purpose::Output, 7),
            &plaintext,
        )
        .expect("seals");
        assert_eq!(streamed, one_shot);
    }

    #[test]
    fn different_seeds_give_different_boxes_of_the_same_plaintext() {
        let a = seal(&secret(1).public(), seed(1), ctx(Purpose::Logs, 7), b"x").expect("seals");
        let b = seal(&secret(1).public(), seed(2), ctx(Purpose::Logs, 7), b"x").expect("seals");
        assert_ne!(a, b);
    }

    #[test]
    fn the_wrong_secret_purpose_or_lease_cannot_open() {
        let bytes = sealed(b"the manifest");
        for (who, purpose, lease) in [
            (secret(2), Purpose::Manifest, 7),
            (secret(9), Purpose::Manifest, 7),
            (secret(1), Purpose::Output, 7),
            (secret(1), Purpose::Logs, 7),
            (secret(1), Purpose::Manifest, 8),
        ] {
            assert_eq!(
                open(&who, ctx(purpose, lease), &bytes),
                Err(SealError::Unreadable),
                "{purpose:?} {lease}"
            );
        }
        assert_eq!(open_it(&bytes).expect("opens"), b"the manifest");
    }

    #[test]
    fn job_inputs_open_only_with_their_salt_and_purpose() {
        use crate::jobspec::Salt;
        let salt = Salt([5; 32]);
        let ctx = SealContext::job_inputs(&salt);
        let bytes = seal(&secret(1).public(), seed(3), ctx, b"inputs").expect("seals");
        assert_eq!(open(&secret(1), ctx, &bytes).expect("opens"), b"inputs");
        let mut other = salt;
        other.0[0] = 6;
        for wrong in [
            SealContext::job_inputs(&other),
            SealContext::checkpoint(crate::OrderId(ctx.lease.0)),
            SealContext {
                purpose: Purpose::Inputs,
                lease: ctx.lease,
            },
        ] {
            assert_eq!(open(&secret(1), wrong, &bytes), Err(SealError::Unreadable));
        }
        assert_eq!(open(&secret(2), ctx, &bytes), Err(SealError::Unreadable));
    }

    #[test]
    fn a_flipped_byte_anywhere_is_detected() {
        let plaintext = vec![3u8; 2 * SEALED_CHUNK_BYTES + 5];
        let bytes = sealed(&plaintext);
        let places = [
            SEALED_TAG.len() + 1,    // the encapsulated key
            SEALED_HEADER_BYTES - 1, // its last byte
            piece_at(0),             // chunk 0's ciphertext
            piece_at(1) - 1,         // chunk 0's tag
            piece_at(1) + 100,       // chunk 1
            piece_at(2) + 2,         // the last chunk's ciphertext
            bytes.len() - 1,         // the last chunk's tag
        ];
        for at in places {
            let mut tampered = bytes.clone();
            tampered[at] ^= 1;
            assert_eq!(open_it(&tampered), Err(SealError::Unreadable), "byte {at}");
        }
    }

    #[test]
    fn reordered_truncated_or_extended_streams_do_not_open() {
        let plaintext: Vec<u8> = (0..3 * SEALED_CHUNK_BYTES + 5).map(|i| i as u8).collect();
        let bytes = sealed(&plaintext);
        // Cut at each chunk boundary: the new end was not sealed as the last chunk.
        for cut in 1..=3 {
            assert_eq!(
                open_it(&bytes[..piece_at(cut)]),
                Err(SealError::Unreadable),
                "cut after chunk {cut}"
            );
        }
        // Cut inside the last chunk.
        assert_eq!(
            open_it(&bytes[..bytes.len() - 1]),
            Err(SealError::Unreadable)
        );
        // Chunks 0 and 1 swapped (both full, non-last chunks).
        let mut swapped = bytes[..piece_at(0)].to_vec();
        swapped.extend_from_slice(&bytes[piece_at(1)..piece_at(2)]);
        swapped.extend_from_slice(&bytes[piece_at(0)..piece_at(1)]);
        swapped.extend_from_slice(&bytes[piece_at(2)..]);
        assert_eq!(swapped.len(), bytes.len());
        assert_eq!(open_it(&swapped), Err(SealError::Unreadable));
        // A chunk dropped from the middle.
        let mut dropped = bytes[..piece_at(1)].to_vec();
        dropped.extend_from_slice(&bytes[piece_at(2)..]);
        assert_eq!(open_it(&dropped), Err(SealError::Unreadable));
        // Appended bytes.
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(open_it(&longer), Err(SealError::Unreadable));
        // Too short to hold a header and a tag.
        assert!(matches!(
            open_it(&bytes[..40]),
            Err(SealError::Truncated { .. })
        ));
    }

    #[test]
    fn format_one_and_unknown_versions_are_refused_with_a_clear_error() {
        // Version 1 started straight with a 32-byte ephemeral key: no tag.
        let mut v1 = vec![0x5au8; 32 + 16 + 3];
        v1[0] = 0x11;
        assert_eq!(open_it(&v1), Err(SealError::UnknownFormat));
        let mut v3 = sealed(b"x");
        v3[SEALED_TAG.len()] = 3;
        assert_eq!(
            open_it(&v3),
            Err(SealError::UnsupportedVersion { version: 3 })
        );
        assert!(
            SealError::UnsupportedVersion { version: 3 }
                .to_string()
                .contains("version 3")
        );
    }

    #[test]
    fn low_order_keys_are_refused() {
        // The all-zero point (and every other low-order point) gives an all-zero shared secret.
        let zero = EncryptionKey([0; 32]);
        assert_eq!(
            seal(&zero, seed(9), ctx(Purpose::Manifest, 1), b"x").map(|_| ()),
            Err(SealError::WeakKey)
        );
        let mut bytes = sealed(b"x");
        bytes[SEALED_TAG.len() + 1..SEALED_HEADER_BYTES].fill(0);
        assert_eq!(open_it(&bytes), Err(SealError::Unreadable));
    }

    /// RFC 9180, appendix A.2.1: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20Poly1305,
    /// base mode — the suite sealed boxes use. The ephemeral key comes from `ikmE` through the
    /// same seed path `seal` takes, and the recipient's secret is an `EncryptionSecret`, so this
    /// pins our keys, our seed handling and the crate's suite to the standard's bytes.
    #[test]
    fn the_hpke_layer_matches_the_rfc_9180_test_vector() {
        let mut ikm_e = [0u8; 32];
        ikm_e.copy_from_slice(&hex_bytes(
            "909a9b35d3dc4713a5e72a4da274b55d3d3821a37e5d099e74a647db583a904b",
        ));
        let mut sk_r = [0u8; 32];
        sk_r.copy_from_slice(&hex_bytes(
            "8057991eef8f1f1af18f4a9491d16a1ce333f695d4db8e38da75975c4478e0fb",
        ));
        let recipient = EncryptionSecret::from_bytes(sk_r);
        assert_eq!(
            recipient.public().to_hex(),
            "4310ee97d88cc1f088a5576c77ab0cf5c3ac797f3d95139c6c84b5429c59662a"
        );
        let info = hex_bytes("4f6465206f6e2061204772656369616e2055726e");
        let aad = hex_bytes("436f756e742d30");
        let pt = hex_bytes("4265617574792069732074727574682c20747275746820626561757479");
        let (enc, mut sender) = setup_sender(
            &recipient.public(),
            EphemeralSeed::from_random_bytes(ikm_e),
            &info,
        )
        .expect("encapsulates");
        assert_eq!(
            hex::encode(enc),
            "1afa08d3dec047a643885163f1180476fa7ddb54c6a8029ea33f95796bf2ac4a"
        );
        let ct = sender.seal(&pt, &aad).expect("seals");
        assert_eq!(
            hex::encode(&ct),
            "1c5250d8034ec2b784ba2cfd69dbdb8af406cfe3ff938e131f0def8c8b60b4db\
             21993c62ce81883d2dd1b51a28"
        );
        let mut receiver = setup_receiver(&recipient, &enc, &info).expect("decapsulates");
        assert_eq!(receiver.open(&ct, &aad).expect("opens"), pt);
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
        assert_eq!(format!("{:?}", seed(1)), "EphemeralSeed(..)");
        let derived = EncryptionSecret::derive_from_account_secret(&[4; 32]);
        assert_eq!(
            derived.public(),
            EncryptionSecret::derive_from_account_secret(&[4; 32]).public()
        );
        assert_ne!(derived.to_bytes(), [4; 32]);
    }
}
