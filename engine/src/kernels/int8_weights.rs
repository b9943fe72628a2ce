//! Quantised weights regrouped for integer dot products: 16 output rows
//! side by side, so one 512-bit register holds 4 elements of each of 16
//! rows and an integer multiply-add produces 16 rows' partial sums at once
//! (AVX512-VNNI's `vpdpbusd` wants exactly this).
//!
//! Per group of 16 rows (the last one padded with zero rows) and per
//! 32-element block b, in order:
//! - Q4_1: 4 runs of 64 bytes; run p holds, for row l, 4 bytes whose low
//!   nibbles are the quants of elements `8p..8p+4` and whose high nibbles
//!   those of `8p+4..8p+8`. Masking and shifting a run gives two 64-byte
//!   rows of unsigned quants: elements `4k..4k+4` of every row, k = 2p, 2p+1.
//! - Q8_0: 8 runs of 64 bytes; run k holds elements `4k..4k+4` of every row
//!   as `q + 128` (unsigned), so every format multiplies unsigned weights by
//!   signed activations; the kernels subtract `128 · Σ qx` afterwards.
//!
//! Scales and minimums stay f16 as the file has them (their conversion to
//! f32 is exact), 16 per group and block (the rows' lanes): a one-row
//! decode step streams every weight byte, and f32 copies were a sixth of
//! the Q4_1 bytes read.

use half::f16;

use crate::error::{Result, tensor_err};
use crate::quant::{GgmlType, Q4_1_BLOCK_BYTES, Q8_0_BLOCK_BYTES, QK};

/// Rows per group: the lanes of a 512-bit vector of i32 or f32.
pub(crate) const GROUP: usize = 16;
/// Bytes of one group's block: 16 rows x 32 elements, 4 bits (Q4_1) or 8 (Q8_0).
pub(super) const Q4_GROUP_BLOCK: usize = GROUP * QK / 2;
pub(super) const Q8_GROUP_BLOCK: usize = GROUP * QK;

/// The two quantised formats the kernels run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// `w = d·q + m`, q in 0..16.
    Q4_1,
    /// `w = d·q`, q in -128..128.
    Q8_0,
}

/// A quantised matrix in the grouped layout (see the module docs).
#[derive(Clone, Debug)]
pub(crate) struct Int8Weights {
    pub(super) format: Format,
    /// Blocks per row.
    pub(super) nbr: usize,
    /// Groups of 16 rows.
    pub(super) groups: usize,
    pub(super) qs: Vec<u8>,
    /// `d[(g * nbr + b) * 16 + l]`: scale of row `16g + l`, block b (f16 bits).
    pub(super) d: Vec<u16>,
    /// Q4_1's minimums, laid out as `d`; empty for Q8_0.
    pub(super) m: Vec<u16>,
}

impl Int8Weights {
    /// Where its arrays lie in memory: (address, bytes) of each.
    pub(crate) fn spans(&self) -> [(usize, usize); 3] {
        [
            (self.qs.as_ptr() as usize, self.qs.len()),
            (self.d.as_ptr() as usize, size_of_val(&self.d[..])),
            (self.m.as_ptr() as usize, size_of_val(&self.m[..])),
        ]
    }

    /// Regroup `rows` GGUF rows of `cols` elements (`bytes` in GGUF block order).
    pub(crate) fn from_gguf(
        name: &str,
        ty: GgmlType,
        rows: usize,
        cols: usize,
        bytes: &[u8],
    ) -> Result<Self> {
        let nbr = cols / QK;
        let groups = rows.div_ceil(GROUP);
        let (format, block_bytes, group_block) = match ty {
            GgmlType::Q4_1 => (Format::Q4_1, Q4_1_BLOCK_BYTES, Q4_GROUP_BLOCK),
            GgmlType::Q8_0 => (Format::Q8_0, Q8_0_BLOCK_BYTES, Q8_GROUP_BLOCK),
            other => return Err(tensor_err(name, format!("{other:?} is not quantised"))),
        };
        if bytes.len() < rows * nbr * block_bytes {
            return Err(tensor_err(
                name,
                format!("{} bytes for {rows} x {cols}", bytes.len()),
            ));
        }
        let mut w = Self {
            format,
            nbr,
            groups,
            qs: vec![0; groups * nbr * group_block],
            d: vec![0; groups * nbr * GROUP],
            m: if format == Format::Q4_1 {
                vec![0; groups * nbr * GROUP]
            } else {
                Vec::new()
            },
        };
        for r in 0..rows {
            let (g, l) = (r / GROUP, r % GROUP);
            for b in 0..nbr {
                let src = &bytes[(r * nbr + b) * block_bytes..(r * nbr + b + 1) * block_bytes];
                let at = (g * nbr + b) * GROUP + l;
                w.d[at] = u16::from_le_bytes([src[0], src[1]]);
                let dst = &mut w.qs[(g * nbr + b) * group_block..(g * nbr + b + 1) * group_block];
                match format {
                    Format::Q4_1 => {
                        w.m[at] = u16::from_le_bytes([src[2], src[3]]);
                        // GGUF: byte j holds element j (low nibble) and j + 16.
                        let q = |e: usize| {
                            let byte = src[4 + e % 16];
                            if e < 16 { byte & 0x0F } else { byte >> 4 }
                        };
                        for p in 0..4 {
                            for j in 0..4 {
                                dst[p * 64 + l * 4 + j] = q(8 * p + j) | (q(8 * p + 4 + j) << 4);
                            }
                        }
                    }
                    Format::Q8_0 => {
                        for k in 0..8 {
                            for j in 0..4 {
                                let q = src[2 + 4 * k + j] as i8;
                                dst[k * 64 + l * 4 + j] = (i16::from(q) + 128) as u8;
                            }
                        }
                    }
                }
            }
        }
        Ok(w)
    }

    /// Group g's block b as unsigned bytes, `[row][element]` (Q8_0's are
    /// `q + 128`): the grouped layout's one decoder, for the portable kernel
    /// and the dequantisation below.
    #[inline(always)]
    pub(super) fn unpack(&self, g: usize, b: usize) -> [[u8; QK]; GROUP] {
        let mut out = [[0u8; QK]; GROUP];
        let at = g * self.nbr + b;
        match self.format {
            Format::Q4_1 => {
                let src = &self.qs[at * Q4_GROUP_BLOCK..(at + 1) * Q4_GROUP_BLOCK];
                for p in 0..4 {
                    for (l, row) in out.iter_mut().enumerate() {
                        for j in 0..4 {
                            let byte = src[p * 64 + l * 4 + j];
                            row[8 * p + j] = byte & 0x0F;
                            row[8 * p + 4 + j] = byte >> 4;
                        }
                    }
                }
            }
            Format::Q8_0 => {
                let src = &self.qs[at * Q8_GROUP_BLOCK..(at + 1) * Q8_GROUP_BLOCK];
                for k in 0..8 {
                    for (l, row) in out.iter_mut().enumerate() {
                        row[4 * k..4 * k + 4]
                            .copy_from_slice(&src[k * 64 + l * 4..k * 64 + l * 4 + 4]);
                    }
                }
            }
        }
        out
    }

    /// Rows `r0..` as floats, `out.len() / cols` of them: each element
    /// `d·q`, plus the block minimum for Q4_1 (a product exact in f32, then
    /// one rounded add). Each block of a group is unpacked once for all the
    /// group's rows asked for.
    pub(crate) fn rows_f32(&self, r0: usize, out: &mut [f32]) {
        let cols = self.nbr * QK;
        let r1 = r0 + out.len() / cols;
        let offset = match self.format {
            Format::Q4_1 => 0,
            Format::Q8_0 => 128,
        };
        for g in r0 / GROUP..r1.div_ceil(GROUP) {
            let lanes = r0.max(g * GROUP) - g * GROUP..r1.min((g + 1) * GROUP) - g * GROUP;
            for b in 0..self.nbr {
                let wq = self.unpack(g, b);
                let at = (g * self.nbr + b) * GROUP;
                for l in lanes.clone() {
                    let r = g * GROUP + l - r0;
                    let dst = &mut out[r * cols + b * QK..r * cols + (b + 1) * QK];
                    let d = f16_to_f32(self.d[at + l]);
                    for (o, &q) in dst.iter_mut().zip(&wq[l]) {
                        *o = d * (i32::from(q) - offset) as f32;
                    }
                    if self.format == Format::Q4_1 {
                        let m = f16_to_f32(self.m[at + l]);
                        dst.iter_mut().for_each(|o| *o += m);
                    }
                }
            }
        }
    }

    /// Bytes the kernels read per full pass over the matrix.
    pub(crate) fn bytes(&self) -> usize {
        self.qs.len() + 2 * (self.d.len() + self.m.len())
    }
}

/// An f16's value as f32 (exact).
#[inline(always)]
pub(super) fn f16_to_f32(bits: u16) -> f32 {
    f16::from_bits(bits).to_f32()
}
