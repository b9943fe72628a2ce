//! Leaf and node hashes, and the trace element type.

use std::sync::LazyLock;

use serde::Serialize;

/// A 32-byte blake3 digest.
pub type Hash = [u8; 32];

/// blake3 key of leaves: `derive_key("forge.act.v2", b"")`.
static LEAF_KEY: LazyLock<Hash> = LazyLock::new(|| blake3::derive_key("forge.act.v2", b""));
/// blake3 key of key/value leaves: `derive_key("forge.kv.v2", b"")`.
static KV_LEAF_KEY: LazyLock<Hash> = LazyLock::new(|| blake3::derive_key("forge.kv.v2", b""));

/// Positions per key/value leaf.
///
/// A spot check opens a layer's keys and values from the first position to
/// the cell's, hundreds of rows on long contexts. One leaf per row made the
/// verifier hash each 1.5 KiB row on its own, one blake3 chunk after the
/// other; a leaf over 16 rows (24 KiB on SmolLM2) lets blake3 hash 16 chunks
/// side by side, for at most 15 extra rows per opening.
pub const KV_BLOCK: usize = 16;

/// Key/value leaves of a trace of `positions` positions: `ceil(positions / KV_BLOCK)`.
pub fn kv_blocks(positions: usize) -> usize {
    positions.div_ceil(KV_BLOCK)
}

/// Key/value rows an opening of the first `through` positions of a trace of
/// `positions` positions holds: whole blocks, so `through` rounded up to a
/// multiple of [`KV_BLOCK`], or the trace's end.
pub(crate) fn kv_rows_covering(through: usize, positions: usize) -> usize {
    through
        .div_ceil(KV_BLOCK)
        .saturating_mul(KV_BLOCK)
        .min(positions)
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

/// The leaf of output row `pos` of `layer`: blake3 keyed with
/// `forge.act.v2` over `row as little-endian f32 || layer u32 LE || pos u32
/// LE || dtype tag`.
///
/// The row comes first so that its bytes start on a blake3 chunk boundary:
/// blake3 then hashes a 2.3 KiB SmolLM2 row's whole chunks side by side
/// (`forge.act.v1` put the 9 bytes of layer, position and tag first, and
/// hashed 1.7x slower, one 64-byte block after the other).
pub fn leaf_hash(layer: u32, pos: u32, dtype: DType, row: &[f32]) -> Hash {
    let mut h = blake3::Hasher::new_keyed(&LEAF_KEY);
    update_f32s(&mut h, std::iter::once(row));
    h.update(&layer.to_le_bytes());
    h.update(&pos.to_le_bytes());
    h.update(&[dtype.tag()]);
    h.finalize().into()
}

/// The leaf of the `[k | v]` rows `first_pos..first_pos + rows.len()` of
/// `layer` (one block of [`KV_BLOCK`] positions, or the trace's last, shorter
/// one): blake3 keyed with `forge.kv.v2` over `layer u32 LE || first_pos
/// u32 LE || row count u32 LE || dtype tag || the rows as little-endian f32`.
pub fn kv_leaf_hash<R: AsRef<[f32]>>(layer: u32, first_pos: u32, dtype: DType, rows: &[R]) -> Hash {
    let mut h = blake3::Hasher::new_keyed(&KV_LEAF_KEY);
    h.update(&layer.to_le_bytes());
    h.update(&first_pos.to_le_bytes());
    // At most KV_BLOCK rows reach here; saturating keeps this total.
    h.update(&u32::try_from(rows.len()).unwrap_or(u32::MAX).to_le_bytes());
    h.update(&[dtype.tag()]);
    update_f32s(&mut h, rows.iter().map(AsRef::as_ref));
    h.finalize().into()
}

fn update_f32s<'a>(h: &mut blake3::Hasher, rows: impl Iterator<Item = &'a [f32]>) {
    let mut buf = [0u8; 16384];
    let mut len = 0;
    for row in rows {
        let mut rest = row;
        while !rest.is_empty() {
            let take = ((buf.len() - len) / 4).min(rest.len());
            for (dst, v) in buf[len..len + 4 * take]
                .chunks_exact_mut(4)
                .zip(&rest[..take])
            {
                dst.copy_from_slice(&v.to_le_bytes());
            }
            len += 4 * take;
            rest = &rest[take..];
            if len == buf.len() {
                h.update(&buf);
                len = 0;
            }
        }
    }
    h.update(&buf[..len]);
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
