//! Exact token amounts for spending limits: a decimal string in the token's
//! units held as an integer count of 10^-18 units. Eighteen places cover
//! every token tss-gate knows (ETH and ERC-20s have at most 18); 256 bits
//! leave room for any sum. No float ever touches an amount.

use alloy_primitives::U256;

/// Fractional digits kept exactly.
pub const SCALE: usize = 18;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Amount(pub U256);

impl Amount {
    pub const ZERO: Amount = Amount(U256::ZERO);

    /// Parses a plain decimal string (`"12"`, `"0.5"`). Exponents, signs,
    /// spaces and more than [`SCALE`] significant fractional digits are
    /// refused: an amount that cannot be held exactly is no amount.
    pub fn parse(s: &str) -> Option<Amount> {
        let (int, frac) = match s.split_once('.') {
            Some((i, f)) => (i, f),
            None => (s, ""),
        };
        if int.is_empty()
            || !int.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
            || (s.contains('.') && frac.is_empty())
        {
            return None;
        }
        let frac = frac.trim_end_matches('0');
        if frac.len() > SCALE || int.len() > 60 {
            return None;
        }
        let mut digits = String::with_capacity(int.len() + SCALE);
        digits.push_str(int);
        digits.push_str(frac);
        digits.extend(std::iter::repeat_n('0', SCALE - frac.len()));
        U256::from_str_radix(&digits, 10).ok().map(Amount)
    }

    /// The exact integer of 10^-18 units, as stored in the ledger.
    pub fn from_units(s: &str) -> Option<Amount> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        U256::from_str_radix(s, 10).ok().map(Amount)
    }

    pub fn units(&self) -> String {
        self.0.to_string()
    }

    pub fn checked_add(self, o: Amount) -> Option<Amount> {
        self.0.checked_add(o.0).map(Amount)
    }

    pub fn saturating_sub(self, o: Amount) -> Amount {
        Amount(self.0.saturating_sub(o.0))
    }

    /// `self / max` as a float, for dashboards only (never for a decision).
    pub fn ratio(self, max: Amount) -> f64 {
        if max.0.is_zero() {
            return if self.0.is_zero() { 0.0 } else { f64::INFINITY };
        }
        let a: f64 = self.0.to_string().parse().unwrap_or(f64::INFINITY);
        let b: f64 = max.0.to_string().parse().unwrap_or(f64::INFINITY);
        a / b
    }
}

impl std::fmt::Display for Amount {
    /// The shortest plain decimal: `12`, `0.5`, `9999.99`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.0.to_string();
        let (int, frac) = if s.len() > SCALE {
            s.split_at(s.len() - SCALE)
        } else {
            ("0", s.as_str())
        };
        let frac = format!("{frac:0>SCALE$}");
        let frac = frac.trim_end_matches('0');
        if frac.is_empty() {
            write!(f, "{int}")
        } else {
            write!(f, "{int}.{frac}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_exactly() {
        for (s, shown) in [
            ("0", "0"),
            ("12", "12"),
            ("9999.99", "9999.99"),
            ("0.000000000000000001", "0.000000000000000001"),
            ("1.50", "1.5"),
            ("007", "7"),
            ("1.000000000000000000000", "1"),
        ] {
            assert_eq!(Amount::parse(s).unwrap().to_string(), shown, "{s}");
        }
        for bad in [
            "",
            ".5",
            "5.",
            "-1",
            "+1",
            "1e3",
            " 1",
            "1 ",
            "0x10",
            "1.0000000000000000001",
            "١",
        ] {
            assert_eq!(Amount::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn sums_are_exact_where_floats_are_not() {
        let a = Amount::parse("0.1").unwrap();
        let b = Amount::parse("0.2").unwrap();
        assert_eq!(a.checked_add(b).unwrap(), Amount::parse("0.3").unwrap());
        let units = a.units();
        assert_eq!(Amount::from_units(&units), Some(a));
        assert!(
            Amount::parse("50000").unwrap()
                > Amount::parse(&format!("49999.{}", "9".repeat(18))).unwrap()
        );
    }
}
