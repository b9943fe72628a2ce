//! Parsing a GGUF v2/v3 file held in memory.

use std::collections::BTreeMap;
use std::path::Path;

use super::{DEFAULT_ALIGNMENT, GGUF_MAGIC, GgufValue};
use crate::error::{EngineError, Result, gguf_err, meta_err, tensor_err};
use crate::quant::{GgmlType, ggml_type_name};

/// Largest number of dimensions a GGML tensor has.
const MAX_DIMS: u32 = 4;
/// Array nesting deeper than this is refused (no real file nests at all).
const MAX_NESTING: usize = 4;

/// One entry of the tensor table.
#[derive(Clone, Debug)]
pub struct TensorInfo {
    /// Tensor name (e.g. `blk.0.attn_q.weight`).
    pub name: String,
    /// Dimensions, innermost first (GGML order): a weight of `rows x cols`
    /// row-major is `[cols, rows]`.
    pub dims: Vec<usize>,
    /// Element type.
    pub ty: GgmlType,
    /// Absolute byte offset of the tensor's data in the file.
    pub offset: usize,
    /// Byte length of the tensor's data.
    pub len: usize,
}

impl TensorInfo {
    /// Number of elements.
    pub fn elems(&self) -> usize {
        self.dims.iter().product()
    }
}

/// A parsed GGUF file: its metadata, tensor table and bytes.
#[derive(Debug)]
pub struct GgufFile {
    version: u32,
    metadata: BTreeMap<String, GgufValue>,
    tensors: Vec<TensorInfo>,
    bytes: Vec<u8>,
    data_start: usize,
}

impl GgufFile {
    /// Read and parse the file at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| EngineError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(bytes)
    }

    /// Parse a whole GGUF file from memory.
    pub fn parse(bytes: Vec<u8>) -> Result<Self> {
        let mut c = Cursor {
            buf: &bytes,
            pos: 0,
        };
        let magic = c.u32()?;
        if magic != GGUF_MAGIC {
            return Err(gguf_err(format!(
                "bad magic {magic:#010x}, expected {GGUF_MAGIC:#010x} (\"GGUF\")"
            )));
        }
        let version = c.u32()?;
        if !(2..=3).contains(&version) {
            return Err(gguf_err(format!(
                "unsupported version {version} (2 and 3 are read)"
            )));
        }
        let n_tensors = c.count("tensor count", 8)?;
        let n_kv = c.count("metadata count", 8)?;

        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let key = c.string()?;
            let ty = c.u32()?;
            let value = c.value(ty, 0).map_err(|e| meta_err(&key, e.to_string()))?;
            metadata.insert(key, value);
        }

        let mut infos = Vec::with_capacity(n_tensors);
        for _ in 0..n_tensors {
            let name = c.string()?;
            let n_dims = c.u32()?;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(tensor_err(
                    &name,
                    format!("{n_dims} dimensions (1..=4 allowed)"),
                ));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                let d = c.u64()?;
                dims.push(
                    usize::try_from(d).map_err(|_| tensor_err(&name, "dimension too large"))?,
                );
            }
            let ty_id = c.u32()?;
            let ty = GgmlType::from_id(ty_id).ok_or_else(|| {
                tensor_err(
                    &name,
                    format!(
                        "unsupported type {} (Forge decodes f32, f16, q8_0, q4_1)",
                        ggml_type_name(ty_id)
                    ),
                )
            })?;
            let rel = c.u64()?;
            infos.push((name, dims, ty, rel));
        }

        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => v
                .as_u64()
                .filter(|a| a.is_power_of_two() && *a <= 1 << 20)
                .ok_or_else(|| meta_err("general.alignment", "not a power of two"))?
                as usize,
        };
        let data_start = c.pos.div_ceil(alignment) * alignment;
        if data_start > bytes.len() {
            return Err(gguf_err("file ends before the tensor data"));
        }

        let mut tensors = Vec::with_capacity(infos.len());
        for (name, dims, ty, rel) in infos {
            let elems = dims
                .iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))
                .ok_or_else(|| tensor_err(&name, "element count overflows"))?;
            let row = dims[0];
            let row_bytes = ty.row_bytes(row).ok_or_else(|| {
                tensor_err(
                    &name,
                    format!(
                        "row of {row} elements is not a whole number of {} blocks of {}",
                        ty.name(),
                        ty.block_elems()
                    ),
                )
            })?;
            let len = row_bytes
                .checked_mul(elems / row.max(1))
                .ok_or_else(|| tensor_err(&name, "byte size overflows"))?;
            let offset = usize::try_from(rel)
                .ok()
                .and_then(|r| r.checked_add(data_start))
                .ok_or_else(|| tensor_err(&name, "offset overflows"))?;
            if rel % alignment as u64 != 0 {
                return Err(tensor_err(
                    &name,
                    format!("offset {rel} is not {alignment}-aligned"),
                ));
            }
            let end = offset
                .checked_add(len)
                .ok_or_else(|| tensor_err(&name, "offset overflows"))?;
            if end > bytes.len() {
                return Err(tensor_err(
                    &name,
                    format!(
                        "data [{offset}, {end}) runs past the end of the file ({} bytes): truncated?",
                        bytes.len()
                    ),
                ));
            }
            tensors.push(TensorInfo {
                name,
                dims,
                ty,
                offset,
                len,
            });
        }

        Ok(Self {
            version,
            metadata,
            tensors,
            bytes,
            data_start,
        })
    }

    /// The GGUF format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// All metadata, by key.
    pub fn metadata(&self) -> &BTreeMap<String, GgufValue> {
        &self.metadata
    }

    /// One metadata value.
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.get(key)
    }

    /// The tensor table, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The tensor called `name`.
    pub fn tensor(&self, name: &str) -> Result<&TensorInfo> {
        self.tensors
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| tensor_err(name, "missing from the file"))
    }

    /// The raw bytes of a tensor.
    pub fn tensor_bytes(&self, info: &TensorInfo) -> &[u8] {
        &self.bytes[info.offset..info.offset + info.len]
    }

    /// Everything after the header: the tensor data section.
    pub fn data_section(&self) -> &[u8] {
        &self.bytes[self.data_start..]
    }
}

/// A bounds-checked little-endian reader.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| {
                gguf_err(format!(
                    "truncated header: need {n} bytes at offset {}, file has {}",
                    self.pos,
                    self.buf.len()
                ))
            })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A count of items that each take at least `min_item_bytes`: refused if
    /// the rest of the file could not hold them, so a hostile count cannot
    /// make us allocate.
    fn count(&mut self, what: &str, min_item_bytes: usize) -> Result<usize> {
        let n = self.u64()?;
        let remaining = (self.buf.len() - self.pos) as u64;
        if n.saturating_mul(min_item_bytes as u64) > remaining {
            return Err(gguf_err(format!("{what} {n} cannot fit in the file")));
        }
        Ok(n as usize)
    }

    fn string(&mut self) -> Result<String> {
        let n = self.count("string length", 1)?;
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| gguf_err("string is not UTF-8"))
    }

    fn value(&mut self, ty: u32, depth: usize) -> Result<GgufValue> {
        Ok(match ty {
            0 => GgufValue::U8(self.array::<1>()?[0]),
            1 => GgufValue::I8(self.array::<1>()?[0] as i8),
            2 => GgufValue::U16(u16::from_le_bytes(self.array()?)),
            3 => GgufValue::I16(i16::from_le_bytes(self.array()?)),
            4 => GgufValue::U32(self.u32()?),
            5 => GgufValue::I32(i32::from_le_bytes(self.array()?)),
            6 => GgufValue::F32(f32::from_le_bytes(self.array()?)),
            7 => match self.array::<1>()?[0] {
                0 => GgufValue::Bool(false),
                1 => GgufValue::Bool(true),
                b => return Err(gguf_err(format!("bool byte {b}"))),
            },
            8 => GgufValue::String(self.string()?),
            9 => {
                if depth >= MAX_NESTING {
                    return Err(gguf_err("arrays nested too deeply"));
                }
                let elem_ty = self.u32()?;
                let n = self.count("array length", 1)?;
                let mut items = Vec::with_capacity(n.min(1 << 20));
                for _ in 0..n {
                    items.push(self.value(elem_ty, depth + 1)?);
                }
                GgufValue::Array(items)
            }
            10 => GgufValue::U64(self.u64()?),
            11 => GgufValue::I64(i64::from_le_bytes(self.array()?)),
            12 => GgufValue::F64(f64::from_le_bytes(self.array()?)),
            other => return Err(gguf_err(format!("unknown value type {other}"))),
        })
    }
}
