//! Reports the log directory's health (writable, full, offline) to the
//! controller, which moves leadership off a directory that takes no writes.

use super::Broker;
use crate::disk::DirState;

impl Broker {
    /// Makes the metadata say what the log directory's health says (full,
    /// offline or writable), so the controller moves leaderships off a
    /// directory that takes no writes and lets the broker back once it does.
    /// Idempotent: called on every health change and periodically.
    pub async fn report_log_dir_state(&self) {
        let me = self.node_id();
        let local = self.logs.health().state();
        let image = self.image();
        if !image.brokers.contains_key(&me) {
            return;
        }
        let published = image
            .unwritable_log_dirs
            .get(&me)
            .copied()
            .unwrap_or(DirState::Writable);
        if local == published {
            return;
        }
        match self.controller.set_log_dir_state(me, local).await {
            Ok(()) => {
                tracing::info!(state = ?local, "log directory state reported to the controller")
            }
            Err(e) => {
                tracing::warn!(state = ?local, error = %e, "cannot report the log directory state; retrying")
            }
        }
    }
}
