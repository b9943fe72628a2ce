//! Raw rows kept for later openings, a block of rows at a time: in memory
//! up to a byte bound, then in an anonymous temp file.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use super::recycle;

/// Where one block of rows lives.
#[derive(Debug)]
pub(crate) enum StoredBlock {
    /// In memory: the block's rows, one after the other.
    Memory(Vec<f32>),
    /// In the spill file, from this float offset on.
    Disk(u64),
}

/// Blocks of rows of any width (output rows and key/value rows), appended
/// while recording and read back afterwards by block and width.
///
/// A block is kept as the buffer the sink filled: no row is copied twice.
#[derive(Debug)]
pub(crate) struct BlockStore {
    memory_floats: usize,
    memory_floats_max: usize,
    spill_dir: Option<PathBuf>,
    writer: Option<BufWriter<File>>,
    file: Option<File>,
    disk_rows: u64,
    disk_floats: u64,
}

impl BlockStore {
    /// A store that keeps at most `memory_bytes` of rows in memory, spilling
    /// the rest to a temp file in `spill_dir` (or the system temp dir).
    pub(crate) fn new(memory_bytes: usize, spill_dir: Option<PathBuf>) -> Self {
        Self {
            memory_floats: 0,
            memory_floats_max: memory_bytes / 4,
            spill_dir,
            writer: None,
            file: None,
            disk_rows: 0,
            disk_floats: 0,
        }
    }

    /// Rows that went to disk.
    pub(crate) fn spilled_rows(&self) -> u64 {
        self.disk_rows
    }

    /// Keeps `rows` (whole rows of `width` floats): in memory while the
    /// bound allows, else in the spill file (and the buffer goes back to
    /// the pool of block buffers).
    pub(crate) fn push(&mut self, rows: Vec<f32>, width: usize) -> std::io::Result<StoredBlock> {
        if self.memory_floats + rows.len() <= self.memory_floats_max {
            self.memory_floats += rows.len();
            return Ok(StoredBlock::Memory(rows));
        }
        let at = self.spill(&rows, width);
        recycle::give([rows]);
        at
    }

    fn spill(&mut self, rows: &[f32], width: usize) -> std::io::Result<StoredBlock> {
        let writer = match &mut self.writer {
            Some(w) => w,
            None => {
                let file = match &self.spill_dir {
                    Some(dir) => tempfile::tempfile_in(dir)?,
                    None => tempfile::tempfile()?,
                };
                self.writer.insert(BufWriter::with_capacity(1 << 20, file))
            }
        };
        for v in rows {
            writer.write_all(&v.to_le_bytes())?;
        }
        let at = self.disk_floats;
        self.disk_rows += (rows.len() / width.max(1)) as u64;
        self.disk_floats += rows.len() as u64;
        Ok(StoredBlock::Disk(at))
    }

    /// Ends recording: flushes the spill file so rows can be read back.
    pub(crate) fn seal(&mut self) -> std::io::Result<()> {
        if let Some(w) = self.writer.take() {
            self.file = Some(w.into_inner().map_err(|e| e.into_error())?);
        }
        Ok(())
    }

    /// Hands `take` rows `rows` (indices within the block) of `block`,
    /// whose rows are `width` floats wide, from a sealed store: their
    /// floats, row after row. A block in memory is lent as it is (an
    /// opening's rows are copied once, into the opening); one in the spill
    /// file is read into a buffer first.
    pub(crate) fn read_with(
        &self,
        block: &StoredBlock,
        width: usize,
        rows: std::ops::Range<usize>,
        take: impl FnOnce(&[f32]),
    ) -> std::io::Result<()> {
        let (a, b) = (rows.start * width, rows.end * width);
        match block {
            StoredBlock::Memory(floats) => {
                let rows = floats
                    .get(a..b)
                    .ok_or_else(|| std::io::Error::other("row out of its block"))?;
                take(rows);
            }
            StoredBlock::Disk(at) => {
                let file = self
                    .file
                    .as_ref()
                    .ok_or_else(|| std::io::Error::other("spill file not sealed"))?;
                let mut bytes = vec![0u8; (b - a) * 4];
                file.read_exact_at(&mut bytes, (at + a as u64) * 4)?;
                let floats: Vec<f32> = bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                take(&floats);
            }
        }
        Ok(())
    }
}
