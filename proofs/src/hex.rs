//! Lower-case hex, and serde helpers that write byte arrays as hex strings.

use serde::Serializer;

/// Lower-case hex of `bytes`.
pub(crate) fn encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// Serialises any byte string as one hex string.
pub(crate) fn serialize<S: Serializer, B: AsRef<[u8]>>(bytes: &B, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&encode(bytes.as_ref()))
}

/// Serialises a list of hashes as a list of hex strings.
pub(crate) fn serialize_hashes<S: Serializer>(
    hashes: &[[u8; 32]],
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_seq(hashes.iter().map(|h| encode(h)))
}

/// Serialises an integer as a decimal string (JSON numbers lose precision above 2^53).
pub(crate) fn serialize_decimal<S: Serializer, T: std::fmt::Display>(
    v: &T,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}
