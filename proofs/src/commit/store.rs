//! Raw rows kept for later openings: in memory up to a byte bound, then in
//! an anonymous temp file.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

/// Where one row lives: the offset of its first float.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    /// In the memory buffer.
    Memory(usize),
    /// In the spill file.
    Disk(u64),
}

/// Rows of any width (activation rows and key/value rows), appended while
/// recording and read back afterwards by slot and width.
///
/// In memory it keeps the batches it is given as they are (no copy, no
/// reallocation of one growing buffer: copying every row into one `Vec`
/// cost as much CPU as hashing it); a row never straddles two batches.
#[derive(Debug)]
pub(crate) struct RowStore {
    batches: Vec<Vec<f32>>,
    /// Offset (in floats, over all batches) of each batch's first float.
    starts: Vec<usize>,
    memory_floats: usize,
    memory_floats_max: usize,
    spill_dir: Option<PathBuf>,
    writer: Option<BufWriter<File>>,
    file: Option<File>,
    disk_rows: u64,
    disk_floats: u64,
}

impl RowStore {
    /// A store that keeps at most `memory_bytes` of rows in memory, spilling
    /// the rest to a temp file in `spill_dir` (or the system temp dir).
    pub(crate) fn new(memory_bytes: usize, spill_dir: Option<PathBuf>) -> Self {
        Self {
            batches: Vec::new(),
            starts: Vec::new(),
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

    /// Appends `rows` (whole rows of `width` floats); returns each row's slot.
    /// The rows that fit under the memory bound stay in memory, the rest go
    /// to the spill file.
    pub(crate) fn push_rows(
        &mut self,
        mut rows: Vec<f32>,
        width: usize,
    ) -> std::io::Result<Vec<Slot>> {
        let width = width.max(1);
        let n = rows.len() / width;
        let room = self.memory_floats_max.saturating_sub(self.memory_floats) / width;
        let kept = n.min(room);
        let spilled = rows.split_off(kept * width);
        let mut slots = Vec::with_capacity(n);
        if kept > 0 {
            let start = self.memory_floats;
            slots.extend((0..kept).map(|i| Slot::Memory(start + i * width)));
            self.memory_floats += rows.len();
            self.starts.push(start);
            self.batches.push(rows);
        }
        for row in spilled.chunks_exact(width) {
            slots.push(self.spill(row)?);
        }
        Ok(slots)
    }

    fn spill(&mut self, row: &[f32]) -> std::io::Result<Slot> {
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
        for v in row {
            writer.write_all(&v.to_le_bytes())?;
        }
        self.disk_rows += 1;
        self.disk_floats += row.len() as u64;
        Ok(Slot::Disk(self.disk_floats - row.len() as u64))
    }

    /// Ends recording: flushes the spill file so rows can be read back.
    pub(crate) fn seal(&mut self) -> std::io::Result<()> {
        if let Some(w) = self.writer.take() {
            self.file = Some(w.into_inner().map_err(|e| e.into_error())?);
        }
        Ok(())
    }

    /// Reads the row of `width` floats at `slot` of a sealed store.
    pub(crate) fn read(&self, slot: Slot, width: usize) -> std::io::Result<Vec<f32>> {
        match slot {
            Slot::Memory(i) => {
                let b = self.starts.partition_point(|&s| s <= i).saturating_sub(1);
                let local = i - self.starts.get(b).copied().unwrap_or(0);
                self.batches
                    .get(b)
                    .and_then(|batch| batch.get(local..local + width))
                    .map(<[f32]>::to_vec)
                    .ok_or_else(|| std::io::Error::other("row slot out of range"))
            }
            Slot::Disk(i) => {
                let file = self
                    .file
                    .as_ref()
                    .ok_or_else(|| std::io::Error::other("spill file not sealed"))?;
                let mut bytes = vec![0u8; width * 4];
                file.read_exact_at(&mut bytes, i * 4)?;
                Ok(bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect())
            }
        }
    }
}
