//! GGML tensor element types: block layouts, dequantisation and quantisation.
//!
//! Only the types Forge runs are decoded: F32, F16, Q8_0 and Q4_1. Any other
//! type in a file is reported as an error naming the tensor.

use half::f16;

/// Elements per quantisation block (Q4_1, Q8_0).
pub const QK: usize = 32;
/// Bytes in one Q4_1 block: f16 scale, f16 min, 16 bytes of nibbles.
pub const Q4_1_BLOCK_BYTES: usize = 20;
/// Bytes in one Q8_0 block: f16 scale, 32 signed bytes.
pub const Q8_0_BLOCK_BYTES: usize = 34;

/// The element types of GGML tensors that Forge knows by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GgmlType {
    /// 32-bit float.
    F32,
    /// 16-bit float.
    F16,
    /// 4-bit, blocks of 32 with f16 scale and min: `value = d * q + m`.
    Q4_1,
    /// 8-bit, blocks of 32 with f16 scale: `value = d * q`.
    Q8_0,
}

impl GgmlType {
    /// The type for a GGML type id, or `None` if Forge does not decode it.
    pub fn from_id(id: u32) -> Option<Self> {
        match id {
            0 => Some(Self::F32),
            1 => Some(Self::F16),
            3 => Some(Self::Q4_1),
            8 => Some(Self::Q8_0),
            _ => None,
        }
    }

    /// The GGML type id written in GGUF files.
    pub fn id(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q4_1 => 3,
            Self::Q8_0 => 8,
        }
    }

    /// Elements per block (1 for plain floats).
    pub fn block_elems(self) -> usize {
        match self {
            Self::F32 | Self::F16 => 1,
            Self::Q4_1 | Self::Q8_0 => QK,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 => 2,
            Self::Q4_1 => Q4_1_BLOCK_BYTES,
            Self::Q8_0 => Q8_0_BLOCK_BYTES,
        }
    }

    /// Bytes taken by a row of `n` elements, or `None` if `n` is not a whole
    /// number of blocks (or overflows).
    pub fn row_bytes(self, n: usize) -> Option<usize> {
        if !n.is_multiple_of(self.block_elems()) {
            return None;
        }
        (n / self.block_elems()).checked_mul(self.block_bytes())
    }

    /// Short lowercase name, as llama.cpp prints it.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Q4_1 => "q4_1",
            Self::Q8_0 => "q8_0",
        }
    }
}

/// Name for a GGML type id, including types Forge does not decode.
pub fn ggml_type_name(id: u32) -> String {
    const NAMES: [&str; 31] = [
        "f32", "f16", "q4_0", "q4_1", "q4_2", "q4_3", "q5_0", "q5_1", "q8_0", "q8_1", "q2_k",
        "q3_k", "q4_k", "q5_k", "q6_k", "q8_k", "iq2_xxs", "iq2_xs", "iq3_xxs", "iq1_s", "iq4_nl",
        "iq3_s", "iq2_s", "iq4_xs", "i8", "i16", "i32", "i64", "f64", "iq1_m", "bf16",
    ];
    NAMES
        .get(id as usize)
        .map_or_else(|| format!("type#{id}"), |s| (*s).to_string())
}

/// Decode one row of `out.len()` elements of type `ty` from `bytes`.
///
/// `bytes` must hold exactly `ty.row_bytes(out.len())` bytes; callers check
/// sizes when the file is parsed.
pub fn dequantize_row(ty: GgmlType, bytes: &[u8], out: &mut [f32]) {
    match ty {
        GgmlType::F32 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        GgmlType::F16 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = f16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
        GgmlType::Q4_1 => {
            for (o, b) in out
                .chunks_exact_mut(QK)
                .zip(bytes.chunks_exact(Q4_1_BLOCK_BYTES))
            {
                let d = f16::from_le_bytes([b[0], b[1]]).to_f32();
                let m = f16::from_le_bytes([b[2], b[3]]).to_f32();
                for j in 0..QK / 2 {
                    o[j] = d * f32::from(b[4 + j] & 0x0F) + m;
                    o[j + QK / 2] = d * f32::from(b[4 + j] >> 4) + m;
                }
            }
        }
        GgmlType::Q8_0 => {
            for (o, b) in out
                .chunks_exact_mut(QK)
                .zip(bytes.chunks_exact(Q8_0_BLOCK_BYTES))
            {
                let d = f16::from_le_bytes([b[0], b[1]]).to_f32();
                for j in 0..QK {
                    o[j] = d * f32::from(b[2 + j] as i8);
                }
            }
        }
    }
}

/// Encode `values` (a whole number of blocks for quantised types) as `ty`,
/// appending to `out`. Rounding follows llama.cpp's reference quantisers.
pub fn quantize_row(ty: GgmlType, values: &[f32], out: &mut Vec<u8>) {
    match ty {
        GgmlType::F32 => values
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        GgmlType::F16 => values
            .iter()
            .for_each(|v| out.extend_from_slice(&f16::from_f32(*v).to_le_bytes())),
        GgmlType::Q4_1 => {
            for block in values.chunks_exact(QK) {
                let min = block.iter().copied().fold(f32::INFINITY, f32::min);
                let max = block.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let d = (max - min) / 15.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
                out.extend_from_slice(&f16::from_f32(min).to_le_bytes());
                let q = |v: f32| ((v - min) * id + 0.5).clamp(0.0, 15.0) as u8;
                for j in 0..QK / 2 {
                    out.push(q(block[j]) | (q(block[j + QK / 2]) << 4));
                }
            }
        }
        GgmlType::Q8_0 => {
            for block in values.chunks_exact(QK) {
                let amax = block.iter().fold(0.0f32, |a, v| a.max(v.abs()));
                let d = amax / 127.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
                out.extend(block.iter().map(|v| (v * id).round() as i8 as u8));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4_1_round_trip_is_close_and_exact_on_grid() {
        let values: Vec<f32> = (0..64).map(|i| (i as f32 * 0.37).sin()).collect();
        let mut bytes = Vec::new();
        quantize_row(GgmlType::Q4_1, &values, &mut bytes);
        assert_eq!(bytes.len(), 2 * Q4_1_BLOCK_BYTES);
        let mut back = vec![0.0; 64];
        dequantize_row(GgmlType::Q4_1, &bytes, &mut back);
        for (a, b) in values.iter().zip(&back) {
            assert!((a - b).abs() < 2.0 / 15.0 * 0.6, "{a} vs {b}");
        }
        // Decoding the decoded values again is a fixed point.
        let mut again = Vec::new();
        quantize_row(GgmlType::Q4_1, &back, &mut again);
        let mut back2 = vec![0.0; 64];
        dequantize_row(GgmlType::Q4_1, &again, &mut back2);
        for (a, b) in back.iter().zip(&back2) {
            assert!((a - b).abs() < 1e-3, "{a} vs {b}");
        }
    }

    #[test]
    fn q4_1_nibble_order_low_then_high() {
        // One block: d = 1, m = 0, byte j holds (lo = j % 16, hi = 15 - j % 16).
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&f16::from_f32(1.0).to_le_bytes());
        bytes.extend_from_slice(&f16::from_f32(0.0).to_le_bytes());
        for j in 0..16u8 {
            bytes.push(j | ((15 - j) << 4));
        }
        let mut out = vec![0.0; 32];
        dequantize_row(GgmlType::Q4_1, &bytes, &mut out);
        for j in 0..16 {
            assert_eq!(out[j], j as f32);
            assert_eq!(out[16 + j], (15 - j) as f32);
        }
    }

    #[test]
    fn q8_0_round_trip() {
        let values: Vec<f32> = (0..32).map(|i| i as f32 - 16.0).collect();
        let mut bytes = Vec::new();
        quantize_row(GgmlType::Q8_0, &values, &mut bytes);
        let mut back = vec![0.0; 32];
        dequantize_row(GgmlType::Q8_0, &bytes, &mut back);
        for (a, b) in values.iter().zip(&back) {
            assert!((a - b).abs() < 0.07, "{a} vs {b}");
        }
    }

    #[test]
    fn row_bytes_rejects_partial_blocks() {
        assert_eq!(GgmlType::Q4_1.row_bytes(64), Some(40));
        assert_eq!(GgmlType::Q4_1.row_bytes(33), None);
        assert_eq!(GgmlType::F32.row_bytes(3), Some(12));
        assert_eq!(ggml_type_name(12), "q4_k");
    }
}
