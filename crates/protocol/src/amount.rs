//! Money: [`Amount`] in integer micro-units and the two [`Denom`]inations.
//!
//! Every amount on chain is a whole number of micro-units (10⁻⁶ of a unit). Arithmetic is
//! checked: an overflow is an error, never a wrap. Amounts cross the API as decimal strings
//! (`"2.50"`), never as floats.

use std::fmt;
use std::str::FromStr;

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Micro-units in one whole unit.
pub const MICROS_PER_UNIT: u64 = 1_000_000;

/// The denominations the ledger keeps. `usd` prices work and pays for it; `gpn` is staked by
/// providers and pays transaction fees.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize,
)]
#[borsh(use_discriminant = true)]
#[repr(u8)]
pub enum Denom {
    /// Settlement unit: prices, escrow, payouts.
    Usd = 0,
    /// Network token: stake and transaction fees.
    Gpn = 1,
}

impl Denom {
    /// Both denominations, in their canonical order.
    pub const ALL: [Denom; 2] = [Denom::Usd, Denom::Gpn];

    /// Lower-case name used in the API and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Denom::Usd => "usd",
            Denom::Gpn => "gpn",
        }
    }

    /// Index into per-denomination arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Denom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Denom {
    type Err = AmountError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "usd" => Ok(Denom::Usd),
            "gpn" => Ok(Denom::Gpn),
            _ => Err(AmountError::UnknownDenom {
                given: s.to_owned(),
            }),
        }
    }
}

impl Serialize for Denom {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Denom {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as Deserialize>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A non-negative amount in micro-units of some denomination.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    BorshSerialize,
    BorshDeserialize,
)]
pub struct Amount(u64);

/// Why a decimal string is not an amount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("{given:?} is not an amount; write a decimal number such as \"2.50\"")]
    NotANumber { given: String },
    #[error("{given:?} has more than 6 decimal places; amounts are exact to the micro-unit")]
    TooPrecise { given: String },
    #[error("{given:?} is too large; the largest amount is 18446744073709.551615")]
    TooLarge { given: String },
    #[error("unknown denomination {given:?}; use usd or gpn")]
    UnknownDenom { given: String },
}

impl Amount {
    /// Zero.
    pub const ZERO: Amount = Amount(0);
    /// The largest representable amount.
    pub const MAX: Amount = Amount(u64::MAX);

    /// An amount of `micros` micro-units.
    pub const fn from_micros(micros: u64) -> Amount {
        Amount(micros)
    }

    /// An amount of whole units; `None` on overflow.
    pub const fn from_units(units: u64) -> Option<Amount> {
        match units.checked_mul(MICROS_PER_UNIT) {
            Some(m) => Some(Amount(m)),
            None => None,
        }
    }

    /// The raw micro-unit count.
    pub const fn micros(self) -> u64 {
        self.0
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0.checked_add(other.0).map(Amount)
    }

    pub fn checked_sub(self, other: Amount) -> Option<Amount> {
        self.0.checked_sub(other.0).map(Amount)
    }

    pub fn saturating_sub(self, other: Amount) -> Amount {
        Amount(self.0.saturating_sub(other.0))
    }

    /// `self × num ÷ den`, rounded down, computed in 128 bits; `None` if `den` is zero or the
    /// result does not fit.
    pub fn mul_div_floor(self, num: u64, den: u64) -> Option<Amount> {
        if den == 0 {
            return None;
        }
        let wide = u128::from(self.0).checked_mul(u128::from(num))? / u128::from(den);
        u64::try_from(wide).ok().map(Amount)
    }

    /// Parses a decimal string with at most six decimal places (`"2.5"`, `"0.000001"`, `"10"`).
    pub fn parse_decimal(s: &str) -> Result<Amount, AmountError> {
        let t = s.trim();
        let bad = || AmountError::NotANumber {
            given: s.to_owned(),
        };
        let (whole, frac) = match t.split_once('.') {
            Some((w, f)) => (w, f),
            None => (t, ""),
        };
        if whole.is_empty() && frac.is_empty() {
            return Err(bad());
        }
        if !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        if frac.len() > 6 {
            return Err(AmountError::TooPrecise {
                given: s.to_owned(),
            });
        }
        let too_large = || AmountError::TooLarge {
            given: s.to_owned(),
        };
        let whole_v: u64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| too_large())?
        };
        let mut frac_v: u64 = 0;
        for i in 0..6 {
            let digit = frac.as_bytes().get(i).map_or(0, |b| u64::from(b - b'0'));
            frac_v = frac_v * 10 + digit;
        }
        whole_v
            .checked_mul(MICROS_PER_UNIT)
            .and_then(|m| m.checked_add(frac_v))
            .map(Amount)
            .ok_or_else(too_large)
    }
}

impl fmt::Display for Amount {
    /// Decimal with at least two and at most six places: `2.50`, `0.000123`, `100.00`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / MICROS_PER_UNIT;
        let frac = self.0 % MICROS_PER_UNIT;
        let mut frac_s = format!("{frac:06}");
        while frac_s.len() > 2 && frac_s.ends_with('0') {
            frac_s.pop();
        }
        write!(f, "{whole}.{frac_s}")
    }
}

impl FromStr for Amount {
    type Err = AmountError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Amount::parse_decimal(s)
    }
}

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as Deserialize>::deserialize(d)?;
        Amount::parse_decimal(&s).map_err(serde::de::Error::custom)
    }
}

/// One amount per denomination, indexed by [`Denom::index`].
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
pub struct Balances {
    pub usd: Amount,
    pub gpn: Amount,
}

impl Balances {
    pub fn get(&self, denom: Denom) -> Amount {
        match denom {
            Denom::Usd => self.usd,
            Denom::Gpn => self.gpn,
        }
    }

    pub fn get_mut(&mut self, denom: Denom) -> &mut Amount {
        match denom {
            Denom::Usd => &mut self.usd,
            Denom::Gpn => &mut self.gpn,
        }
    }

    pub fn is_zero(&self) -> bool {
        self.usd.is_zero() && self.gpn.is_zero()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_strings_round_trip_exactly() {
        for (s, micros, shown) in [
            ("2.50", 2_500_000, "2.50"),
            ("2.5", 2_500_000, "2.50"),
            ("0.000001", 1, "0.000001"),
            ("10", 10_000_000, "10.00"),
            (".5", 500_000, "0.50"),
            ("18446744073709.551615", u64::MAX, "18446744073709.551615"),
        ] {
            let a = Amount::parse_decimal(s).expect(s);
            assert_eq!(a.micros(), micros, "{s}");
            assert_eq!(a.to_string(), shown, "{s}");
        }
    }

    #[test]
    fn bad_decimal_strings_are_rejected_with_a_reason() {
        assert!(matches!(
            Amount::parse_decimal("1.2345678"),
            Err(AmountError::TooPrecise { .. })
        ));
        assert!(matches!(
            Amount::parse_decimal("-1"),
            Err(AmountError::NotANumber { .. })
        ));
        assert!(matches!(
            Amount::parse_decimal("1e3"),
            Err(AmountError::NotANumber { .. })
        ));
        assert!(matches!(
            Amount::parse_decimal(""),
            Err(AmountError::NotANumber { .. })
        ));
        assert!(matches!(
            Amount::parse_decimal("."),
            Err(AmountError::NotANumber { .. })
        ));
        assert!(matches!(
            Amount::parse_decimal("18446744073709.551616"),
            Err(AmountError::TooLarge { .. })
        ));
    }

    #[test]
    fn mul_div_floor_rounds_down_and_reports_overflow() {
        let a = Amount::from_micros(2_500_000);
        assert_eq!(
            a.mul_div_floor(1_000, 3_600_000),
            Some(Amount::from_micros(694))
        );
        assert_eq!(Amount::MAX.mul_div_floor(2, 1), None);
        assert_eq!(a.mul_div_floor(1, 0), None);
    }
}
