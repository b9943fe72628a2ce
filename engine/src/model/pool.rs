//! Where the CPU kernels' parallel loops run: rayon's pool, its threads
//! kept awake for the length of a step.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Runs `f` on a thread of rayon's pool (inline when already on one), so
/// that its many short parallel loops (several per layer) are split by a
/// worker that takes part in them, rather than by an outside thread that
/// sleeps and wakes around each one: on a server's engine thread or in a
/// benchmark, the caller is outside the pool.
///
/// While `f` runs, the pool's other threads are kept awake: each runs a
/// job that takes the pool's pending work as it comes ([`keep_awake`]).
/// Left to itself, a rayon thread that finds no work for a few dozen
/// yields goes to sleep, and the serial parts of a step (a batched step's
/// bookkeeping per sequence and layer, sampling) are that long, so the next
/// parallel loop paid a futex wake-up, which on a virtual machine is an
/// interrupt to an idle virtual CPU; `perf` put about 4% of a batched
/// step's samples there. One call at a time in the process keeps the
/// threads awake (nested and concurrent calls run without). A thread that
/// waits inside a parallel loop may take a waiting job and run it above the
/// loop's own frames, which then cannot finish until the job returns; if
/// `f` needs them, that is until the job has been idle for
/// [`KEEP_AWAKE_IDLE`] (with two threads it cannot happen: the other thread
/// takes the waiting job, the oldest in `f`'s thread's queue, before any of
/// `f`'s loops).
pub(super) fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    static KEPT_AWAKE: AtomicBool = AtomicBool::new(false);
    let done = AtomicBool::new(false);
    let owner = !KEPT_AWAKE.swap(true, Ordering::AcqRel);
    // Both flags are stored even when `f` panics: the scope waits for the
    // waiting jobs, and they end only when `done` is set.
    let _free = owner.then(|| StoreOnDrop(&KEPT_AWAKE, false));
    rayon::scope(|s| {
        let _done = StoreOnDrop(&done, true);
        if owner {
            let driver = rayon::current_thread_index();
            for _ in 1..rayon::current_num_threads() {
                let done = &done;
                s.spawn(move |_| keep_awake(done, driver));
            }
        }
        f()
    })
}

/// Stores its value in its flag when dropped.
struct StoreOnDrop<'a>(&'a AtomicBool, bool);

impl Drop for StoreOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(self.1, Ordering::Release);
    }
}

/// How long a [`keep_awake`] job stays with no work before it returns and
/// lets its thread sleep: longer than a step's serial parts, and a bound on
/// how long the job can hold up work beneath it on its thread's stack (a
/// thread waiting inside a parallel loop may take it; see [`on_pool`]).
const KEEP_AWAKE_IDLE: Duration = Duration::from_micros(500);

/// A pool thread's job while [`on_pool`]'s `f` runs: run the pool's pending
/// work as it comes, yielding the CPU to other threads (a server's) when
/// there is none, until `done` or [`KEEP_AWAKE_IDLE`] without work. On the
/// thread running `f` itself (it took its own job while waiting) it returns
/// at once.
fn keep_awake(done: &AtomicBool, driver: Option<usize>) {
    if rayon::current_thread_index() == driver {
        return;
    }
    let mut idle_since = None;
    while !done.load(Ordering::Acquire) {
        if rayon::yield_now() == Some(rayon::Yield::Executed) {
            idle_since = None;
            continue;
        }
        if idle_since.get_or_insert_with(Instant::now).elapsed() > KEEP_AWAKE_IDLE {
            return;
        }
        std::thread::yield_now();
    }
}

#[cfg(test)]
mod tests {
    use std::panic::{AssertUnwindSafe, catch_unwind};

    use rayon::prelude::*;

    use super::*;

    fn pool(threads: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("a pool")
    }

    #[test]
    fn a_panic_in_f_ends_the_waiting_jobs_and_frees_the_next_call() {
        let pool = pool(2);
        // Without the flags stored on unwind, the scope would wait forever
        // for the waiting job.
        let caught = pool.install(|| catch_unwind(AssertUnwindSafe(|| on_pool(|| panic!("f")))));
        assert!(caught.is_err());
        let sum: u64 = pool.install(|| on_pool(|| (0..1000u64).into_par_iter().sum()));
        assert_eq!(sum, 499_500);
    }

    #[test]
    fn nested_and_concurrent_calls_finish_on_many_threads() {
        // Calls inside the parallel loops of a call, on more threads than
        // two, where a thread waiting inside a loop can take a waiting job.
        for threads in [1, 2, 3, 4] {
            let pool = pool(threads);
            let total: u64 = pool.install(|| {
                on_pool(|| {
                    (0..64u64)
                        .into_par_iter()
                        .map(|i| {
                            on_pool(|| (0..i).into_par_iter().map(|j| on_pool(|| j)).sum::<u64>())
                        })
                        .sum()
                })
            });
            assert_eq!(
                total,
                (0..64u64).map(|i| i * i.saturating_sub(1) / 2).sum::<u64>(),
                "{threads} threads"
            );
        }
    }
}
