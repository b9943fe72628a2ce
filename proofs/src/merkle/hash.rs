//! Leaf and node hashes, and the trace element type.

use std::sync::LazyLock;

use serde::Serialize;

/// A 32-byte blake3 digest.
pub type Hash = [u8; 32];

/// blake3 key of output-row leaves: `derive_key("forge.act.v3", b"")`.
static OUTPUT_LEAF_KEY: LazyLock<Hash> = LazyLock::new(|| blake3::derive_key("forge.act.v3", b""));
/// blake3 key of key/value leaves: `derive_key("forge.kv.v3", b"")`.
static KV_LEAF_KEY: LazyLock<Hash> = LazyLock::new(|| blake3::derive_key("forge.kv.v3", b""));

/// Positions per leaf, in both kinds of row group.
///
/// blake3 hashes the whole 1 KiB chunks of one input side by side, 16 at a
/// time with AVX-512. A leaf per 2.3 KiB SmolLM2 output row gave it two
/// chunks and a tail (1.1 us per row here); a leaf over 16 rows gives it 36
/// chunks (0.35 us per row), which halves the commitment's cost per token.
/// An opening then holds the whole blocks around the rows it opens: at most
/// 15 extra rows each.
pub const ROW_BLOCK: usize = 16;

/// Leaves of one row group of a trace of `positions` positions:
/// `ceil(positions / ROW_BLOCK)`.
pub fn row_blocks(positions: usize) -> usize {
    positions.div_ceil(ROW_BLOCK)
}

/// Rows an opening of the first `through` positions of a trace of
/// `positions` positions holds: whole blocks, so `through` rounded up to a
/// multiple of [`ROW_BLOCK`], or the trace's end.
pub(crate) fn rows_covering(through: usize, positions: usize) -> usize {
    through
        .div_ceil(ROW_BLOCK)
        .saturating_mul(ROW_BLOCK)
        .min(positions)
}

/// Which rows a row group holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RowGroup {
    /// A layer's output rows: the residual stream after it.
    Output = 0,
    /// A layer's `[k | v]` rows.
    KeyValue = 1,
}

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

/// The leaf of one block of rows: rows `first_pos..first_pos + count` of
/// `layer`'s `group`, `rows` holding them one after the other (a whole
/// [`ROW_BLOCK`], or the shorter last block of a trace).
///
/// blake3 keyed with `forge.act.v3` (output rows) or `forge.kv.v3`
/// (key/value rows) over `the rows as little-endian f32 || layer u32 LE ||
/// first_pos u32 LE || count u32 LE || dtype tag`. The rows come first, so
/// that their bytes start on a blake3 chunk boundary and every whole chunk
/// hashes side by side (13 bytes in front cost a third more time).
pub fn leaf_hash(
    group: RowGroup,
    layer: u32,
    first_pos: u32,
    count: u32,
    dtype: DType,
    rows: &[f32],
) -> Hash {
    let key = match group {
        RowGroup::Output => &OUTPUT_LEAF_KEY,
        RowGroup::KeyValue => &KV_LEAF_KEY,
    };
    let mut h = blake3::Hasher::new_keyed(key);
    update_f32s(&mut h, rows);
    h.update(&layer.to_le_bytes());
    h.update(&first_pos.to_le_bytes());
    h.update(&count.to_le_bytes());
    h.update(&[dtype.tag()]);
    h.finalize().into()
}

/// Feeds `rows` to `h` as little-endian bytes: the floats' own bytes on a
/// little-endian machine (one large input, which blake3 hashes fastest).
#[cfg(target_endian = "little")]
fn update_f32s(h: &mut blake3::Hasher, rows: &[f32]) {
    h.update(bytemuck::cast_slice(rows));
}

/// Feeds `rows` to `h` as little-endian bytes, through a buffer.
#[cfg(not(target_endian = "little"))]
fn update_f32s(h: &mut blake3::Hasher, rows: &[f32]) {
    let mut buf = [0u8; 16384];
    for part in rows.chunks(buf.len() / 4) {
        for (dst, v) in buf.chunks_exact_mut(4).zip(part) {
            dst.copy_from_slice(&v.to_le_bytes());
        }
        h.update(&buf[..4 * part.len()]);
    }
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
