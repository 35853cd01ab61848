//! z-base-32 (<https://philzimmermann.com/docs/human-oriented-base-32-encoding.txt>), the
//! encoding of did:dht identifiers and pkarr relay paths.
//!
//! Written here because the `zbase32` crate is LGPL. Bits are taken most-significant first, five
//! per character, without padding. Decoding is strict like `multiformats`' `base32z` (what
//! `@web5/dids` uses): unknown characters and non-zero trailing bits are rejected, so every byte
//! string has exactly one accepted spelling and a DID cannot be written two ways.

use thiserror::Error;

const ALPHABET: &[u8; 32] = b"ybndrfg8ejkmcpqxot1uwisza345h769";

/// Why a z-base-32 string could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ZBase32Error {
    /// A character outside the z-base-32 alphabet (which is lower case only).
    #[error("invalid z-base-32 character {0:?}")]
    InvalidCharacter(char),
    /// The trailing bits that do not form a whole byte are not zero, or too many are left over.
    #[error("non-canonical z-base-32 length or trailing bits")]
    NonCanonical,
}

/// Encodes bytes as z-base-32.
pub fn encode(data: &[u8]) -> String {
    let mut out = String::with_capacity((data.len() * 8).div_ceil(5));
    let mut buffer: u16 = 0;
    let mut bits = 0u32;
    for &byte in data {
        buffer = (buffer << 8) | u16::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[usize::from((buffer >> bits) & 0x1f)]));
        }
        // Keep only the bits not yet emitted so the shift above never overflows.
        buffer &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(
            ALPHABET[usize::from((buffer << (5 - bits)) & 0x1f)],
        ));
    }
    out
}

/// Decodes a z-base-32 string.
pub fn decode(text: &str) -> Result<Vec<u8>, ZBase32Error> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let mut buffer: u16 = 0;
    let mut bits = 0u32;
    for c in text.chars() {
        let value = ALPHABET
            .iter()
            .position(|&a| char::from(a) == c)
            .ok_or(ZBase32Error::InvalidCharacter(c))?;
        // `position` is < 32, so the cast cannot truncate.
        buffer = (buffer << 5) | value as u16;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            // Truncation to the low byte is the point: the upper bits were already emitted.
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    // A canonical encoding leaves fewer than 5 bits over, all zero.
    if bits >= 5 || buffer != 0 {
        return Err(ZBase32Error::NonCanonical);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn did_dht_identifier_vector() {
        // did-dht.com vector 1 identity key and identifier (web5-spec did_dht/create.json).
        let key = [
            0x60, 0x27, 0x07, 0x60, 0xbd, 0xac, 0x60, 0xd3, 0xc3, 0x94, 0xa6, 0x80, 0x2d, 0xc1,
            0x26, 0x96, 0x5d, 0x87, 0x1f, 0x24, 0xfd, 0xeb, 0xc3, 0x38, 0x51, 0x66, 0xeb, 0xfb,
            0xd0, 0x85, 0x19, 0x61,
        ];
        let id = "cyuoqaf7itop8ohww4yn5ojg13qaq83r9zihgqntc5i9zwrfdfoo";
        assert_eq!(encode(&key), id);
        assert_eq!(decode(id).unwrap(), key);
    }

    #[test]
    fn round_trips_all_lengths() {
        let data: Vec<u8> = (0u8..=255).collect();
        for len in 0..40 {
            let slice = &data[len * 3..len * 3 + len];
            assert_eq!(decode(&encode(slice)).unwrap(), slice);
        }
        // Known values from the z-base-32 specification.
        assert_eq!(encode(&[0xf0, 0xbf, 0xc7]), "6n9hq");
        assert_eq!(encode(&[0xd4, 0x7a, 0x04]), "4t7ye");
    }

    #[test]
    fn rejects_non_canonical() {
        assert_eq!(decode("6n9hQ"), Err(ZBase32Error::InvalidCharacter('Q')));
        assert_eq!(decode("0"), Err(ZBase32Error::InvalidCharacter('0')));
        // One byte is two characters with two zero padding bits; "yb" sets a padding bit.
        assert_eq!(decode("yb"), Err(ZBase32Error::NonCanonical));
        // A lone character cannot hold a byte.
        assert_eq!(decode("y"), Err(ZBase32Error::NonCanonical));
        assert_eq!(decode("yy").unwrap(), vec![0]);
    }
}
