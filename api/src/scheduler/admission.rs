//! Admission control: how many jobs the scheduler holds, waiting or
//! generating, against `max_concurrent + max_queue`.
//!
//! The count is explicit rather than a bounded channel's capacity. A
//! rendezvous channel (`max_queue = 0`) only accepts a message while the
//! engine thread is blocked receiving, so it refused requests whenever the
//! engine was busy or not yet started, even with free generation slots.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Slots for jobs: taken at submission, given back when a job retires.
#[derive(Debug)]
pub(crate) struct Admission {
    held: AtomicUsize,
    capacity: usize,
}

impl Admission {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            held: AtomicUsize::new(0),
            capacity,
        }
    }

    /// Slots taken now.
    pub(crate) fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }

    /// Takes `n` slots at once, or none when fewer than `n` are free.
    pub(crate) fn try_take(&self, n: usize) -> bool {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(n).filter(|&total| total <= self.capacity)
            })
            .is_ok()
    }

    /// Gives back `n` slots.
    pub(crate) fn give_back(&self, n: usize) {
        let before = self.held.fetch_sub(n, Ordering::AcqRel);
        debug_assert!(before >= n, "gave back {n} slots with {before} held");
    }
}

#[cfg(test)]
mod tests {
    use super::Admission;

    #[test]
    fn takes_all_or_nothing_and_frees_on_give_back() {
        let a = Admission::new(3);
        assert!(a.try_take(2));
        assert!(!a.try_take(2), "only one slot is free");
        assert!(a.try_take(1));
        assert!(!a.try_take(1));
        a.give_back(2);
        assert!(a.try_take(2));
        assert!(!a.try_take(usize::MAX), "no overflow");
    }
}
