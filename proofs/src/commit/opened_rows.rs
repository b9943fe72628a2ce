//! An opening's rows: one buffer, in the element type they were committed
//! in.
//!
//! A spot check's key/value openings run to thousands of rows (megabytes).
//! Kept as one buffer of the committed elements, decoding them is a copy,
//! a leaf's hash reads its block of rows where they lie, and a replay
//! copies f16 rows into its f16 cache as they are: no allocation per row,
//! no widening to f32 to narrow back before hashing.

use std::borrow::Cow;

use forge_engine::{f16, widen_f16};
use serde::ser::{Serialize, SerializeSeq, Serializer};

use crate::merkle::{Elem, MerkleError};

/// Rows of `width` elements, row after row, as committed: f32, or f16
/// (the CPU engine's key/value rows).
#[derive(Debug, Clone, PartialEq)]
pub struct OpenedRows {
    width: usize,
    values: Values,
}

/// Row values in their element type (also what a commitment reads its
/// stored blocks into when it answers an opening).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Values {
    F32(Vec<f32>),
    F16(Vec<f16>),
}

impl Values {
    /// No values yet, room for `capacity` of element type `elem`.
    pub(crate) fn with_capacity(elem: Elem, capacity: usize) -> Self {
        match elem {
            Elem::F32 => Self::F32(Vec::with_capacity(capacity)),
            Elem::F16 => Self::F16(Vec::with_capacity(capacity)),
        }
    }

    fn len(&self) -> usize {
        match self {
            Self::F32(v) => v.len(),
            Self::F16(v) => v.len(),
        }
    }
}

/// A block of rows of an [`OpenedRows`], borrowed.
#[derive(Debug, Clone, Copy)]
pub enum RowsRef<'a> {
    /// f32 values.
    F32(&'a [f32]),
    /// f16 values.
    F16(&'a [f16]),
}

impl OpenedRows {
    /// f32 rows of `width` values, from their values row after row.
    pub fn from_f32(width: usize, values: Vec<f32>) -> Result<Self, MerkleError> {
        Self::new(width, Values::F32(values))
    }

    /// f16 rows of `width` values, from their values row after row.
    pub fn from_f16(width: usize, values: Vec<f16>) -> Result<Self, MerkleError> {
        Self::new(width, Values::F16(values))
    }

    /// Rows of `width` values, from their values row after row; whole rows
    /// of a width above 0, or [`MerkleError::RaggedRows`].
    pub(crate) fn new(width: usize, values: Values) -> Result<Self, MerkleError> {
        let n = values.len();
        if width == 0 || !n.is_multiple_of(width) {
            return Err(MerkleError::RaggedRows {
                values: n as u64,
                width: width as u64,
            });
        }
        Ok(Self { width, values })
    }

    /// The element type the rows were committed in.
    pub fn elem(&self) -> Elem {
        match self.values {
            Values::F32(_) => Elem::F32,
            Values::F16(_) => Elem::F16,
        }
    }

    /// Values per row.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.values.len() / self.width
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// All the values, row after row.
    pub fn values(&self) -> RowsRef<'_> {
        match &self.values {
            Values::F32(v) => RowsRef::F32(v),
            Values::F16(v) => RowsRef::F16(v),
        }
    }

    /// Rows `range`, if the rows hold them.
    pub fn rows(&self, range: std::ops::Range<usize>) -> Option<RowsRef<'_>> {
        let (a, b) = (
            range.start.checked_mul(self.width)?,
            range.end.checked_mul(self.width)?,
        );
        Some(match &self.values {
            Values::F32(v) => RowsRef::F32(v.get(a..b)?),
            Values::F16(v) => RowsRef::F16(v.get(a..b)?),
        })
    }

    /// Row `i` as f32 values (an f16 row widened, exactly), if it is held.
    pub fn row_f32(&self, i: usize) -> Option<Cow<'_, [f32]>> {
        Some(match self.rows(i..i.checked_add(1)?)? {
            RowsRef::F32(row) => Cow::Borrowed(row),
            RowsRef::F16(row) => {
                let mut wide = vec![0.0; row.len()];
                widen_f16(row, &mut wide);
                Cow::Owned(wide)
            }
        })
    }

    /// Every row as f32 values.
    pub fn to_f32_rows(&self) -> Vec<Vec<f32>> {
        (0..self.len())
            .filter_map(|i| self.row_f32(i).map(Cow::into_owned))
            .collect()
    }

    /// The f32 values to change in place (`None` for f16 rows).
    pub fn f32_values_mut(&mut self) -> Option<&mut [f32]> {
        match &mut self.values {
            Values::F32(v) => Some(v),
            Values::F16(_) => None,
        }
    }

    /// The f16 values to change in place (`None` for f32 rows).
    pub fn f16_values_mut(&mut self) -> Option<&mut [f16]> {
        match &mut self.values {
            Values::F16(v) => Some(v),
            Values::F32(_) => None,
        }
    }

    /// Keeps the first `rows` rows.
    pub fn truncate(&mut self, rows: usize) {
        let n = rows.saturating_mul(self.width);
        match &mut self.values {
            Values::F32(v) => v.truncate(n),
            Values::F16(v) => v.truncate(n),
        }
    }

    /// Removes row `i`, if it is held.
    pub fn remove_row(&mut self, i: usize) {
        if i < self.len() {
            let at = i * self.width..(i + 1) * self.width;
            match &mut self.values {
                Values::F32(v) => drop(v.drain(at)),
                Values::F16(v) => drop(v.drain(at)),
            }
        }
    }
}

impl RowsRef<'_> {
    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            Self::F32(v) => v.len(),
            Self::F16(v) => v.len(),
        }
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The JSON view: a list of rows of numbers (f16 values widened).
impl Serialize for OpenedRows {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.len()))?;
        for i in 0..self.len() {
            if let Some(row) = self.row_f32(i) {
                seq.serialize_element(&*row)?;
            }
        }
        seq.end()
    }
}
