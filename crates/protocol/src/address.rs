//! Accounts are ed25519 public keys; an [`Address`] shows one as checksummed bech32m text
//! (`gpn1…`), so a mistyped address is caught before money moves.

use std::fmt;
use std::str::FromStr;

use bech32::{Bech32m, Hrp};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Human-readable prefix of every address.
pub const ADDRESS_HRP: &str = "gpn";

/// An account: the 32 bytes of an ed25519 verifying key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize)]
pub struct Address(pub [u8; 32]);

/// Why a string is not an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("{given:?} is not an address: {why}; addresses look like gpn1…")]
    Malformed { given: String, why: String },
    #[error("{given:?} is not a gpunet address: it starts with {hrp:?}, not \"gpn1\"")]
    WrongPrefix { given: String, hrp: String },
    #[error("{given:?} holds {len} bytes, not the 32 of an ed25519 key")]
    WrongLength { given: String, len: usize },
}

impl Address {
    /// The address of a verifying key.
    pub fn from_key(key: &ed25519_dalek::VerifyingKey) -> Address {
        Address(key.to_bytes())
    }

    /// The verifying key, if these bytes are a valid curve point.
    pub fn verifying_key(&self) -> Option<ed25519_dalek::VerifyingKey> {
        ed25519_dalek::VerifyingKey::from_bytes(&self.0).ok()
    }

    /// A short form for tables: `gpn1abcd…wxyz`.
    pub fn short(&self) -> String {
        let s = self.to_string();
        if s.len() <= 16 {
            return s;
        }
        format!("{}…{}", &s[..9], &s[s.len() - 4..])
    }

    pub fn parse(s: &str) -> Result<Address, AddressError> {
        let t = s.trim();
        let (hrp, data) = bech32::decode(t).map_err(|e| AddressError::Malformed {
            given: s.to_owned(),
            why: e.to_string(),
        })?;
        if hrp.as_str() != ADDRESS_HRP {
            return Err(AddressError::WrongPrefix {
                given: s.to_owned(),
                hrp: hrp.to_string(),
            });
        }
        let bytes: [u8; 32] =
            data.as_slice()
                .try_into()
                .map_err(|_| AddressError::WrongLength {
                    given: s.to_owned(),
                    len: data.len(),
                })?;
        Ok(Address(bytes))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hrp = Hrp::parse_unchecked(ADDRESS_HRP);
        match bech32::encode::<Bech32m>(hrp, &self.0) {
            Ok(s) => f.write_str(&s),
            Err(_) => Err(fmt::Error),
        }
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({self})")
    }
}

impl FromStr for Address {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Address::parse(s)
    }
}

impl Serialize for Address {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as Deserialize>::deserialize(d)?;
        Address::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip_and_catch_typos() {
        let a = Address([7u8; 32]);
        let s = a.to_string();
        assert!(s.starts_with("gpn1"), "{s}");
        assert_eq!(Address::parse(&s), Ok(a));
        // Change one character: the checksum must catch it.
        let mut chars: Vec<char> = s.chars().collect();
        let i = chars.len() / 2;
        chars[i] = if chars[i] == 'q' { 'p' } else { 'q' };
        let typo: String = chars.into_iter().collect();
        assert!(matches!(
            Address::parse(&typo),
            Err(AddressError::Malformed { .. })
        ));
    }

    #[test]
    fn foreign_prefixes_are_rejected() {
        let other =
            bech32::encode::<Bech32m>(Hrp::parse_unchecked("cosmos"), &[1u8; 32]).expect("valid");
        assert!(matches!(
            Address::parse(&other),
            Err(AddressError::WrongPrefix { .. })
        ));
    }
}
