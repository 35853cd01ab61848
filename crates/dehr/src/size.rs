//! Byte sizes written as people write them: `1048576`, `50mb`, `1gb`, `1.5 GB`. Units are
//! binary (1kb = 1024 bytes), as in the `bytes` package dwn-server uses for
//! `MAX_RECORD_DATA_SIZE`, so the same setting means the same number here.

/// Parses a size; for clap's `value_parser`.
pub fn parse_size(input: &str) -> Result<u64, String> {
    let text = input.trim().to_ascii_lowercase();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit = unit.trim();
    let multiplier: u64 = match unit {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => {
            return Err(format!(
                "unknown unit `{unit}` in `{input}`: use b, kb, mb, gb or tb (e.g. 50mb)"
            ));
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{input}` is not a size: write e.g. 1048576, 50mb or 1gb"))?;
    let bytes = (value * multiplier as f64).floor();
    if !(1.0..=(u64::MAX as f64)).contains(&bytes) {
        return Err(format!(
            "`{input}` is out of range: the size must be at least 1 byte"
        ));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn plain_numbers_and_units() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("1gb"), Ok(1 << 30));
        assert_eq!(parse_size("50mb"), Ok(50 << 20));
        assert_eq!(parse_size("50MB"), Ok(50 << 20));
        assert_eq!(parse_size("512 kb"), Ok(512 << 10));
        assert_eq!(parse_size("1.5gb"), Ok(3 << 29));
        assert_eq!(parse_size("10b"), Ok(10));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
    }

    #[test]
    fn nonsense_is_refused() {
        for bad in ["", "mb", "0", "0.1b", "-5mb", "5 parsecs", "1.2.3mb"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
