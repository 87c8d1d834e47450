//! Whether the kernel is writing dirty pages back, which decides when the
//! active segments write directly (`log.direct.io.enable=auto`), and when
//! an append may be throttled and so runs off the async worker.
//!
//! Through the page cache an append is one memory copy, the cheapest write
//! there is — until dirty pages pass the kernel's background threshold
//! (`vm.dirty_background_ratio` of reclaimable memory) and writeback
//! starts. From then on every buffered write also pays for reclaiming and
//! throttling, and measured here the broker's CPU per GB doubled while its
//! throughput fell to the disk's buffered ceiling (docs/direct-io.md). A
//! direct write costs more per call but the same with or without
//! writeback. So `auto` writes through the page cache while the dirty
//! pages stay well below the threshold and directly once they reach half
//! of it, until they have drained to a quarter: the broker's own writes
//! then add no dirty pages, and the kernel never gets to throttle them.

use std::sync::atomic::{AtomicBool, Ordering};

static UNDER_PRESSURE: AtomicBool = AtomicBool::new(false);

/// Whether dirty pages were near the writeback threshold at the last sample.
pub fn under_pressure() -> bool {
    #[cfg(test)]
    if let Some(forced) = FORCED.with(|f| f.get()) {
        return forced;
    }
    UNDER_PRESSURE.load(Ordering::Relaxed)
}

/// Reads the kernel's counters and updates [`under_pressure`].
pub fn sample() {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let setting = |name: &str| {
        std::fs::read_to_string(format!("/proc/sys/vm/{name}"))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
    };
    let counters = Counters {
        dirty: meminfo_bytes(&meminfo, "Dirty:"),
        writeback: meminfo_bytes(&meminfo, "Writeback:"),
        available: meminfo_bytes(&meminfo, "MemAvailable:"),
        background_bytes: setting("dirty_background_bytes").unwrap_or(0),
        background_ratio: setting("dirty_background_ratio").unwrap_or(10),
    };
    let was = UNDER_PRESSURE.load(Ordering::Relaxed);
    UNDER_PRESSURE.store(counters.under_pressure(was), Ordering::Relaxed);
}

/// The figures the decision needs, in bytes (the ratio in percent).
#[derive(Debug, Clone, Copy)]
struct Counters {
    dirty: u64,
    writeback: u64,
    available: u64,
    background_bytes: u64,
    background_ratio: u64,
}

impl Counters {
    /// The kernel's background threshold: `dirty_background_bytes` if set,
    /// else the ratio of the memory it could reclaim (close to
    /// MemAvailable).
    fn threshold(&self) -> u64 {
        if self.background_bytes > 0 {
            self.background_bytes
        } else {
            (self.available as u128 * self.background_ratio as u128 / 100) as u64
        }
    }

    /// On at half the threshold, off again below a quarter (so one sample
    /// either side of a single line does not flip it back and forth).
    fn under_pressure(&self, was: bool) -> bool {
        let pending = self.dirty + self.writeback;
        let threshold = self.threshold();
        if was {
            pending >= threshold / 4
        } else {
            pending >= threshold / 2
        }
    }
}

/// A `/proc/meminfo` line's value (given in kB), in bytes; 0 if absent.
fn meminfo_bytes(meminfo: &str, key: &str) -> u64 {
    meminfo
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[cfg(test)]
thread_local! {
    static FORCED: std::cell::Cell<Option<bool>> = const { std::cell::Cell::new(None) };
}

/// Makes [`under_pressure`] answer `forced` on this thread (tests).
#[cfg(test)]
pub fn force_on_this_thread(forced: Option<bool>) {
    FORCED.with(|f| f.set(forced));
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn counters(dirty: u64) -> Counters {
        Counters {
            dirty,
            writeback: 0,
            available: 20 * GIB,
            background_bytes: 0,
            background_ratio: 10,
        }
    }

    #[test]
    fn pressure_starts_at_half_the_background_threshold_and_ends_below_a_quarter() {
        // Threshold: 10 % of 20 GiB = 2 GiB.
        assert!(!counters(GIB - 1).under_pressure(false));
        assert!(counters(GIB).under_pressure(false));
        assert!(counters(GIB / 2).under_pressure(true), "still draining");
        assert!(!counters(GIB / 2 - 1).under_pressure(true));
        let bytes = Counters {
            background_bytes: 100 << 20,
            ..counters(50 << 20)
        };
        assert!(bytes.under_pressure(false), "dirty_background_bytes wins");
    }

    #[test]
    fn meminfo_values_are_read_in_bytes() {
        let meminfo =
            "MemTotal:       24000000 kB\nDirty:             1234 kB\nWriteback:           0 kB\n";
        assert_eq!(meminfo_bytes(meminfo, "Dirty:"), 1234 * 1024);
        assert_eq!(meminfo_bytes(meminfo, "Writeback:"), 0);
        assert_eq!(meminfo_bytes(meminfo, "MemAvailable:"), 0);
    }

    #[test]
    fn a_sample_of_this_machine_reads_its_counters() {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
        assert!(meminfo_bytes(&meminfo, "MemAvailable:") > 0);
        sample();
    }
}
