//! DWN timestamps: RFC 3339 in UTC with exactly six fractional digits
//! (`2024-01-01T00:00:00.000000Z`), the only form the reference accepts. Being fixed-width, they
//! sort lexicographically in time order, which the engine relies on.

use chrono::{DateTime, NaiveDateTime, Utc};

const FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6fZ";

/// Now, at microsecond precision.
pub fn now_timestamp() -> String {
    Utc::now().format(FORMAT).to_string()
}

fn shape_is_valid(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 27 {
        return false;
    }
    let digit = |i: usize| b[i].is_ascii_digit();
    (0..4).all(digit)
        && b[4] == b'-'
        && (5..7).all(digit)
        && b[7] == b'-'
        && (8..10).all(digit)
        && b[10] == b'T'
        && (11..13).all(digit)
        && b[13] == b':'
        && (14..16).all(digit)
        && b[16] == b':'
        && (17..19).all(digit)
        && b[19] == b'.'
        && (20..26).all(digit)
        && b[26] == b'Z'
}

/// The reference's pattern (`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$`) and a real date.
pub fn is_valid_timestamp(s: &str) -> bool {
    shape_is_valid(s) && timestamp_to_micros(s).is_some()
}

pub fn timestamp_to_micros(s: &str) -> Option<i64> {
    if !shape_is_valid(s) {
        return None;
    }
    NaiveDateTime::parse_from_str(&s[..26], "%Y-%m-%dT%H:%M:%S%.6f")
        .ok()
        .map(|t| t.and_utc().timestamp_micros())
}

pub fn micros_to_timestamp(micros: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(micros)
        .unwrap_or_default()
        .format(FORMAT)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_six_digit_utc() {
        assert!(is_valid_timestamp("2024-01-01T00:00:00.000000Z"));
        assert!(!is_valid_timestamp("2024-01-01T00:00:00.000Z"));
        assert!(!is_valid_timestamp("2024-01-01T00:00:00Z"));
        assert!(!is_valid_timestamp("2024-02-30T00:00:00.000000Z"));
        assert!(!is_valid_timestamp("2024-01-01T00:00:00.000000+01:00"));
        assert!(is_valid_timestamp(&now_timestamp()));
    }

    #[test]
    fn micros_round_trip() {
        let t = "2024-05-06T07:08:09.123456Z";
        assert_eq!(micros_to_timestamp(timestamp_to_micros(t).unwrap()), t);
    }
}
