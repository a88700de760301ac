//! Sealed frames of a two-way stream between a tenant and a provider (`job shell`): after an
//! opening sealed to the provider with HPKE (purpose [`crate::Purpose::Shell`]) that carries a
//! fresh 32-byte [`StreamKey`] chosen by the tenant, every frame either way is sealed with
//! ChaCha20-Poly1305 under that key. The nonce is the direction and a count of the frames sent
//! that way, so a frame cannot be replayed, dropped, reordered or turned around without the
//! receiver refusing it; the stream then ends.
//!
//! What a frame says ([`Frame`]) is one tag byte and its payload: input or output bytes, a
//! terminal size, the end of input, the command's exit, or an error the provider reports.
//!
//! Pure: keys and counters in, bytes out.

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

/// Largest payload one frame carries.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;

/// The stream's key: 32 random bytes the tenant picks for each stream and sends only inside
/// the sealed opening. `Debug` shows nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct StreamKey(pub [u8; 32]);

impl std::fmt::Debug for StreamKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StreamKey(…)")
    }
}

/// Which way a frame goes; part of every nonce, so the two directions never share one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the tenant to the provider.
    ToProvider,
    /// From the provider to the tenant.
    ToTenant,
}

/// Why a frame was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    #[error(
        "a frame of the stream does not open: it was altered, replayed, reordered or sealed with another key"
    )]
    Unopenable,
    #[error("a frame is {0} bytes, over the limit")]
    TooLarge(usize),
    #[error("a frame's content is malformed: {0}")]
    Malformed(&'static str),
    #[error("the stream has sent its last frame")]
    Exhausted,
}

/// Seals the frames one side sends, in order.
pub struct Sealer {
    cipher: ChaCha20Poly1305,
    direction: Direction,
    sent: u64,
}

/// Opens the frames one side receives, in order.
pub struct Opener {
    cipher: ChaCha20Poly1305,
    direction: Direction,
    received: u64,
}

fn nonce(direction: Direction, count: u64) -> Nonce {
    let mut bytes = [0u8; 12];
    bytes[0] = match direction {
        Direction::ToProvider => 1,
        Direction::ToTenant => 2,
    };
    bytes[4..].copy_from_slice(&count.to_be_bytes());
    Nonce::from(bytes)
}

impl Sealer {
    /// Seals the frames sent `direction` under `key`.
    pub fn new(key: &StreamKey, direction: Direction) -> Self {
        Sealer {
            cipher: ChaCha20Poly1305::new(Key::from_slice(&key.0)),
            direction,
            sent: 0,
        }
    }

    /// The next frame, sealed.
    pub fn seal(&mut self, frame: &Frame) -> Result<Vec<u8>, StreamError> {
        let plain = frame.encode();
        if plain.len() > MAX_FRAME_BYTES + 1 {
            return Err(StreamError::TooLarge(plain.len()));
        }
        let count = self.sent;
        self.sent = self.sent.checked_add(1).ok_or(StreamError::Exhausted)?;
        self.cipher
            .encrypt(&nonce(self.direction, count), plain.as_slice())
            .map_err(|_| StreamError::TooLarge(plain.len()))
    }
}

impl Opener {
    /// Opens the frames received `direction` under `key`.
    pub fn new(key: &StreamKey, direction: Direction) -> Self {
        Opener {
            cipher: ChaCha20Poly1305::new(Key::from_slice(&key.0)),
            direction,
            received: 0,
        }
    }

    /// The next frame, opened and read; any frame but the next one in order is refused.
    pub fn open(&mut self, sealed: &[u8]) -> Result<Frame, StreamError> {
        if sealed.len() > MAX_FRAME_BYTES + 1 + 16 {
            return Err(StreamError::TooLarge(sealed.len()));
        }
        let plain = self
            .cipher
            .decrypt(&nonce(self.direction, self.received), sealed)
            .map_err(|_| StreamError::Unopenable)?;
        self.received = self.received.checked_add(1).ok_or(StreamError::Exhausted)?;
        Frame::decode(&plain)
    }
}

/// What one frame says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Bytes for the command's input (to the provider) or from its output (to the tenant).
    Data(Vec<u8>),
    /// The tenant's terminal is now `cols` × `rows`.
    Resize { cols: u16, rows: u16 },
    /// The tenant's input has ended.
    Eof,
    /// The command ended with this exit code (`None`: unknown). The provider's last frame.
    Exit(Option<i64>),
    /// The provider could not go on, and why. Its last frame.
    Error(String),
}

impl Frame {
    fn encode(&self) -> Vec<u8> {
        match self {
            Frame::Data(bytes) => [&[0u8][..], bytes].concat(),
            Frame::Resize { cols, rows } => {
                let mut out = vec![1u8];
                out.extend_from_slice(&cols.to_be_bytes());
                out.extend_from_slice(&rows.to_be_bytes());
                out
            }
            Frame::Eof => vec![2],
            Frame::Exit(None) => vec![3],
            Frame::Exit(Some(code)) => [&[3u8][..], &code.to_be_bytes()].concat(),
            Frame::Error(why) => [&[4u8][..], why.as_bytes()].concat(),
        }
    }

    fn decode(bytes: &[u8]) -> Result<Frame, StreamError> {
        let (&tag, rest) = bytes.split_first().ok_or(StreamError::Malformed("empty"))?;
        Ok(match (tag, rest.len()) {
            (0, _) => Frame::Data(rest.to_vec()),
            (1, 4) => Frame::Resize {
                cols: u16::from_be_bytes([rest[0], rest[1]]),
                rows: u16::from_be_bytes([rest[2], rest[3]]),
            },
            (2, 0) => Frame::Eof,
            (3, 0) => Frame::Exit(None),
            (3, 8) => {
                let mut code = [0u8; 8];
                code.copy_from_slice(rest);
                Frame::Exit(Some(i64::from_be_bytes(code)))
            }
            (4, _) => Frame::Error(String::from_utf8_lossy(rest).into_owned()),
            _ => return Err(StreamError::Malformed("unknown tag or length")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> StreamKey {
        StreamKey([b; 32])
    }

    #[test]
    fn frames_open_in_order_on_the_other_side_and_say_what_was_sealed() {
        let mut to_provider = Sealer::new(&key(7), Direction::ToProvider);
        let mut provider = Opener::new(&key(7), Direction::ToProvider);
        let frames = [
            Frame::Data(b"ls -l\n".to_vec()),
            Frame::Resize {
                cols: 120,
                rows: 40,
            },
            Frame::Eof,
            Frame::Exit(Some(-3)),
            Frame::Exit(None),
            Frame::Error("gone".into()),
            Frame::Data(Vec::new()),
        ];
        for frame in &frames {
            let sealed = to_provider.seal(frame).expect("seals");
            assert_eq!(&provider.open(&sealed).expect("opens"), frame);
        }
    }

    #[test]
    fn a_replayed_reordered_turned_around_altered_or_foreign_frame_is_refused() {
        let mut tenant = Sealer::new(&key(1), Direction::ToProvider);
        let first = tenant.seal(&Frame::Data(b"a".to_vec())).expect("seals");
        let second = tenant.seal(&Frame::Data(b"b".to_vec())).expect("seals");

        let mut provider = Opener::new(&key(1), Direction::ToProvider);
        assert_eq!(
            provider.open(&second),
            Err(StreamError::Unopenable),
            "reordered"
        );
        assert!(provider.open(&first).is_ok());
        assert_eq!(
            provider.open(&first),
            Err(StreamError::Unopenable),
            "replayed"
        );

        // Sent to the provider, offered back to the tenant as if the provider said it.
        let mut tenant_side = Opener::new(&key(1), Direction::ToTenant);
        assert_eq!(tenant_side.open(&first), Err(StreamError::Unopenable));

        let mut altered = first.clone();
        altered[0] ^= 1;
        let mut fresh = Opener::new(&key(1), Direction::ToProvider);
        assert_eq!(fresh.open(&altered), Err(StreamError::Unopenable));
        let mut other_key = Opener::new(&key(2), Direction::ToProvider);
        assert_eq!(other_key.open(&first), Err(StreamError::Unopenable));
        assert!(
            !format!("{:?}", key(9)).contains('9'),
            "Debug shows no key bytes"
        );
    }
}
