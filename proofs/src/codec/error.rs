//! Errors of the canonical encoding.

use thiserror::Error;

/// Why bytes could not be decoded. Every variant names the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The input ended inside a field.
    #[error("truncated at `{field}`: needs {needed} bytes, {available} left")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Bytes the field needs.
        needed: u64,
        /// Bytes left in the input.
        available: u64,
    },
    /// A length or count prefix is above the field's maximum.
    #[error("`{field}` has length {len}, above the maximum {max}")]
    Oversize {
        /// The field being read.
        field: &'static str,
        /// The length (or element count) in the input.
        len: u64,
        /// The largest accepted.
        max: u64,
    },
    /// Bytes remain after the last field.
    #[error("{count} trailing bytes after the last field")]
    TrailingBytes {
        /// How many bytes remain.
        count: u64,
    },
    /// The input does not start with the expected magic.
    #[error("bad magic: expected {expected:?}, found {found:?}")]
    BadMagic {
        /// The magic this format starts with.
        expected: [u8; 4],
        /// The first four bytes of the input.
        found: [u8; 4],
    },
    /// The format version is not one this code reads.
    #[error("unknown version {found} (this build reads version {supported})")]
    UnknownVersion {
        /// The version this build reads.
        supported: u16,
        /// The version in the input.
        found: u16,
    },
    /// A field's value is not one the format allows (an unknown tag, bad UTF-8).
    #[error("invalid `{field}`: {problem}")]
    InvalidValue {
        /// The field being read.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}

/// Why a value could not be encoded: a variable-length field is above its
/// bound (the bound a decoder enforces), so the bytes would not round-trip.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EncodeError {
    /// A vector or list is longer than its field allows.
    #[error("`{field}` has length {len}, above the maximum {max}")]
    Oversize {
        /// The field.
        field: &'static str,
        /// Its length (or element count).
        len: u64,
        /// The largest allowed.
        max: u64,
    },
}
