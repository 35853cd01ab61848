//! The `messages.indexes` column: a message's [`Indexes`] exactly as they were put.
//!
//! The typed columns and tag rows serve queries, but cannot say whether a tag was a scalar or a
//! one-element list, so `get` and `query` return the indexes from this encoding instead of
//! reassembling them. It is a small, self-describing binary format (JSON would lose infinities
//! and needs care to round-trip every `f64`):
//!
//! ```text
//! indexes := 0x01 (format version) count:u32 (key value)*
//! key     := len:u32 utf8-bytes
//! value   := 0x01 len:u32 utf8-bytes      string
//!          | 0x02 f64-bits:u64            number
//!          | 0x03 (0x00 | 0x01)           boolean
//!          | 0x04 count:u32 value*        list
//! ```
//!
//! All integers are big-endian.

use crate::{IndexValue, Indexes, StoreError};

const VERSION: u8 = 1;
const STR: u8 = 1;
const NUM: u8 = 2;
const BOOL: u8 = 3;
const LIST: u8 = 4;

pub(crate) fn encode(indexes: &Indexes) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.push(VERSION);
    put_len(&mut out, indexes.len());
    for (key, value) in indexes {
        put_str(&mut out, key);
        put_value(&mut out, value);
    }
    out
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    // Index keys, values and lists are far below 4 GiB; saturate rather than wrap.
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_len(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, value: &IndexValue) {
    match value {
        IndexValue::Str(s) => {
            out.push(STR);
            put_str(out, s);
        }
        IndexValue::Num(n) => {
            out.push(NUM);
            out.extend_from_slice(&n.to_bits().to_be_bytes());
        }
        IndexValue::Bool(b) => {
            out.push(BOOL);
            out.push(u8::from(*b));
        }
        IndexValue::List(items) => {
            out.push(LIST);
            put_len(out, items.len());
            for item in items {
                put_value(out, item);
            }
        }
    }
}

pub(crate) fn decode(bytes: &[u8]) -> Result<Indexes, StoreError> {
    let mut reader = Reader { bytes };
    if reader.take(1)? != [VERSION] {
        return Err(corrupt("unknown format version"));
    }
    let count = reader.len()?;
    let mut indexes = Indexes::new();
    for _ in 0..count {
        let key = reader.string()?;
        let value = reader.value(0)?;
        indexes.insert(key, value);
    }
    if !reader.bytes.is_empty() {
        return Err(corrupt("trailing bytes"));
    }
    Ok(indexes)
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("message indexes: {what}"))
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        if self.bytes.len() < n {
            return Err(corrupt("truncated"));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], StoreError> {
        self.take(N)?.try_into().map_err(|_| corrupt("truncated"))
    }

    fn len(&mut self) -> Result<usize, StoreError> {
        usize::try_from(u32::from_be_bytes(self.array()?)).map_err(|_| corrupt("length overflow"))
    }

    fn string(&mut self) -> Result<String, StoreError> {
        let len = self.len()?;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| corrupt("invalid UTF-8"))
    }

    fn value(&mut self, depth: usize) -> Result<IndexValue, StoreError> {
        // Lists hold scalars only (nested lists are refused at put); bound the recursion anyway.
        if depth > 1 {
            return Err(corrupt("lists nested too deeply"));
        }
        let [tag] = self.array()?;
        Ok(match tag {
            STR => IndexValue::Str(self.string()?),
            NUM => IndexValue::Num(f64::from_bits(u64::from_be_bytes(self.array()?))),
            BOOL => match self.array()? {
                [0] => IndexValue::Bool(false),
                [1] => IndexValue::Bool(true),
                _ => return Err(corrupt("invalid boolean")),
            },
            LIST => {
                let count = self.len()?;
                // Each element takes at least 2 bytes: a corrupt count cannot make us allocate more.
                let mut items = Vec::with_capacity(count.min(self.bytes.len() / 2));
                for _ in 0..count {
                    items.push(self.value(depth + 1)?);
                }
                IndexValue::List(items)
            }
            _ => return Err(corrupt("unknown value tag")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut ix = Indexes::new();
        ix.insert("a".into(), IndexValue::Str("héllo".into()));
        ix.insert("b".into(), IndexValue::Num(f64::NEG_INFINITY));
        ix.insert("c".into(), IndexValue::Num(-0.0));
        ix.insert("d".into(), IndexValue::Bool(true));
        ix.insert(
            "tag.e".into(),
            IndexValue::List(vec![IndexValue::Num(1.5), IndexValue::Str(String::new())]),
        );
        ix.insert("tag.f".into(), IndexValue::List(vec![]));
        let decoded = decode(&encode(&ix)).unwrap();
        assert_eq!(decoded, ix);
        assert!(matches!(decoded["c"], IndexValue::Num(n) if n.is_sign_negative()));
    }

    #[test]
    fn refuses_garbage() {
        assert!(decode(&[]).is_err());
        assert!(decode(&[2, 0, 0, 0, 0]).is_err());
        assert!(decode(&[1, 0, 0, 0, 1, 0, 0, 0, 1, b'a', 9]).is_err());
        assert!(decode(&[1, 0, 0, 0, 0, 7]).is_err());
    }
}
