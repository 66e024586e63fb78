//! Decimal literals in PostgreSQL's `NUMERIC` text form, so that every backend stores, and the
//! API answers, the same digits: `1.5e3` is `1500`, `1.50e1` is `15.0`, `-0.00` is `0.00`.

/// The canonical form of a JSON number literal (already validated: at most 64 characters, at
/// most 1000 decimal places): no exponent, no leading zeros, no sign on zero, and as many
/// decimal places as the literal carries once its exponent is applied.
pub fn canonical_decimal(literal: &str) -> String {
    // Most literals have no exponent, and JSON allows no leading zeros: those are canonical as
    // written, but for a negative zero.
    if !literal.contains(['e', 'E']) {
        let negative_zero =
            literal.starts_with('-') && literal.bytes().all(|b| matches!(b, b'-' | b'0' | b'.'));
        return if negative_zero {
            literal[1..].to_owned()
        } else {
            literal.to_owned()
        };
    }
    let (negative, unsigned) = match literal.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, literal),
    };
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((mantissa, exponent)) => (mantissa, exponent.parse::<i64>().unwrap_or(0)),
        None => (unsigned, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mut digits: String = whole.chars().chain(fraction.chars()).collect();
    // value = digits × 10^-(scale)
    let scale = i64::try_from(fraction.len()).unwrap_or(i64::MAX) - exponent;
    let places = usize::try_from(scale.max(0)).unwrap_or(0);
    if scale < 0 {
        let zeros = usize::try_from(-scale).unwrap_or(0);
        digits.extend(std::iter::repeat_n('0', zeros));
    }
    if digits.len() <= places {
        let pad = places + 1 - digits.len();
        digits.insert_str(0, &"0".repeat(pad));
    }
    let (integer, decimals) = digits.split_at(digits.len() - places);
    let integer = match integer.trim_start_matches('0') {
        "" => "0",
        trimmed => trimmed,
    };
    let is_zero = integer == "0" && decimals.bytes().all(|b| b == b'0');
    let mut out = String::with_capacity(integer.len() + decimals.len() + 2);
    if negative && !is_zero {
        out.push('-');
    }
    out.push_str(integer);
    if !decimals.is_empty() {
        out.push('.');
        out.push_str(decimals);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::canonical_decimal;

    #[test]
    fn matches_postgresql_numeric_output() {
        // Each pair is what PostgreSQL prints for `'<literal>'::numeric::text`.
        for (literal, expected) in [
            ("0", "0"),
            ("-0", "0"),
            ("-0.00", "0.00"),
            ("0.1", "0.1"),
            ("-12.50", "-12.50"),
            ("1.5e3", "1500"),
            ("1.50e1", "15.0"),
            ("1.5e-3", "0.0015"),
            ("1E+2", "100"),
            ("0.0e5", "0"),
            ("123.456e-2", "1.23456"),
            ("9007199254740993", "9007199254740993"),
            ("5e-1", "0.5"),
            ("10", "10"),
        ] {
            assert_eq!(canonical_decimal(literal), expected, "{literal}");
        }
    }
}
