//! KIP-890 part 1 on the partition: the guards that tie a transactional
//! batch to the coordinator's answer that its transaction includes this
//! partition.
//!
//! The produce handler begins a verification (a new guard for the
//! producer), asks the coordinator, and appends with the guard. A marker
//! for the producer ends the verification, so a batch whose verification
//! was overtaken by the end of its transaction (a late retry, a zombie)
//! holds a stale guard and is refused, instead of opening a transaction no
//! coordinator knows — a hanging transaction that would hold back the last
//! stable offset forever.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

/// One verification of a producer's transaction in one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerificationGuard(u64);

/// The current verification of each producer.
#[derive(Debug, Default)]
pub struct Verifications {
    next: AtomicU64,
    current: Mutex<HashMap<i64, u64>>,
}

impl Verifications {
    /// Starts a verification for `producer_id`; an earlier one is void.
    pub fn begin(&self, producer_id: i64) -> VerificationGuard {
        let guard = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        self.current.lock().insert(producer_id, guard);
        VerificationGuard(guard)
    }

    /// Whether `guard` is the producer's current verification.
    pub fn is_current(&self, producer_id: i64, guard: Option<VerificationGuard>) -> bool {
        guard.is_some_and(|g| self.current.lock().get(&producer_id) == Some(&g.0))
    }

    /// Ends the producer's verification (its transaction opened here, or
    /// a marker ended it).
    pub fn finish(&self, producer_id: i64) {
        self.current.lock().remove(&producer_id);
    }

    /// Drops `guard` if it is still current (the coordinator said no).
    pub fn abandon(&self, producer_id: i64, guard: VerificationGuard) {
        let mut current = self.current.lock();
        if current.get(&producer_id) == Some(&guard.0) {
            current.remove(&producer_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_latest_unfinished_guard_is_current() {
        let v = Verifications::default();
        let first = v.begin(7);
        assert!(v.is_current(7, Some(first)));
        assert!(!v.is_current(7, None));
        assert!(!v.is_current(8, Some(first)));
        let second = v.begin(7);
        assert!(
            !v.is_current(7, Some(first)),
            "a newer verification voids it"
        );
        v.abandon(7, first);
        assert!(
            v.is_current(7, Some(second)),
            "abandoning a stale guard changes nothing"
        );
        v.finish(7);
        assert!(!v.is_current(7, Some(second)), "a marker ended it");
    }
}
