//! The replication throttle (`leader.replication.throttled.rate`): a token
//! bucket over the bytes a leader sends to throttled replicas — those a
//! reassignment is adding — so moving a partition does not starve producers
//! and in-sync followers, which are never throttled. As in Kafka, a
//! throttled partition is left out of a fetch response while the quota is
//! exceeded; the follower simply fetches it again.

use std::time::Instant;

use parking_lot::Mutex;

pub struct Throttle {
    state: Mutex<Bucket>,
}

struct Bucket {
    /// Bytes per second; `u64::MAX`-like values mean unthrottled.
    rate: f64,
    /// Bytes that may still be sent now (negative: in debt).
    tokens: f64,
    refilled: Instant,
}

impl Throttle {
    pub fn new(rate: i64) -> Throttle {
        Throttle {
            state: Mutex::new(Bucket {
                rate: rate.max(0) as f64,
                tokens: rate.max(0) as f64,
                refilled: Instant::now(),
            }),
        }
    }

    /// Changes the rate (a dynamic config change).
    pub fn set_rate(&self, rate: i64) {
        let mut b = self.state.lock();
        let rate = rate.max(0) as f64;
        if rate != b.rate {
            b.rate = rate;
            b.tokens = b.tokens.min(rate);
        }
    }

    pub fn is_unlimited(&self) -> bool {
        self.state.lock().rate >= i64::MAX as f64
    }

    /// Whether throttled data must wait (the bucket is empty).
    pub fn is_exceeded(&self) -> bool {
        let mut b = self.state.lock();
        if b.rate >= i64::MAX as f64 {
            return false;
        }
        b.refill(Instant::now());
        b.tokens <= 0.0
    }

    /// Counts bytes sent to throttled replicas.
    pub fn record(&self, bytes: usize) {
        let mut b = self.state.lock();
        if b.rate >= i64::MAX as f64 {
            return;
        }
        b.refill(Instant::now());
        b.tokens -= bytes as f64;
    }
}

impl Bucket {
    fn refill(&mut self, now: Instant) {
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        // At most one second of burst.
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_empties_and_refills_at_the_rate() {
        let t = Throttle::new(1000);
        assert!(!t.is_exceeded());
        t.record(1500);
        assert!(t.is_exceeded());
        std::thread::sleep(std::time::Duration::from_millis(700));
        assert!(!t.is_exceeded(), "refilled 700 bytes, 200 available");
        let unlimited = Throttle::new(i64::MAX);
        unlimited.record(usize::MAX / 2);
        assert!(!unlimited.is_exceeded());
    }
}
