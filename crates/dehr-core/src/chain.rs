//! Hash chains.

/// The hash chaining the access log: `SHA-256(previous hash ‖ seq as 8 big-endian bytes ‖
/// entry)`, with 32 zero bytes before the first entry. Changing, removing or reordering any entry
/// changes every later hash; truncating the end is caught by comparing with a head (seq and hash)
/// seen before.
pub fn access_log_hash(previous: &[u8; 32], seq: u64, entry: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    hasher.update(previous);
    hasher.update(seq.to_be_bytes());
    hasher.update(entry);
    hasher.finalize().into()
}
