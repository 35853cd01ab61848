//! DWN timestamps: `YYYY-MM-DDTHH:MM:SS.ffffffZ`, UTC with exactly six fractional digits.
//!
//! The reference accepts only what its JSON-schema `date-time` pattern matches
//! (`json-schemas/definitions.json`):
//! `^\d{4}-[0-1]\d-[0-3]\dT(?:[0-2]\d:[0-5]\d:[0-5]\d|23:59:60)\.\d{6}Z$`, and it creates
//! timestamps with Temporal's `toString({smallestUnit: 'microseconds'})`, which truncates. The
//! pattern alone lets through impossible dates such as `2024-02-30` or hour `29`;
//! [`is_valid_timestamp`] also requires a real calendar date and time, as Temporal would when
//! parsing. A leap second (`23:59:60`, the only second 60 the pattern allows) counts as
//! `23:59:59` with the same fraction, which is what `Temporal.Instant.from` does.
//!
//! Being fixed-width, valid timestamps sort lexicographically in time order.

use chrono::{DateTime, NaiveDate, Utc};

/// The smallest value [`micros_to_timestamp`] can write with a four-digit year
/// (`0000-01-01T00:00:00.000000Z`).
const MIN_MICROS: i64 = -62_167_219_200_000_000;
/// The largest (`9999-12-31T23:59:59.999999Z`).
const MAX_MICROS: i64 = 253_402_300_799_999_999;

/// The current time, truncated to microseconds.
pub fn now_timestamp() -> String {
    micros_to_timestamp(Utc::now().timestamp_micros())
}

/// The fields of a timestamp that matches the reference's pattern.
struct Parts {
    year: i32,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    micros: u32,
}

/// Matches the reference's `date-time` pattern and splits it into fields (not yet checked
/// against the calendar).
fn parse_pattern(s: &str) -> Option<Parts> {
    let b = s.as_bytes();
    if b.len() != 27 {
        return None;
    }
    let digits = |from: usize, to: usize| -> Option<u32> {
        b[from..to].iter().try_fold(0u32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    let separators = [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (26, b'Z'),
    ];
    if separators.iter().any(|&(i, c)| b[i] != c) {
        return None;
    }
    let parts = Parts {
        year: i32::try_from(digits(0, 4)?).ok()?,
        month: digits(5, 7)?,
        day: digits(8, 10)?,
        hour: digits(11, 13)?,
        minute: digits(14, 16)?,
        second: digits(17, 19)?,
        micros: digits(20, 26)?,
    };
    let pattern_ok = b[5] <= b'1'
        && b[8] <= b'3'
        && ((b[11] <= b'2' && b[14] <= b'5' && b[17] <= b'5') || &b[11..19] == b"23:59:60");
    pattern_ok.then_some(parts)
}

/// Whether `s` matches the reference's `date-time` pattern and names a real UTC instant.
pub fn is_valid_timestamp(s: &str) -> bool {
    timestamp_to_micros(s).is_some()
}

/// Microseconds since the Unix epoch, or `None` if `s` is not a valid timestamp.
pub fn timestamp_to_micros(s: &str) -> Option<i64> {
    let p = parse_pattern(s)?;
    let second = p.second.min(59); // leap second, as Temporal reads it
    let time = NaiveDate::from_ymd_opt(p.year, p.month, p.day)?
        .and_hms_micro_opt(p.hour, p.minute, second, p.micros)?;
    Some(time.and_utc().timestamp_micros())
}

/// The timestamp of `micros` since the Unix epoch. Values outside years 0000–9999, which the
/// pattern cannot express, are clamped to that range.
pub fn micros_to_timestamp(micros: i64) -> String {
    let clamped = micros.clamp(MIN_MICROS, MAX_MICROS);
    // In range by construction, so the fallback is never used.
    let time = DateTime::<Utc>::from_timestamp_micros(clamped).unwrap_or_default();
    time.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_valid_and_six_digits() {
        let now = now_timestamp();
        assert!(is_valid_timestamp(&now), "{now}");
        assert_eq!(now.len(), 27);
        assert!(now.ends_with('Z'));
    }

    #[test]
    fn accepts_what_the_pattern_and_calendar_accept() {
        for ok in [
            "2024-01-01T00:00:00.000000Z",
            "2024-02-29T23:59:59.999999Z",
            "0000-01-01T00:00:00.000000Z",
            "9999-12-31T23:59:59.999999Z",
            "2016-12-31T23:59:60.500000Z",
        ] {
            assert!(is_valid_timestamp(ok), "{ok}");
        }
        for bad in [
            "2024-01-01T00:00:00.000Z",
            "2024-01-01T00:00:00Z",
            "2024-01-01T00:00:00.0000000Z",
            "2024-01-01T00:00:00.000000+01:00",
            "2024-01-01t00:00:00.000000Z",
            "2024-01-01T00:00:00.000000z",
            "2024-01-01 00:00:00.000000Z",
            "2023-02-29T00:00:00.000000Z",
            "2024-02-30T00:00:00.000000Z",
            "2024-13-01T00:00:00.000000Z",
            "2024-00-01T00:00:00.000000Z",
            "2024-01-00T00:00:00.000000Z",
            "2024-01-01T24:00:00.000000Z",
            "2024-01-01T29:00:00.000000Z",
            "2024-01-01T12:00:60.000000Z",
            "2024-01-01T00:60:00.000000Z",
            "+02024-01-01T00:00:00.00000Z",
            "２024-01-01T00:00:00.000000Z",
            "",
        ] {
            assert!(!is_valid_timestamp(bad), "{bad}");
        }
    }

    #[test]
    fn micros_round_trip() {
        for t in [
            "2024-05-06T07:08:09.123456Z",
            "1970-01-01T00:00:00.000000Z",
            "1969-12-31T23:59:59.999999Z",
        ] {
            assert_eq!(micros_to_timestamp(timestamp_to_micros(t).unwrap()), t);
        }
        assert_eq!(
            timestamp_to_micros("1970-01-01T00:00:01.000001Z"),
            Some(1_000_001)
        );
        assert_eq!(timestamp_to_micros("1969-12-31T23:59:59.999999Z"), Some(-1));
    }

    #[test]
    fn leap_second_reads_as_second_59() {
        assert_eq!(
            timestamp_to_micros("2016-12-31T23:59:60.250000Z"),
            timestamp_to_micros("2016-12-31T23:59:59.250000Z")
        );
    }

    #[test]
    fn out_of_range_micros_are_clamped() {
        assert_eq!(micros_to_timestamp(i64::MIN), "0000-01-01T00:00:00.000000Z");
        assert_eq!(micros_to_timestamp(i64::MAX), "9999-12-31T23:59:59.999999Z");
        assert_eq!(
            timestamp_to_micros("0000-01-01T00:00:00.000000Z"),
            Some(MIN_MICROS)
        );
        assert_eq!(
            timestamp_to_micros("9999-12-31T23:59:59.999999Z"),
            Some(MAX_MICROS)
        );
    }

    #[test]
    fn lexicographic_order_is_time_order() {
        let a = "2024-01-01T00:00:00.000001Z";
        let b = "2024-01-01T00:00:00.000010Z";
        assert!(a < b && timestamp_to_micros(a) < timestamp_to_micros(b));
    }
}
