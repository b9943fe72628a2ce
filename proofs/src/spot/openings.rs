//! A provider's answer to a challenge, and its canonical encoding.

use forge_engine::f16;
use half::slice::HalfFloatSliceExt;
use half::vec::HalfBitsVecExt;
use serde::Serialize;

use crate::codec::{DecodeError, EncodeError, Reader, Writer};
use crate::commit::{OpenedRows, RangeOpening, RowsRef};
use crate::merkle::{Elem, RangeProof};
use crate::receipt::MAX_AUDIT_CELLS;

const MAGIC: [u8; 4] = *b"FRGO";
/// Version 6: key/value rows are committed, so opened, in blocks of
/// [`crate::KV_BLOCK`] (64) positions, output rows still in blocks of
/// [`crate::OUTPUT_BLOCK`] (16). Version 5: each opening says its rows'
/// element type, and f16 rows (the CPU engine's keys and values) travel as
/// f16. Version 4: output rows too are opened in whole blocks of 16
/// positions, one leaf each (`forge.act.v3`, `forge.kv.v3`). Version 3 had
/// one leaf per output row and blocks of key/value rows; version 2 one leaf
/// per key/value row; version 1 opened every input row of the prefix and had
/// no keys/values.
const VERSION: u16 = 6;
/// Most tokens in the prompt or the output.
const MAX_TOKENS: u32 = 1 << 24;
/// Widest row.
const MAX_ROW: u32 = 1 << 16;
/// Most rows in one opening.
const MAX_ROWS: u32 = 1 << 24;
/// Most siblings in a range proof (two per level of a tree of < 2^64 leaves).
const MAX_SIBLINGS: u32 = 128;

/// The rows that check one cell (l, t).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CellOpening {
    /// The cell's layer.
    pub layer: u32,
    /// The cell's position.
    pub pos: u32,
    /// The block of layer `l - 1`'s output rows that holds row `t` (the
    /// layer's input at `t`); `None` for layer 0, whose input is the token's
    /// embedding.
    pub input: Option<RangeOpening>,
    /// The `[k | v]` rows `0..=t` of layer `l` (row group `L + l`): the
    /// prefix the attention at `t` reads, and row `t` itself, which the
    /// verifier recomputes from the input; then the rest of `t`'s key/value
    /// block, which only enters the leaf hash.
    pub kv: RangeOpening,
    /// The block of layer `l`'s output rows that holds row `t`.
    pub output: RangeOpening,
}

/// Everything a provider sends back for one challenge.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpotOpenings {
    /// The prompt token ids (checked against the receipt's prompt hash).
    pub prompt: Vec<u32>,
    /// The generated token ids (checked against the output hash).
    pub output: Vec<u32>,
    /// One opening per challenged cell, in challenge order.
    pub cells: Vec<CellOpening>,
}

impl SpotOpenings {
    /// Canonical encoding: magic `FRGO`, u16 version 6, then the fields.
    pub fn to_bytes(&self) -> Result<Vec<u8>, EncodeError> {
        let mut w = Writer::new();
        w.array(&MAGIC);
        w.u16(VERSION);
        for (field, tokens) in [
            ("openings.prompt", &self.prompt),
            ("openings.output", &self.output),
        ] {
            w.count(field, tokens.len(), MAX_TOKENS)?;
            tokens.iter().for_each(|&t| w.u32(t));
        }
        w.count("openings.cells", self.cells.len(), MAX_AUDIT_CELLS)?;
        for c in &self.cells {
            w.u32(c.layer);
            w.u32(c.pos);
            match &c.input {
                None => w.u8(0),
                Some(o) => {
                    w.u8(1);
                    encode_range(&mut w, o)?;
                }
            }
            encode_range(&mut w, &c.kv)?;
            encode_range(&mut w, &c.output)?;
        }
        Ok(w.into_bytes())
    }

    /// Strict decoding.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        r.magic(MAGIC)?;
        r.version(VERSION)?;
        let prompt = decode_tokens(&mut r, "openings.prompt")?;
        let output = decode_tokens(&mut r, "openings.output")?;
        let n = r.count("openings.cells", MAX_AUDIT_CELLS, 9)?;
        let cells = (0..n)
            .map(|_| {
                let layer = r.u32("openings.cell.layer")?;
                let pos = r.u32("openings.cell.pos")?;
                let input = match r.u8("openings.cell.has_input")? {
                    0 => None,
                    1 => Some(decode_range(&mut r)?),
                    tag => {
                        return Err(DecodeError::InvalidValue {
                            field: "openings.cell.has_input",
                            problem: format!("{tag} is not 0 or 1"),
                        });
                    }
                };
                let kv = decode_range(&mut r)?;
                Ok(CellOpening {
                    layer,
                    pos,
                    input,
                    kv,
                    output: decode_range(&mut r)?,
                })
            })
            .collect::<Result<Vec<_>, DecodeError>>()?;
        r.finish()?;
        Ok(Self {
            prompt,
            output,
            cells,
        })
    }
}

fn decode_tokens(r: &mut Reader<'_>, field: &'static str) -> Result<Vec<u32>, DecodeError> {
    let n = r.count(field, MAX_TOKENS, 4)?;
    (0..n).map(|_| r.u32(field)).collect()
}

/// layer u32, first_pos u32, element tag u8 (1 f32, 2 f16), row width u32
/// (elements), row count u32, the rows' elements little-endian, sibling
/// count u32, the siblings.
fn encode_range(w: &mut Writer, o: &RangeOpening) -> Result<(), EncodeError> {
    w.u32(o.layer);
    w.u32(o.first_pos);
    w.u8(o.rows.elem().tag());
    w.count("opening.row_width", o.rows.width(), MAX_ROW)?;
    w.count("opening.rows", o.rows.len(), MAX_ROWS)?;
    match o.rows.values() {
        RowsRef::F32(values) => w.f32s(values),
        RowsRef::F16(values) => w.u16s(values.reinterpret_cast()),
    }
    w.count("opening.siblings", o.proof.siblings.len(), MAX_SIBLINGS)?;
    o.proof.siblings.iter().for_each(|s| w.array(s));
    Ok(())
}

/// `n` f16 elements, as they are. A signaling NaN (exponent all ones, a
/// payload without the quiet bit) is refused, as it was when rows were
/// widened to f32 (which quiets it): one f16 value has one encoding here.
fn decode_f16_values(r: &mut Reader<'_>, n: usize) -> Result<Vec<f16>, DecodeError> {
    let bits = r.u16s("opening.rows", n)?;
    let signaling = |b: u16| b & 0x7C00 == 0x7C00 && b & 0x03FF != 0 && b & 0x0200 == 0;
    // A fold without an early exit vectorises (a `find` went element by
    // element: decoding a 2.5 MB opening took twice as long as its f32
    // twice the size); the search runs only on a rejected opening.
    if bits.iter().fold(false, |any, &b| any | signaling(b))
        && let Some(b) = bits.iter().copied().find(|&b| signaling(b))
    {
        return Err(DecodeError::InvalidValue {
            field: "opening.rows",
            problem: format!("f16 bits {b:#06x} are a signaling NaN"),
        });
    }
    Ok(bits.reinterpret_into())
}

fn decode_range(r: &mut Reader<'_>) -> Result<RangeOpening, DecodeError> {
    let layer = r.u32("opening.layer")?;
    let first_pos = r.u32("opening.first_pos")?;
    let tag = r.u8("opening.elem")?;
    let elem = Elem::from_tag(tag).ok_or_else(|| DecodeError::InvalidValue {
        field: "opening.elem",
        problem: format!("unknown element tag {tag}"),
    })?;
    let d = r.u32("opening.row_width")?;
    if d == 0 || d > MAX_ROW {
        return Err(DecodeError::Oversize {
            field: "opening.row_width",
            len: d.into(),
            max: MAX_ROW.into(),
        });
    }
    let d = d as usize;
    let n = r.count("opening.rows", MAX_ROWS, d * elem.size())?;
    // `count` checked that the rows' bytes are there, so n * d fits.
    let rows = match elem {
        Elem::F32 => OpenedRows::from_f32(d, r.f32s("opening.rows", n * d)?),
        Elem::F16 => OpenedRows::from_f16(d, decode_f16_values(r, n * d)?),
    }
    .map_err(|e| DecodeError::InvalidValue {
        field: "opening.rows",
        problem: e.to_string(),
    })?;
    let n = r.count("opening.siblings", MAX_SIBLINGS, 32)?;
    let siblings = (0..n)
        .map(|_| r.array("opening.siblings"))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RangeOpening {
        layer,
        first_pos,
        rows,
        proof: RangeProof { siblings },
    })
}
