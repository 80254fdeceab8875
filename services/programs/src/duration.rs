//! Offsets and waits written as `5d`, `-5d`, `4h`, `30m`, `1d12h`.

use chrono::TimeDelta;

/// Parses an offset: an optional `-`, then one or more `<number><d|h|m>`.
pub fn parse_offset(raw: &str) -> Result<TimeDelta, &'static str> {
    const PROBLEM: &str = "must look like 5d, -5d, 4h, 30m or 1d12h";
    let raw = raw.trim();
    let (negative, mut rest) = match raw.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, raw),
    };
    if rest.is_empty() {
        return Err(PROBLEM);
    }
    let mut total = TimeDelta::zero();
    while !rest.is_empty() {
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        if digits == 0 || digits > 6 {
            return Err(PROBLEM);
        }
        let value: i64 = rest[..digits].parse().map_err(|_| PROBLEM)?;
        let unit = rest[digits..].chars().next().ok_or(PROBLEM)?;
        let part = match unit {
            'd' => TimeDelta::days(value),
            'h' => TimeDelta::hours(value),
            'm' => TimeDelta::minutes(value),
            _ => return Err(PROBLEM),
        };
        total += part;
        rest = &rest[digits + 1..];
    }
    if total > TimeDelta::days(3650) {
        return Err("must be at most 3650 days");
    }
    Ok(if negative { -total } else { total })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_parse_with_sign_and_units() {
        assert_eq!(parse_offset("5d"), Ok(TimeDelta::days(5)));
        assert_eq!(parse_offset("-5d"), Ok(TimeDelta::days(-5)));
        assert_eq!(parse_offset("1d12h"), Ok(TimeDelta::hours(36)));
        assert_eq!(parse_offset("30m"), Ok(TimeDelta::minutes(30)));
        assert_eq!(parse_offset("0d"), Ok(TimeDelta::zero()));
        for bad in ["", "-", "5", "d", "5w", "5d-", "1.5d", "99999999d", "--5d"] {
            assert!(parse_offset(bad).is_err(), "{bad:?}");
        }
    }
}
