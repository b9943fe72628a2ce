//! Block buffers reused across commitments.
//!
//! A sink gathers every layer's rows into blocks of 16 positions, a fresh
//! buffer per block. Fresh memory is faulted in a page at a time as rows
//! arrive, and on SmolLM2 that is about 30 page faults per decoded token,
//! which cost more CPU than hashing the rows. A finished commitment's
//! blocks, once it is dropped, go back to a bounded pool here, and the next
//! sinks take their buffers from it.

use std::sync::Mutex;

/// Floats the pool keeps at most (256 MiB).
const POOL_FLOATS: usize = 64 << 20;

/// Emptied buffers, and the floats of capacity they hold.
static POOL: Mutex<(Vec<Vec<f32>>, usize)> = Mutex::new((Vec::new(), 0));

/// An empty buffer with room for exactly `capacity` floats: one from the
/// pool when it has one of that capacity, else a new one.
pub(crate) fn take(capacity: usize) -> Vec<f32> {
    let mut pool = POOL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let (buffers, floats) = &mut *pool;
    match buffers.iter().rposition(|b| b.capacity() == capacity) {
        Some(i) => {
            let buf = buffers.swap_remove(i);
            *floats -= buf.capacity();
            buf
        }
        None => Vec::with_capacity(capacity),
    }
}

/// Returns `buffers` to the pool, as far as its bound allows.
pub(crate) fn give(buffers: impl IntoIterator<Item = Vec<f32>>) {
    let mut pool = POOL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let (kept, floats) = &mut *pool;
    for mut buf in buffers {
        if *floats + buf.capacity() > POOL_FLOATS {
            break;
        }
        buf.clear();
        *floats += buf.capacity();
        kept.push(buf);
    }
}
