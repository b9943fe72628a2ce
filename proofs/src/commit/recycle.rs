//! Block buffers reused across commitments.
//!
//! A sink gathers every layer's rows into blocks of positions (16 output
//! rows, 64 key/value rows), a fresh buffer per block. Fresh memory is faulted in a page at a time as rows
//! arrive, and on SmolLM2 that is about 30 page faults per decoded token,
//! which cost more CPU than hashing the rows. A finished commitment's
//! blocks, once it is dropped, go back to a bounded pool here, and the next
//! sinks take their buffers from it.

use std::sync::Mutex;

use super::lock;

/// Floats the pool keeps at most (256 MiB).
const POOL_FLOATS: usize = 64 << 20;

/// Emptied buffers of one capacity.
type List = (usize, Vec<Vec<f32>>);

/// Emptied buffers, one list per capacity (a model has two: output rows
/// and key/value rows), and the floats of capacity they hold in all.
static POOL: Mutex<(Vec<List>, usize)> = Mutex::new((Vec::new(), 0));

/// An empty buffer with room for exactly `capacity` floats: one from the
/// pool when it has one of that capacity, else a new one.
pub(crate) fn take(capacity: usize) -> Vec<f32> {
    let mut pool = lock(&POOL);
    let (lists, floats) = &mut *pool;
    let reused = lists
        .iter_mut()
        .find(|(c, _)| *c == capacity)
        .and_then(|(_, list)| list.pop());
    match reused {
        Some(buf) => {
            *floats -= buf.capacity();
            buf
        }
        None => Vec::with_capacity(capacity),
    }
}

/// Returns `buffers` to the pool, as far as its bound allows.
pub(crate) fn give(buffers: impl IntoIterator<Item = Vec<f32>>) {
    let mut pool = lock(&POOL);
    let (lists, floats) = &mut *pool;
    for mut buf in buffers {
        let capacity = buf.capacity();
        if capacity == 0 || *floats + capacity > POOL_FLOATS {
            continue;
        }
        buf.clear();
        *floats += capacity;
        match lists.iter_mut().find(|(c, _)| *c == capacity) {
            Some((_, list)) => list.push(buf),
            None => lists.push((capacity, vec![buf])),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_empty_with_their_capacity() {
        // Capacities no sink uses, so that tests running alongside cannot
        // take these buffers.
        let (a, b) = (1_000_003, 999_983);
        let mut full = Vec::with_capacity(a);
        full.extend((0..a).map(|i| i as f32));
        give([full, Vec::with_capacity(b), Vec::new()]);
        let again = take(a);
        assert!(again.is_empty());
        assert_eq!(again.capacity(), a);
        assert_eq!(take(b).capacity(), b);
        // Nothing of that capacity is left: a new buffer.
        assert_eq!(take(a).capacity(), a);
    }
}
