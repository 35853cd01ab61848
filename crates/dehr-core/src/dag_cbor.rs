//! A direct serde serializer to canonical dag-cbor with JavaScript number rules: the fast path
//! of [`crate::cid::compute_cid`].
//!
//! Why it exists: the general path encodes a value to dag-cbor, decodes it into an `Ipld` tree
//! (a `BTreeMap` per object), rewrites its numbers and encodes it again. Every message a node
//! accepts needs three or four CIDs (descriptor, entry id, message, sometimes context), so that
//! round trip was a visible share of a write's CPU. This serializer writes the final bytes in one
//! pass, buffering only each map's entries to sort them.
//!
//! It produces exactly what the general path produces (a property test checks this on random
//! values): definite lengths, the shortest integer heads, every float as float64, map keys in
//! dag-cbor's canonical order (shorter first, then bytewise), numbers as JavaScript's `cborg`
//! writes them (see the `cid` module). What it does not know how to encode the way
//! `serde_ipld_dagcbor` does (enum variants carrying data, non-text map keys) is reported as
//! [`Unsupported`], and the caller takes the general path.

use serde::ser::{self, Serialize};

/// The largest integer JavaScript represents exactly (`Number.MAX_SAFE_INTEGER`); `cborg`
/// writes integers only up to this magnitude.
const MAX_SAFE_INTEGER: i128 = (1 << 53) - 1;

/// A number as JavaScript's `cborg` writes it: a CBOR integer or a float64.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum JsNumber {
    Integer(i128),
    Float(f64),
}

/// An integer as JavaScript holds it: exact when safe, else the nearest double (Rust's
/// int-to-float cast rounds to nearest, ties to even, like `JSON.parse`).
pub(crate) fn js_integer(i: i128) -> JsNumber {
    if (-MAX_SAFE_INTEGER..=MAX_SAFE_INTEGER).contains(&i) {
        JsNumber::Integer(i)
    } else {
        JsNumber::Float(i as f64)
    }
}

/// A double as JavaScript's `cborg` writes it: an integer when integral and safe (so `1.0`
/// and `-0` are the integers 1 and 0), else float64; `None` for NaN and the infinities.
pub(crate) fn js_double(f: f64) -> Option<JsNumber> {
    if !f.is_finite() {
        return None;
    }
    // `f` is integral and |f| <= 2^53 - 1, so the cast is exact (and maps -0.0 to 0).
    Some(if f.fract() == 0.0 && f.abs() <= MAX_SAFE_INTEGER as f64 {
        JsNumber::Integer(f as i128)
    } else {
        JsNumber::Float(f)
    })
}

/// Why the fast path declined a value.
#[derive(Debug)]
pub(crate) enum Unsupported {
    /// A shape this encoder leaves to the general path.
    Shape,
    /// NaN or an infinity, which dag-cbor cannot carry.
    NonFinite(f64),
    /// The value's own `Serialize` failed.
    Custom(String),
}

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unsupported::Shape => f.write_str("a shape the fast dag-cbor encoder does not handle"),
            Unsupported::NonFinite(x) => write!(f, "non-finite number {x}"),
            Unsupported::Custom(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Unsupported {}

impl ser::Error for Unsupported {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Unsupported::Custom(msg.to_string())
    }
}

/// Canonical dag-cbor bytes of `value`, or why this encoder declined it.
pub(crate) fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Unsupported> {
    let mut out = Vec::with_capacity(512);
    value.serialize(Encoder { out: &mut out })?;
    Ok(out)
}

fn head(out: &mut Vec<u8>, major: u8, n: u64) {
    let m = major << 5;
    if n < 24 {
        out.push(m | n as u8);
    } else if n <= u64::from(u8::MAX) {
        out.extend_from_slice(&[m | 24, n as u8]);
    } else if n <= u64::from(u16::MAX) {
        out.push(m | 25);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else if n <= u64::from(u32::MAX) {
        out.push(m | 26);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn js_number(out: &mut Vec<u8>, n: JsNumber) {
    match n {
        JsNumber::Integer(i) if i >= 0 => head(out, 0, i as u64),
        JsNumber::Integer(i) => head(out, 1, (-1 - i) as u64),
        JsNumber::Float(f) => {
            out.push(0xfb);
            out.extend_from_slice(&f.to_be_bytes());
        }
    }
}

fn integer(out: &mut Vec<u8>, i: i128) {
    js_number(out, js_integer(i));
}

fn number(out: &mut Vec<u8>, f: f64) -> Result<(), Unsupported> {
    js_number(out, js_double(f).ok_or(Unsupported::NonFinite(f))?);
    Ok(())
}

fn text(out: &mut Vec<u8>, s: &str) {
    head(out, 3, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

struct Encoder<'a> {
    out: &'a mut Vec<u8>,
}

/// A list: its items are written to a scratch buffer, since the head needs their count first
/// and serde's length hint is optional.
struct List<'a> {
    out: &'a mut Vec<u8>,
    items: Vec<u8>,
    count: u64,
}

impl List<'_> {
    fn item<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unsupported> {
        value.serialize(Encoder {
            out: &mut self.items,
        })?;
        self.count += 1;
        Ok(())
    }

    fn finish(self) {
        head(self.out, 4, self.count);
        self.out.extend_from_slice(&self.items);
    }
}

/// A map: entries as (encoded key, encoded value) ranges in one buffer, sorted at the end.
struct Map<'a> {
    out: &'a mut Vec<u8>,
    buf: Vec<u8>,
    /// (key start, key end, value end) in `buf`.
    entries: Vec<(usize, usize, usize)>,
    pending_key: Option<(usize, usize)>,
}

impl<'a> Map<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        Map {
            out,
            buf: Vec::with_capacity(256),
            entries: Vec::new(),
            pending_key: None,
        }
    }

    /// dag-cbor allows only text keys: a key that encodes as anything else is declined.
    fn key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Unsupported> {
        let start = self.buf.len();
        key.serialize(Encoder { out: &mut self.buf })?;
        if self.buf[start] >> 5 != 3 {
            return Err(Unsupported::Shape);
        }
        self.pending_key = Some((start, self.buf.len()));
        Ok(())
    }

    fn value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unsupported> {
        let (start, end) = self.pending_key.take().ok_or(Unsupported::Shape)?;
        value.serialize(Encoder { out: &mut self.buf })?;
        self.entries.push((start, end, self.buf.len()));
        Ok(())
    }

    fn field<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), Unsupported> {
        let start = self.buf.len();
        text(&mut self.buf, key);
        let end = self.buf.len();
        value.serialize(Encoder { out: &mut self.buf })?;
        self.entries.push((start, end, self.buf.len()));
        Ok(())
    }

    fn finish(mut self) {
        let buf = &self.buf;
        // Encoded text keys compare as dag-cbor orders keys: the head grows with the length,
        // so shorter keys sort first, then equal lengths bytewise. The sort is stable, so of
        // two equal keys (possible only with `flatten`) the later one comes last and is kept.
        self.entries
            .sort_by(|a, b| buf[a.0..a.1].cmp(&buf[b.0..b.1]));
        let mut kept: Vec<(usize, usize, usize)> = Vec::with_capacity(self.entries.len());
        for e in self.entries {
            match kept.last_mut() {
                Some(last) if buf[last.0..last.1] == buf[e.0..e.1] => *last = e,
                _ => kept.push(e),
            }
        }
        head(self.out, 5, kept.len() as u64);
        for (start, _, end) in kept {
            self.out.extend_from_slice(&buf[start..end]);
        }
    }
}

/// The serializer methods of the integer types that always fit CBOR's 64-bit integers.
macro_rules! integers {
    ($($method:ident: $ty:ty),* $(,)?) => {
        $(
            fn $method(self, v: $ty) -> Result<(), Unsupported> {
                integer(self.out, i128::from(v));
                Ok(())
            }
        )*
    };
}

impl<'a> ser::Serializer for Encoder<'a> {
    type Ok = ();
    type Error = Unsupported;
    type SerializeSeq = List<'a>;
    type SerializeTuple = List<'a>;
    type SerializeTupleStruct = List<'a>;
    type SerializeTupleVariant = ser::Impossible<(), Unsupported>;
    type SerializeMap = Map<'a>;
    type SerializeStruct = Map<'a>;
    type SerializeStructVariant = ser::Impossible<(), Unsupported>;

    fn serialize_bool(self, v: bool) -> Result<(), Unsupported> {
        self.out.push(if v { 0xf5 } else { 0xf4 });
        Ok(())
    }
    integers!(
        serialize_i8: i8,
        serialize_i16: i16,
        serialize_i32: i32,
        serialize_i64: i64,
        serialize_u8: u8,
        serialize_u16: u16,
        serialize_u32: u32,
        serialize_u64: u64,
    );
    fn serialize_i128(self, v: i128) -> Result<(), Unsupported> {
        // Beyond 64 bits the general path's CBOR integers do not apply; leave it to it.
        if i64::try_from(v).is_err() && u64::try_from(v).is_err() {
            return Err(Unsupported::Shape);
        }
        integer(self.out, v);
        Ok(())
    }
    fn serialize_u128(self, v: u128) -> Result<(), Unsupported> {
        match u64::try_from(v) {
            Ok(v) => self.serialize_u64(v),
            Err(_) => Err(Unsupported::Shape),
        }
    }
    fn serialize_f32(self, v: f32) -> Result<(), Unsupported> {
        number(self.out, f64::from(v))
    }
    fn serialize_f64(self, v: f64) -> Result<(), Unsupported> {
        number(self.out, v)
    }
    fn serialize_char(self, v: char) -> Result<(), Unsupported> {
        text(self.out, v.encode_utf8(&mut [0; 4]));
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), Unsupported> {
        text(self.out, v);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), Unsupported> {
        head(self.out, 2, v.len() as u64);
        self.out.extend_from_slice(v);
        Ok(())
    }
    fn serialize_none(self) -> Result<(), Unsupported> {
        self.out.push(0xf6);
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Unsupported> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Unsupported> {
        self.out.push(0xf6);
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Unsupported> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), Unsupported> {
        text(self.out, variant);
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Unsupported> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), Unsupported> {
        Err(Unsupported::Shape)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<List<'a>, Unsupported> {
        Ok(List {
            out: self.out,
            items: Vec::new(),
            count: 0,
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<List<'a>, Unsupported> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<List<'a>, Unsupported> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Unsupported> {
        Err(Unsupported::Shape)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Map<'a>, Unsupported> {
        Ok(Map::new(self.out))
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Map<'a>, Unsupported> {
        Ok(Map::new(self.out))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Unsupported> {
        Err(Unsupported::Shape)
    }
}

/// Sequences, tuples and tuple structs are all CBOR arrays.
macro_rules! list_impl {
    ($($trait:ident :: $method:ident),*) => {$(
        impl ser::$trait for List<'_> {
            type Ok = ();
            type Error = Unsupported;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unsupported> {
                self.item(value)
            }
            fn end(self) -> Result<(), Unsupported> {
                self.finish();
                Ok(())
            }
        }
    )*};
}

list_impl!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field
);

impl ser::SerializeMap for Map<'_> {
    type Ok = ();
    type Error = Unsupported;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Unsupported> {
        self.key(key)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unsupported> {
        self.value(value)
    }
    fn end(self) -> Result<(), Unsupported> {
        self.finish();
        Ok(())
    }
}

impl ser::SerializeStruct for Map<'_> {
    type Ok = ();
    type Error = Unsupported;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Unsupported> {
        self.field(key, value)
    }
    fn end(self) -> Result<(), Unsupported> {
        self.finish();
        Ok(())
    }
}
