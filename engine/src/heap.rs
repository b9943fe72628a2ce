//! Keeps the memory a forward pass frees in the process, instead of giving
//! it back to the kernel after every layer.
//!
//! A forward pass allocates each layer's activations afresh: at a 512-token
//! prefill, buffers of 1 to 3 MB per projection. glibc's allocator serves
//! blocks that large with a mapping of their own, unmapped again when freed,
//! and hands the free top of its heaps back past 128 KiB, so every layer
//! faulted its buffers' pages in again, a 4 KiB page at a time: `perf
//! record` over criterion's `smollm2/prefill_512` put about 8% of the
//! prefill's samples in the kernel's page-fault path (taking, zeroing and
//! charging fresh pages). Raising both thresholds keeps the freed blocks
//! in the heap for the next layer: `prefill_512` 1.29x to 1.32x faster in
//! alternating builds (either threshold alone did nothing;
//! `papers/results/prefill-heap-ab.md`). The cost: up to
//! [`TRIM_THRESHOLD`] bytes of freed memory per heap stay resident until
//! reused.

/// Blocks up to this size come from the heap instead of a mapping of their
/// own (glibc's largest allowed value on 64-bit targets).
pub(crate) const MMAP_THRESHOLD: i32 = 32 << 20;

/// Free memory at a heap's top kept before it is handed back.
pub(crate) const TRIM_THRESHOLD: i32 = 256 << 20;

/// Sets both thresholds, once per process; true when the allocator took
/// them (always false off glibc, where nothing is changed).
pub(crate) fn keep_freed_memory() -> bool {
    static SET: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SET.get_or_init(set_thresholds)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn set_thresholds() -> bool {
    // SAFETY: `mallopt` only changes the allocator's parameters; glibc
    // takes its own lock, so calling it while other threads allocate is
    // sound, and both values are within the ranges it accepts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_thresholds() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_takes_the_thresholds() {
        let took = keep_freed_memory();
        assert_eq!(took, cfg!(all(target_os = "linux", target_env = "gnu")));
        // A second call changes nothing and reports the first.
        assert_eq!(keep_freed_memory(), took);
    }
}
