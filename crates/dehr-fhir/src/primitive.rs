//! Primitive types: JSON representation and the checks that the regexes cannot express.

/// How a primitive is written in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JsonKind {
    /// `true`/`false`.
    Bool,
    /// A JSON number without fraction or exponent, within the range.
    Integer { min: i64, max: i64 },
    /// Any JSON number.
    Decimal,
    /// A JSON string matching the type's regex.
    String,
    /// A JSON string holding an XHTML `<div>`.
    Xhtml,
}

impl JsonKind {
    /// The JSON representation of a primitive type (json.html: boolean, the integer types and
    /// decimal are JSON booleans and numbers; everything else is a string).
    pub(crate) fn of(name: &str) -> JsonKind {
        const MAX: i64 = i32::MAX as i64;
        match name {
            "boolean" => JsonKind::Bool,
            "integer" => JsonKind::Integer {
                min: i64::from(i32::MIN),
                max: MAX,
            },
            "positiveInt" => JsonKind::Integer { min: 1, max: MAX },
            "unsignedInt" => JsonKind::Integer { min: 0, max: MAX },
            "decimal" => JsonKind::Decimal,
            "xhtml" => JsonKind::Xhtml,
            _ => JsonKind::String,
        }
    }

    /// The JSON type expected, for messages.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            JsonKind::Bool => "a JSON boolean",
            JsonKind::Integer { .. } => "a JSON integer number",
            JsonKind::Decimal => "a JSON number",
            JsonKind::String | JsonKind::Xhtml => "a JSON string",
        }
    }
}

/// Java's (and XML Schema's) ASCII meaning of the Perl classes used by the FHIR regexes,
/// written out so that a Unicode-aware engine matches exactly the same strings.
const PERL_CLASSES: [(char, &str, bool); 6] = [
    ('s', "\\t\\n\\x0B\\x0C\\r ", false),
    ('S', "\\t\\n\\x0B\\x0C\\r ", true),
    ('d', "0-9", false),
    ('D', "0-9", true),
    ('w', "0-9A-Za-z_", false),
    ('W', "0-9A-Za-z_", true),
];

/// Translates a regex of the FHIR definitions (Java syntax, ASCII `\s`, `\d`, `\w`) for the
/// `regex` crate, whose Perl classes are Unicode-aware: `\S` becomes `[^\t\n\x0B\x0C\r ]`,
/// and inside a class `[ \S]` becomes the nested `[ [^\t\n\x0B\x0C\r ]]`. The result is
/// anchored to match the whole value.
pub fn translate_java_regex(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 16);
    out.push_str("^(?:");
    let mut depth = 0usize;
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e) => match PERL_CLASSES.iter().find(|(k, _, _)| *k == e) {
                    Some((_, set, negated)) => {
                        if depth > 0 && !negated {
                            out.push_str(set);
                        } else {
                            out.push_str(if *negated { "[^" } else { "[" });
                            out.push_str(set);
                            out.push(']');
                        }
                    }
                    None => {
                        out.push('\\');
                        out.push(e);
                    }
                },
                None => out.push('\\'),
            },
            '[' => {
                depth += 1;
                out.push(c);
            }
            ']' if depth > 0 => {
                depth -= 1;
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out.push_str(")$");
    out
}

/// True for the types whose values carry a calendar date (`date`, `dateTime`, `instant`).
pub(crate) fn has_calendar_date(name: &str) -> bool {
    matches!(name, "date" | "dateTime" | "instant")
}

/// Checks that the `YYYY-MM-DD` part of a value that already matches its regex names a real
/// day (the R4 regexes accept `2021-02-31`). Partial dates (`2021`, `2021-02`) pass.
pub(crate) fn calendar_date_ok(value: &str) -> bool {
    let (Some(y), Some(m), Some(d)) = (
        number(value, 0..4),
        number(value, 5..7),
        number(value, 8..10),
    ) else {
        return true;
    };
    (1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m)
}

fn number(s: &str, range: std::ops::Range<usize>) -> Option<u32> {
    let part = s.get(range)?;
    if part.bytes().all(|b| b.is_ascii_digit()) {
        part.parse().ok()
    } else {
        None
    }
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// True when `s` starts with a URI scheme (`http:`, `urn:`, `mailto:`...).
pub(crate) fn has_scheme(s: &str) -> bool {
    let Some((scheme, _)) = s.split_once(':') else {
        return false;
    };
    let mut bytes = scheme.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar() {
        assert!(calendar_date_ok("2020"));
        assert!(calendar_date_ok("2020-02"));
        assert!(calendar_date_ok("2020-02-29"));
        assert!(calendar_date_ok("2000-02-29T10:00:00Z"));
        assert!(!calendar_date_ok("1900-02-29"));
        assert!(!calendar_date_ok("2021-02-29"));
        assert!(!calendar_date_ok("2021-04-31"));
        assert!(!calendar_date_ok("2021-13-01"));
        assert!(!calendar_date_ok("2021-01-00"));
        assert!(calendar_date_ok("2021-12-31T23:59:60+14:00"));
    }

    #[test]
    fn translation() {
        assert_eq!(
            translate_java_regex(r"[ \r\n\t\S]+"),
            r"^(?:[ \r\n\t[^\t\n\x0B\x0C\r ]]+)$"
        );
        assert_eq!(translate_java_regex(r"\S*"), r"^(?:[^\t\n\x0B\x0C\r ]*)$");
        assert_eq!(
            translate_java_regex(r"(\s*([0-9a-zA-Z\+/=]){4}\s*)+"),
            r"^(?:([\t\n\x0B\x0C\r ]*([0-9a-zA-Z\+/=]){4}[\t\n\x0B\x0C\r ]*)+)$"
        );
        assert_eq!(
            translate_java_regex(r"[^\s]+"),
            r"^(?:[^\t\n\x0B\x0C\r ]+)$"
        );
    }

    #[test]
    fn schemes() {
        assert!(has_scheme("http://x"));
        assert!(has_scheme("urn:uuid:1"));
        assert!(!has_scheme("Patient/1"));
        assert!(!has_scheme("1http:x"));
        assert!(!has_scheme(":x"));
    }
}
