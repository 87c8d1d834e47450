//! What every mode records its measurements into, kept apart from the
//! report so the modes and the report each depend on it and not on each
//! other.

use std::fmt::Display;
use std::sync::Mutex;

use hdrhistogram::Histogram;

/// Latencies are recorded in microseconds, up to one hour, 3 significant
/// digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// Keeps the first few distinct error messages of a kind.
#[derive(Default)]
pub struct FirstErrors(Mutex<Vec<String>>);

impl FirstErrors {
    const LIMIT: usize = 5;

    pub fn note(&self, error: impl Display) {
        let mut errors = self.0.lock().unwrap();
        if errors.len() < Self::LIMIT {
            let text = error.to_string();
            if !errors.contains(&text) {
                errors.push(text);
            }
        }
    }

    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}
