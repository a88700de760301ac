//! The gpunet simulator: seeded runs of the production [`gpunet_ledger`] — the very
//! `apply_block` validators run — with simulated tenants and providers around it.
//!
//! Today it holds one scenario, [`verification`]: tenants submit spot-checked jobs, honest
//! providers and providers that cheat on a share of their runs serve them, and the run measures
//! how fast the ledger's checks catch the cheaters, whether an honest provider is ever slashed,
//! and what share of all compute the checking costs (`gpunet bench verification`).
//!
//! The simulated parties send real transactions. They are not signed: the ledger never checks
//! a signature (the node does, before a block reaches it), so signing would only cost time.
//! Everything follows from the seed: the same seed gives the same run, event for event.

#![forbid(unsafe_code)]

pub mod verification;

/// A deterministic random stream: BLAKE3 in counter mode under a 32-byte key.
#[derive(Debug, Clone)]
pub struct Rng {
    key: [u8; 32],
    counter: u64,
}

impl Rng {
    /// The stream of `seed` for `purpose`.
    pub fn new(seed: u64, purpose: &str) -> Rng {
        let mut h = blake3::Hasher::new();
        h.update(b"gpunet/sim/rng/v1\0");
        h.update(purpose.as_bytes());
        h.update(&seed.to_le_bytes());
        Rng {
            key: *h.finalize().as_bytes(),
            counter: 0,
        }
    }

    /// 32 fresh bytes.
    pub fn bytes(&mut self) -> [u8; 32] {
        self.counter += 1;
        *blake3::keyed_hash(&self.key, &self.counter.to_le_bytes()).as_bytes()
    }

    pub fn next_u64(&mut self) -> u64 {
        let b = self.bytes();
        let mut first = [0u8; 8];
        first.copy_from_slice(&b[..8]);
        u64::from_le_bytes(first)
    }

    /// Uniform in `0..n` (`n > 0`); the modulo bias is below 2^-40 for the sizes used here.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// True with probability `ppm` millionths.
    pub fn chance_ppm(&mut self, ppm: u64) -> bool {
        self.below(1_000_000) < ppm
    }
}
