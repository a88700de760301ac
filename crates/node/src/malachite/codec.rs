//! How every message Malachite puts on the wire or in its write-ahead log is encoded: borsh.
//!
//! Malachite implements borsh for most of its types (its `borsh` features) once ours do; for
//! the two it does not — the validator proof and the commit certificate inside sync answers —
//! this module encodes a local mirror of the type. The same mirror, [`WireCertificate`], is
//! how the certificate store keeps certificates.

use borsh::{BorshDeserialize, BorshSerialize};
use bytes::Bytes;
use malachitebft_app_channel::app::consensus::LivenessMsg;
use malachitebft_app_channel::app::streaming::StreamMessage;
use malachitebft_app_channel::app::types::codec::{Codec, HasEncodedLen};
use malachitebft_app_channel::app::types::core::{
    ExtendedCommitCertificate, ExtendedCommitSignature, PolkaCertificate, Round, SignedExtension,
    ValidatorProof,
};
use malachitebft_app_channel::app::types::{ProposedValue, SignedConsensusMsg};
use malachitebft_sync::{RawDecidedValue, Request, Response, Status, ValueResponse};

use super::context::{BlockId, BlockPart, GpunetContext, Height, Sig, ValidatorAddress};

type Ctx = GpunetContext;

/// Encodes and decodes with borsh; decoding refuses trailing bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct BorshCodec;

macro_rules! borsh_codec {
    ($($t:ty),* $(,)?) => {$(
        impl Codec<$t> for BorshCodec {
            type Error = std::io::Error;

            fn decode(&self, bytes: Bytes) -> Result<$t, std::io::Error> {
                borsh::from_slice(&bytes)
            }

            fn encode(&self, msg: &$t) -> Result<Bytes, std::io::Error> {
                borsh::to_vec(msg).map(Bytes::from)
            }
        }
    )*};
}

borsh_codec!(
    BlockPart,
    SignedConsensusMsg<Ctx>,
    LivenessMsg<Ctx>,
    StreamMessage<BlockPart>,
    ProposedValue<Ctx>,
    PolkaCertificate<Ctx>,
    Status<Ctx>,
    Request<Ctx>,
);

/// [`ValidatorProof`] on the wire.
#[derive(BorshSerialize, BorshDeserialize)]
struct WireProof {
    public_key: Vec<u8>,
    peer_id: Vec<u8>,
    signature: Sig,
}

impl Codec<ValidatorProof<Ctx>> for BorshCodec {
    type Error = std::io::Error;

    fn decode(&self, bytes: Bytes) -> Result<ValidatorProof<Ctx>, std::io::Error> {
        let w: WireProof = borsh::from_slice(&bytes)?;
        Ok(ValidatorProof::new(w.public_key, w.peer_id, w.signature))
    }

    fn encode(&self, p: &ValidatorProof<Ctx>) -> Result<Bytes, std::io::Error> {
        borsh::to_vec(&WireProof {
            public_key: p.public_key.clone(),
            peer_id: p.peer_id.clone(),
            signature: p.signature,
        })
        .map(Bytes::from)
    }
}

/// One validator's precommit signature in a certificate.
#[derive(BorshSerialize, BorshDeserialize)]
struct WireCommitSignature {
    address: ValidatorAddress,
    signature: Sig,
    extension: Option<SignedExtension<Ctx>>,
}

/// An [`ExtendedCommitCertificate`] in borsh.
#[derive(BorshSerialize, BorshDeserialize)]
pub struct WireCertificate {
    height: Height,
    round: Round,
    value_id: BlockId,
    signatures: Vec<WireCommitSignature>,
}

impl WireCertificate {
    pub fn from_certificate(c: &ExtendedCommitCertificate<Ctx>) -> WireCertificate {
        WireCertificate {
            height: c.height,
            round: c.round,
            value_id: c.value_id,
            signatures: c
                .commit_signatures
                .iter()
                .map(|s| WireCommitSignature {
                    address: s.address,
                    signature: s.signature,
                    extension: s.extension.clone(),
                })
                .collect(),
        }
    }

    pub fn into_certificate(self) -> ExtendedCommitCertificate<Ctx> {
        ExtendedCommitCertificate {
            height: self.height,
            round: self.round,
            value_id: self.value_id,
            commit_signatures: self
                .signatures
                .into_iter()
                .map(|s| ExtendedCommitSignature::new(s.address, s.signature, s.extension))
                .collect(),
        }
    }
}

/// A sync answer: decided blocks (encoded) with their certificates.
#[derive(BorshSerialize, BorshDeserialize)]
struct WireValueResponse {
    start_height: Height,
    values: Vec<(Vec<u8>, WireCertificate)>,
}

impl Codec<Response<Ctx>> for BorshCodec {
    type Error = std::io::Error;

    fn decode(&self, bytes: Bytes) -> Result<Response<Ctx>, std::io::Error> {
        let w: WireValueResponse = borsh::from_slice(&bytes)?;
        let values = w
            .values
            .into_iter()
            .map(|(v, c)| RawDecidedValue::new(Bytes::from(v), c.into_certificate()))
            .collect();
        Ok(Response::ValueResponse(ValueResponse::new(
            w.start_height,
            values,
        )))
    }

    fn encode(&self, r: &Response<Ctx>) -> Result<Bytes, std::io::Error> {
        let Response::ValueResponse(v) = r;
        borsh::to_vec(&WireValueResponse {
            start_height: v.start_height,
            values: v
                .values
                .iter()
                .map(|d| {
                    (
                        d.value_bytes.to_vec(),
                        WireCertificate::from_certificate(&d.certificate),
                    )
                })
                .collect(),
        })
        .map(Bytes::from)
    }
}

impl HasEncodedLen<Response<Ctx>> for BorshCodec {
    fn encoded_len(&self, r: &Response<Ctx>) -> Result<usize, std::io::Error> {
        self.encode(r).map(|b| b.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use malachitebft_app_channel::app::types::core::{Context as _, NilOrVal, SignedMessage};
    use malachitebft_signing::Signer as _;
    use malachitebft_signing_ed25519::PrivateKey;

    use crate::malachite::context::ValidatorSigner;

    #[tokio::test]
    async fn consensus_messages_and_sync_answers_round_trip() {
        let s = ValidatorSigner::new(PrivateKey::from([5; 32]), "c");
        let vote = GpunetContext.new_precommit(
            Height(9),
            Round::new(1),
            NilOrVal::Val(BlockId([4; 32])),
            s.address(),
        );
        let signed: SignedMessage<Ctx, _> = s.sign_vote(vote).await.expect("signs");
        let msg = SignedConsensusMsg::<Ctx>::Vote(signed);
        let bytes = BorshCodec.encode(&msg).expect("encodes");
        let back: SignedConsensusMsg<Ctx> = BorshCodec.decode(bytes).expect("decodes");
        assert_eq!(back, msg);

        let cert = ExtendedCommitCertificate::<Ctx> {
            height: Height(9),
            round: Round::new(1),
            value_id: BlockId([4; 32]),
            commit_signatures: vec![ExtendedCommitSignature::new(
                s.address(),
                Sig([8; 64]),
                None,
            )],
        };
        let resp = Response::ValueResponse(ValueResponse::new(
            Height(9),
            vec![RawDecidedValue::new(Bytes::from_static(b"block"), cert)],
        ));
        let bytes = BorshCodec.encode(&resp).expect("encodes");
        assert_eq!(BorshCodec.encoded_len(&resp).expect("len"), bytes.len());
        let back: Response<Ctx> = BorshCodec.decode(bytes).expect("decodes");
        assert_eq!(back, resp);

        let proof = s
            .sign_validator_proof(s.public_key().as_bytes().to_vec(), vec![1, 2, 3])
            .await
            .expect("signs");
        let bytes = Codec::<ValidatorProof<Ctx>>::encode(&BorshCodec, &proof).expect("encodes");
        let back: ValidatorProof<Ctx> = BorshCodec.decode(bytes).expect("decodes");
        assert_eq!(back, proof);
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut bytes = borsh::to_vec(&Height(1)).expect("encodes");
        bytes.push(0);
        assert!(borsh::from_slice::<Height>(&bytes).is_err());
    }
}
