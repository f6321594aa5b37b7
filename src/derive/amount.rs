//! Exact decimal amounts: Cobo's whole-unit strings ("1.5") to base units
//! ("1500000000000000000") by string arithmetic, so no float and no integer
//! width ever limits or rounds an amount.

use std::fmt;

/// Why a described amount could not be turned into base units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AmountError {
    /// Not a plain non-negative decimal (`12`, `1.5`, `.5`, `0.000001`).
    NotDecimal(String),
    /// More fractional digits than the token has, and the extra ones are not zero.
    TooPrecise { amount: String, decimals: u32 },
}

impl fmt::Display for AmountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotDecimal(a) => write!(f, "amount `{a}` is not a plain decimal number"),
            Self::TooPrecise { amount, decimals } => {
                write!(
                    f,
                    "amount `{amount}` has more than {decimals} decimal places"
                )
            }
        }
    }
}

/// Converts a whole-unit decimal string into a base-unit integer string.
///
/// `to_base_units("1.5", 6) == Ok("1500000")`. Leading zeros are dropped;
/// zero is `"0"`. Signs, exponents, spaces and separators are rejected.
pub fn to_base_units(amount: &str, decimals: u32) -> Result<String, AmountError> {
    let not_decimal = || AmountError::NotDecimal(amount.to_owned());
    let (int_part, frac_part) = match amount.split_once('.') {
        Some((i, f)) => (i, f),
        None => (amount, ""),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return Err(not_decimal());
    }
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(int_part) || !all_digits(frac_part) {
        return Err(not_decimal());
    }
    let decimals_usize = usize::try_from(decimals).map_err(|_| not_decimal())?;
    let frac_trimmed = frac_part.trim_end_matches('0');
    if frac_trimmed.len() > decimals_usize {
        return Err(AmountError::TooPrecise {
            amount: amount.to_owned(),
            decimals,
        });
    }
    let mut digits = String::with_capacity(int_part.len() + decimals_usize);
    digits.push_str(int_part);
    digits.push_str(frac_trimmed);
    for _ in frac_trimmed.len()..decimals_usize {
        digits.push('0');
    }
    Ok(normalize(&digits))
}

/// The inverse of [`to_base_units`] for an all-digit string: base units to
/// a whole-unit decimal string without trailing fractional zeros
/// (`("1500000", 6)` gives `"1.5"`), so Rego compares it exactly with a cap.
pub fn from_base_units(digits: &str, decimals: u32) -> String {
    let digits = normalize(digits);
    let dec = usize::try_from(decimals).unwrap_or(usize::MAX);
    if dec == 0 {
        return digits;
    }
    let padded = if digits.len() <= dec {
        format!("{}{digits}", "0".repeat(dec + 1 - digits.len()))
    } else {
        digits
    };
    // padded.len() > dec by construction, so the split always succeeds.
    let Some((int_part, frac_part)) = padded.split_at_checked(padded.len() - dec) else {
        return padded;
    };
    let frac = frac_part.trim_end_matches('0');
    if frac.is_empty() {
        int_part.to_owned()
    } else {
        format!("{int_part}.{frac}")
    }
}

/// Drops leading zeros of an all-digit string; empty or all-zero becomes `"0"`.
pub fn normalize(digits: &str) -> String {
    let t = digits.trim_start_matches('0');
    if t.is_empty() {
        "0".to_owned()
    } else {
        t.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_units_back_to_whole_units() {
        for (base, dec, whole) in [
            ("1500000", 6, "1.5"),
            ("0", 18, "0"),
            ("000", 6, "0"),
            ("1", 18, "0.000000000000000001"),
            ("21000000000000", 18, "0.000021"),
            ("1000000000000000000000", 18, "1000"),
            ("42", 0, "42"),
        ] {
            assert_eq!(from_base_units(base, dec), whole, "{base} / 10^{dec}");
            assert_eq!(to_base_units(whole, dec).unwrap(), normalize(base));
        }
    }

    #[test]
    fn converts_exactly() {
        assert_eq!(
            to_base_units("1.5", 18).as_deref(),
            Ok("1500000000000000000")
        );
        assert_eq!(to_base_units("12.5", 6).as_deref(), Ok("12500000"));
        assert_eq!(to_base_units("0", 6).as_deref(), Ok("0"));
        assert_eq!(to_base_units("0.000000", 6).as_deref(), Ok("0"));
        assert_eq!(to_base_units(".5", 1).as_deref(), Ok("5"));
        assert_eq!(to_base_units("5.", 2).as_deref(), Ok("500"));
        assert_eq!(to_base_units("007", 0).as_deref(), Ok("7"));
        assert_eq!(
            to_base_units("1.50000000000000000000000", 18).as_deref(),
            Ok("1500000000000000000")
        );
        // Far beyond 2^53 and 2^256: still exact.
        let big = "123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890";
        assert_eq!(to_base_units(big, 2), Ok(format!("{big}00")));
    }

    #[test]
    fn rejects_non_decimals() {
        for bad in [
            "", ".", "-1", "+1", "1e18", "1,5", " 1", "1 ", "0x10", "1.2.3", "NaN", "١",
        ] {
            assert!(
                matches!(to_base_units(bad, 18), Err(AmountError::NotDecimal(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn rejects_excess_precision() {
        assert!(matches!(
            to_base_units("1.0000001", 6),
            Err(AmountError::TooPrecise { .. })
        ));
        assert!(matches!(
            to_base_units("0.1", 0),
            Err(AmountError::TooPrecise { .. })
        ));
    }
}
