//! Where the engine's memory sits: the memory a forward pass frees stays in
//! the process instead of going back to the kernel after every layer, and
//! the weights can move onto huge pages ([`collapse_into_huge_pages`]).
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

/// Huge pages: 2 MiB on x86-64.
const HUGE_PAGE: usize = 2 << 20;

/// Asks Linux to back the memory of `spans` ((address, bytes) pairs: the
/// model's weight arrays) with 2 MiB pages (`MADV_COLLAPSE`, Linux 6.1 and
/// later; nothing elsewhere). A decode step streams every weight once, on
/// 4 KiB pages one address translation per 4 KiB; with the weights' heap
/// on huge pages criterion's decode steps ran 1.03x to 1.15x faster. Most
/// arrays are smaller than a huge page, but they are allocated one after
/// another at load: arrays less than a huge page apart are collapsed as
/// one stretch (other blocks in between only change page size, not
/// contents). Returns the bytes the kernel collapsed; failures (no free
/// huge pages, an older kernel) leave the memory as it was.
pub(crate) fn collapse_into_huge_pages(spans: &[(usize, usize)]) -> usize {
    let mut spans: Vec<(usize, usize)> = spans
        .iter()
        .filter(|s| s.1 > 0)
        .map(|&(at, len)| (at, at + len))
        .collect();
    spans.sort_unstable();
    let mut stretches: Vec<(usize, usize)> = Vec::new();
    for (lo, hi) in spans {
        match stretches.last_mut() {
            Some(last) if lo <= last.1 + HUGE_PAGE => last.1 = last.1.max(hi),
            _ => stretches.push((lo, hi)),
        }
    }
    stretches.into_iter().map(|(lo, hi)| collapse(lo, hi)).sum()
}

/// Collapses the whole huge pages within `[lo, hi)`; returns their bytes,
/// or 0 where the kernel declined.
fn collapse(lo: usize, hi: usize) -> usize {
    let (start, end) = (lo.next_multiple_of(HUGE_PAGE), hi / HUGE_PAGE * HUGE_PAGE);
    if end <= start {
        return 0;
    }
    if madvise_collapse(start, end - start) {
        end - start
    } else {
        0
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn madvise_collapse(start: usize, len: usize) -> bool {
    // SAFETY: MADV_COLLAPSE only changes which physical pages back the
    // range, never its contents or protection: the kernel copies the data
    // into the huge page under its own locks and gives up on a page that
    // changes meanwhile. Unmapped parts of the range are skipped (the call
    // then reports an error, which only means fewer huge pages).
    unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_COLLAPSE) == 0 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn madvise_collapse(_start: usize, _len: usize) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collapsing_keeps_the_contents() {
        // 8 MiB of a known pattern: whatever the kernel does with the
        // request (collapse, or decline for want of huge pages), the bytes
        // read back the same, and at most the whole huge pages inside are
        // reported.
        let data: Vec<u32> = (0..2u32 << 20)
            .map(|i| i.wrapping_mul(2_654_435_761))
            .collect();
        let span = (data.as_ptr() as usize, size_of_val(&data[..]));
        let done = collapse_into_huge_pages(&[span]);
        assert!(done <= span.1 && done.is_multiple_of(HUGE_PAGE), "{done}");
        assert!(
            data.iter()
                .enumerate()
                .all(|(i, &x)| x == (i as u32).wrapping_mul(2_654_435_761))
        );
        // Nothing to collapse: no whole huge page inside.
        assert_eq!(collapse_into_huge_pages(&[(HUGE_PAGE + 64, 4096)]), 0);
        assert_eq!(collapse_into_huge_pages(&[]), 0);
    }

    #[test]
    fn glibc_takes_the_thresholds() {
        let took = keep_freed_memory();
        assert_eq!(took, cfg!(all(target_os = "linux", target_env = "gnu")));
        // A second call changes nothing and reports the first.
        assert_eq!(keep_freed_memory(), took);
    }
}
