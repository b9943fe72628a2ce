//! Leaf and node hashes, and the trace element type.

use std::sync::LazyLock;

use forge_engine::{f16, narrow_f16_exact};
use half::slice::HalfFloatSliceExt;
use serde::Serialize;

use super::MerkleError;

/// A 32-byte blake3 digest.
pub type Hash = [u8; 32];

/// blake3 key of output-row leaves: `derive_key("forge.act.v3", b"")`.
static OUTPUT_LEAF_KEY: LazyLock<Hash> = LazyLock::new(|| blake3::derive_key("forge.act.v3", b""));
/// blake3 key of key/value leaves: `derive_key("forge.kv.v3", b"")`.
static KV_LEAF_KEY: LazyLock<Hash> = LazyLock::new(|| blake3::derive_key("forge.kv.v3", b""));

/// Positions per output-row leaf.
///
/// blake3 hashes the whole 1 KiB chunks of one input side by side, 16 at a
/// time with AVX-512. A leaf per 2.3 KiB SmolLM2 output row gave it two
/// chunks and a tail (1.1 us per row here); a leaf over 16 rows gives it 36
/// chunks (0.35 us per row), which halves the commitment's cost per token.
/// An opening then holds the whole blocks around the rows it opens: at most
/// 15 extra rows each.
pub const OUTPUT_BLOCK: usize = 16;

/// Positions per key/value leaf.
///
/// A SmolLM2 key/value row is 768 bytes in f16, so 16 of them made 12
/// chunks, which blake3 hashed 8 and then 4 at a time: at 3.2 GB/s against
/// 7.1 GB/s for the 48 chunks of 64 rows, read from memory (`cargo run
/// --release -p forge-benches --example leaf_rate`). A spot-check cell opens a prefix of a layer's keys and
/// values anyway (rows 0..=t), so a longer block costs it at most 63 rows
/// (48 KB) where it cost 15.
pub const KV_BLOCK: usize = 64;

/// Leaves of one row group of `group`'s kind over a trace of `positions`
/// positions: `ceil(positions / block)`.
pub fn row_blocks(group: RowGroup, positions: usize) -> usize {
    positions.div_ceil(group.block())
}

/// Rows an opening of the first `through` positions of one of `group`'s
/// row groups over a trace of `positions` positions holds: whole blocks, so
/// `through` rounded up to a multiple of the group's block, or the trace's
/// end.
pub(crate) fn rows_covering(group: RowGroup, through: usize, positions: usize) -> usize {
    let block = group.block();
    through.div_ceil(block).saturating_mul(block).min(positions)
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

impl RowGroup {
    /// Positions per leaf: [`OUTPUT_BLOCK`] or [`KV_BLOCK`].
    pub const fn block(self) -> usize {
        match self {
            Self::Output => OUTPUT_BLOCK,
            Self::KeyValue => KV_BLOCK,
        }
    }
}

/// blake3 key of internal nodes: `derive_key("forge.node.v1", b"")`.
static NODE_KEY: LazyLock<Hash> = LazyLock::new(|| blake3::derive_key("forge.node.v1", b""));

/// Element types of committed rows; its tag byte enters every leaf hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DType {
    /// Every row 32-bit IEEE floats, little-endian (the burn backends,
    /// whose key/value caches are f32).
    F32,
    /// Output rows f32, key/value rows IEEE binary16, both little-endian:
    /// the CPU engine's trace, whose cache holds keys and values in f16.
    /// Half the key/value bytes to copy, hash, keep and open.
    F32KvF16,
}

impl DType {
    /// The tag byte written in leaves and receipts.
    pub fn tag(self) -> u8 {
        match self {
            Self::F32 => 1,
            Self::F32KvF16 => 2,
        }
    }

    /// The dtype of a tag byte.
    pub fn from_tag(tag: u8) -> Option<Self> {
        match tag {
            1 => Some(Self::F32),
            2 => Some(Self::F32KvF16),
            _ => None,
        }
    }

    /// The dtype of an engine trace dtype name (`forge_engine::Backend::trace_dtype`).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "f32" => Some(Self::F32),
            "f32-kv-f16" => Some(Self::F32KvF16),
            _ => None,
        }
    }

    /// The dtype of `backend`'s trace ([`forge_engine::Backend::trace_dtype`]).
    pub fn of_backend(backend: forge_engine::Backend) -> Self {
        Self::from_name(backend.trace_dtype()).unwrap_or(Self::F32)
    }

    /// How `group`'s rows are stored and hashed.
    pub fn elem(self, group: RowGroup) -> Elem {
        match (self, group) {
            (Self::F32KvF16, RowGroup::KeyValue) => Elem::F16,
            _ => Elem::F32,
        }
    }
}

/// The element type of one row group's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Elem {
    /// 32-bit IEEE floats.
    F32,
    /// IEEE binary16 (the sink keeps them two to a 32-bit word, openings
    /// as f16 values; the public [`leaf_hash`] takes them widened to f32,
    /// which is exact, and refuses a value that no f16 widens to).
    F16,
}

impl Elem {
    /// The tag byte of openings (`FRGO` v5 and later).
    pub fn tag(self) -> u8 {
        match self {
            Self::F32 => 1,
            Self::F16 => 2,
        }
    }

    /// The element type of a tag byte.
    pub fn from_tag(tag: u8) -> Option<Self> {
        match tag {
            1 => Some(Self::F32),
            2 => Some(Self::F16),
            _ => None,
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 => 2,
        }
    }

    /// 32-bit words a row of `width` elements takes where rows are kept
    /// (two f16 to a word; f16 rows are an even number wide).
    pub(crate) fn words(self, width: usize) -> usize {
        width * self.size() / 4
    }
}

/// The leaf of one block of rows: rows `first_pos..first_pos + count` of
/// `layer`'s `group`, `rows` holding them one after the other (a whole
/// block of [`RowGroup::block`] rows, or the shorter last block of a trace)
/// as f32 values.
///
/// blake3 keyed with `forge.act.v3` (output rows) or `forge.kv.v3`
/// (key/value rows) over `the rows' elements little-endian (f32, or f16
/// where `dtype` keeps the group so) || layer u32 LE || first_pos u32 LE
/// || count u32 LE || dtype tag`. The rows come first, so that their bytes
/// start on a blake3 chunk boundary and every whole chunk hashes side by
/// side (13 bytes in front cost a third more time). Fails when a group kept
/// in f16 has a value that is not an f16 widened.
pub fn leaf_hash(
    group: RowGroup,
    layer: u32,
    first_pos: u32,
    count: u32,
    dtype: DType,
    rows: &[f32],
) -> Result<Hash, MerkleError> {
    match dtype.elem(group) {
        Elem::F32 => Ok(leaf_hash_words(group, layer, first_pos, count, dtype, rows)),
        Elem::F16 => Ok(leaf_hash_f16(
            group,
            layer,
            first_pos,
            count,
            dtype,
            &f16_values(rows)?,
        )),
    }
}

/// [`leaf_hash`] over f16 rows as they are (a group the dtype keeps in
/// f16).
pub(crate) fn leaf_hash_f16(
    group: RowGroup,
    layer: u32,
    first_pos: u32,
    count: u32,
    dtype: DType,
    rows: &[f16],
) -> Hash {
    let mut h = leaf_hasher(group);
    update_le(&mut h, rows.reinterpret_cast(), u16::to_le_bytes);
    leaf_tail(h, layer, first_pos, count, dtype)
}

/// `rows` (f16 values widened) as f16 two to a 32-bit word, the way the
/// sink keeps them: the words' bytes are the f16s' little-endian bytes on a
/// little-endian machine.
pub(crate) fn pack_f16(rows: &[f32]) -> Result<Vec<f32>, MerkleError> {
    if !rows.len().is_multiple_of(2) {
        return Err(MerkleError::NotF16 {
            index: rows.len() as u64,
        });
    }
    let halves = f16_values(rows)?;
    let mut words = vec![0.0f32; rows.len() / 2];
    bytemuck::cast_slice_mut::<f32, u16>(&mut words).copy_from_slice(halves.reinterpret_cast());
    Ok(words)
}

/// `rows` as the f16 values they are, or the index of the first value that
/// is not an f16 widened. A spot check's key/value openings run to hundreds
/// of thousands of values: the engine's vector conversion, not one value at
/// a time.
fn f16_values(rows: &[f32]) -> Result<Vec<f16>, MerkleError> {
    let mut halves = vec![f16::ZERO; rows.len()];
    narrow_f16_exact(rows, &mut halves).map_err(|i| MerkleError::NotF16 { index: i as u64 })?;
    Ok(halves)
}

/// [`leaf_hash`] over rows as the sink keeps them: 32-bit words, f32
/// values or (a group kept in f16) two f16 each.
pub(crate) fn leaf_hash_words(
    group: RowGroup,
    layer: u32,
    first_pos: u32,
    count: u32,
    dtype: DType,
    words: &[f32],
) -> Hash {
    let mut h = leaf_hasher(group);
    match dtype.elem(group) {
        Elem::F32 => update_le(&mut h, words, f32::to_le_bytes),
        Elem::F16 => update_le(
            &mut h,
            bytemuck::cast_slice::<f32, u16>(words),
            u16::to_le_bytes,
        ),
    }
    leaf_tail(h, layer, first_pos, count, dtype)
}

/// A leaf's hasher: keyed by its row group.
fn leaf_hasher(group: RowGroup) -> blake3::Hasher {
    blake3::Hasher::new_keyed(match group {
        RowGroup::Output => &OUTPUT_LEAF_KEY,
        RowGroup::KeyValue => &KV_LEAF_KEY,
    })
}

/// The fields after a leaf's rows, and the hash.
fn leaf_tail(mut h: blake3::Hasher, layer: u32, first_pos: u32, count: u32, dtype: DType) -> Hash {
    h.update(&layer.to_le_bytes());
    h.update(&first_pos.to_le_bytes());
    h.update(&count.to_le_bytes());
    h.update(&[dtype.tag()]);
    h.finalize().into()
}

/// Feeds `v` to `h` as little-endian bytes (each value's `le`): the values'
/// own bytes on a little-endian machine (one large input, which blake3
/// hashes fastest), else through the codec's buffer.
fn update_le<T: bytemuck::Pod, const N: usize>(
    h: &mut blake3::Hasher,
    v: &[T],
    le: fn(T) -> [u8; N],
) {
    #[cfg(target_endian = "little")]
    {
        let _ = le;
        h.update(bytemuck::cast_slice(v));
    }
    #[cfg(not(target_endian = "little"))]
    crate::codec::put_le_chunks(v, le, |bytes| {
        h.update(bytes);
    });
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
