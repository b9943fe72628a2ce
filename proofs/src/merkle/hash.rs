//! Leaf and node hashes, and the trace element type.

use std::sync::LazyLock;

use serde::Serialize;

/// A 32-byte blake3 digest.
pub type Hash = [u8; 32];

/// blake3 key of leaves: `derive_key("forge.act.v1", b"")`.
static LEAF_KEY: LazyLock<Hash> = LazyLock::new(|| blake3::derive_key("forge.act.v1", b""));
/// blake3 key of key/value leaves: `derive_key("forge.kv.v1", b"")`.
static KV_LEAF_KEY: LazyLock<Hash> = LazyLock::new(|| blake3::derive_key("forge.kv.v1", b""));
/// blake3 key of internal nodes: `derive_key("forge.node.v1", b"")`.
static NODE_KEY: LazyLock<Hash> = LazyLock::new(|| blake3::derive_key("forge.node.v1", b""));

/// Element type of committed rows; its tag byte enters every leaf hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    /// 32-bit IEEE float, little-endian (the CPU engine's compute dtype).
    F32,
}

impl DType {
    /// The tag byte written in leaves and receipts.
    pub fn tag(self) -> u8 {
        match self {
            Self::F32 => 1,
        }
    }

    /// The dtype of a tag byte.
    pub fn from_tag(tag: u8) -> Option<Self> {
        match tag {
            1 => Some(Self::F32),
            _ => None,
        }
    }

    /// The dtype of an engine trace dtype name (`forge_engine::TRACE_DTYPE`).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "f32" => Some(Self::F32),
            _ => None,
        }
    }
}

/// The leaf of output row `pos` of `layer`: blake3 keyed with
/// `forge.act.v1` over `layer u32 LE || pos u32 LE || dtype tag || row as
/// little-endian f32`.
pub fn leaf_hash(layer: u32, pos: u32, dtype: DType, row: &[f32]) -> Hash {
    keyed_row_hash(&LEAF_KEY, layer, pos, dtype, row)
}

/// The leaf of the `[k | v]` row `pos` of `layer`: the same layout as
/// [`leaf_hash`], keyed with `forge.kv.v1`.
pub fn kv_leaf_hash(layer: u32, pos: u32, dtype: DType, row: &[f32]) -> Hash {
    keyed_row_hash(&KV_LEAF_KEY, layer, pos, dtype, row)
}

fn keyed_row_hash(key: &Hash, layer: u32, pos: u32, dtype: DType, row: &[f32]) -> Hash {
    let mut h = blake3::Hasher::new_keyed(key);
    h.update(&layer.to_le_bytes());
    h.update(&pos.to_le_bytes());
    h.update(&[dtype.tag()]);
    // Whole rows in one `update` (up to 8 KiB): blake3 then hashes a row's
    // 1 KiB chunks side by side with SIMD instead of one at a time, which
    // is most of a verifier's time on large openings.
    let mut buf = [0u8; 8192];
    for chunk in row.chunks(buf.len() / 4) {
        for (dst, v) in buf.chunks_exact_mut(4).zip(chunk) {
            dst.copy_from_slice(&v.to_le_bytes());
        }
        h.update(&buf[..chunk.len() * 4]);
    }
    h.finalize().into()
}

/// An internal node: blake3 keyed with `forge.node.v1` over `left || right`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = blake3::Hasher::new_keyed(&NODE_KEY);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Root of a tree with no leaves: the node-keyed hash of the empty string
/// (a real node always hashes 64 bytes, so no tree with leaves has it).
pub fn empty_root() -> Hash {
    blake3::keyed_hash(&NODE_KEY, b"").into()
}
