//! Broker memory sampling (`--broker-pid`): reads VmRSS and VmHWM from
//! `/proc/PID/status` once a second on a background thread.
//!
//! Memory footprint is one of the published figures, so it is measured the
//! same way on every run: an idle sample before the benchmark connects, the
//! highest sampled RSS while it runs, a final sample at the end, and the
//! kernel's own high-water mark (VmHWM), which also catches spikes between
//! samples (but covers the broker's whole lifetime, not just this run).

use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};

const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
pub struct MemSample {
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

#[derive(Debug, Clone, Copy)]
pub struct RssReport {
    pub pid: u32,
    pub idle_kib: u64,
    pub peak_kib: u64,
    pub final_kib: u64,
    pub hwm_kib: u64,
    pub samples: u64,
}

pub struct RssSampler {
    pid: u32,
    idle: MemSample,
    stop: Arc<AtomicBool>,
    handle: JoinHandle<(u64, u64)>,
}

impl RssSampler {
    /// Takes the idle sample (failing if the process cannot be read) and
    /// starts periodic sampling.
    pub fn start(pid: u32) -> Result<Self> {
        let idle =
            read_status(pid).with_context(|| format!("reading memory of broker process {pid}"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let handle = {
            let stop = Arc::clone(&stop);
            thread::Builder::new()
                .name("rss-sampler".into())
                .spawn(move || {
                    let mut peak = idle.rss_kib;
                    let mut samples = 1;
                    while !stop.load(Ordering::Relaxed) {
                        thread::sleep(SAMPLE_INTERVAL);
                        if let Ok(s) = read_status(pid) {
                            peak = peak.max(s.rss_kib);
                            samples += 1;
                        }
                    }
                    (peak, samples)
                })
                .context("spawning RSS sampler")?
        };
        Ok(RssSampler {
            pid,
            idle,
            stop,
            handle,
        })
    }

    /// Takes the final sample and stops sampling.
    pub fn finish(self) -> Result<RssReport> {
        let last = read_status(self.pid)
            .with_context(|| format!("reading memory of broker process {}", self.pid))?;
        self.stop.store(true, Ordering::Relaxed);
        let (peak, samples) = self.handle.join().expect("RSS sampler panicked");
        Ok(RssReport {
            pid: self.pid,
            idle_kib: self.idle.rss_kib,
            peak_kib: peak.max(last.rss_kib),
            final_kib: last.rss_kib,
            hwm_kib: last.hwm_kib,
            samples: samples + 1,
        })
    }
}

fn read_status(pid: u32) -> Result<MemSample> {
    let text = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> Result<u64> {
        text.lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| anyhow!("no {name} line in /proc/{pid}/status"))
    };
    Ok(MemSample {
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
    })
}
