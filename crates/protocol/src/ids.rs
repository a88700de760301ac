//! Identifiers: content hashes, orders, leases.

use std::fmt;
use std::str::FromStr;

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A BLAKE3 digest.
#[derive(
    Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize,
)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// BLAKE3 of `bytes`.
    pub fn of(bytes: &[u8]) -> Hash {
        Hash(*blake3::hash(bytes).as_bytes())
    }

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Result<Hash, IdError> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut out).map_err(|_| IdError::BadHash {
            given: s.to_owned(),
        })?;
        Ok(Hash(out))
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl FromStr for Hash {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Hash::from_hex(s)
    }
}

impl Serialize for Hash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as Deserialize>::deserialize(d)?;
        Hash::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

/// Why a string is not an identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{given:?} is not a hash; expected 64 hex characters")]
    BadHash { given: String },
    #[error("{given:?} is not a valid {kind} id; expected a number such as 42 or {prefix}-42")]
    BadId {
        given: String,
        kind: &'static str,
        prefix: &'static str,
    },
}

macro_rules! numeric_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $prefix:literal) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash,
            BorshSerialize, BorshDeserialize, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            // Accepts `42` and `<prefix>-42`.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let t = s.trim();
                let digits = t.strip_prefix(concat!($prefix, "-")).unwrap_or(t);
                digits.parse::<u64>().map($name).map_err(|_| IdError::BadId {
                    given: s.to_owned(),
                    kind: $kind,
                    prefix: $prefix,
                })
            }
        }
    };
}

numeric_id!(
    /// An order, numbered from 1 in the order the ledger accepted them.
    OrderId,
    "order",
    "order"
);
numeric_id!(
    /// A lease, numbered from 1 in the order the ledger created them.
    LeaseId,
    "lease",
    "lease"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_with_or_without_prefix() {
        assert_eq!("42".parse::<OrderId>(), Ok(OrderId(42)));
        assert_eq!("order-42".parse::<OrderId>(), Ok(OrderId(42)));
        assert_eq!("lease-7".parse::<LeaseId>(), Ok(LeaseId(7)));
        assert!("lease-x".parse::<LeaseId>().is_err());
    }

    #[test]
    fn hashes_round_trip_through_hex() {
        let h = Hash::of(b"hello");
        assert_eq!(Hash::from_hex(&h.to_hex()), Ok(h));
        assert!(Hash::from_hex("abc").is_err());
    }
}
