//! Controlled shutdown: leadership leaves this broker before it stops, so
//! clients fail over to an in-sync replica instead of waiting for a timeout.

use super::Broker;

impl Broker {
    /// Controlled shutdown: asks the controller to move every leadership off
    /// this broker and waits (at most `timeout`) until the metadata shows it
    /// leads nothing another replica could lead. Skipped when no other
    /// broker is live: there is nowhere to move leadership to.
    pub async fn controlled_shutdown(&self, timeout: std::time::Duration) {
        if tokio::time::timeout(timeout, self.move_leadership_away())
            .await
            .is_err()
        {
            tracing::warn!("controlled shutdown timed out; stopping anyway");
        }
    }

    async fn move_leadership_away(&self) {
        let me = self.node_id();
        let image = self.image();
        if !image.brokers.keys().any(|b| *b != me && image.is_live(*b)) {
            return;
        }
        let started = std::time::Instant::now();
        let mut images = self.quorum.subscribe();
        let mut requested = false;
        loop {
            if !requested {
                match self.controller.shutdown_broker(me).await {
                    Ok(()) => requested = true,
                    Err(e) => {
                        tracing::warn!(error = %e, "controlled shutdown request failed; retrying")
                    }
                }
            }
            let image = self.image();
            let still_leading = image
                .topics
                .values()
                .flat_map(|t| t.partitions.iter())
                .filter(|p| p.leader == me)
                .count();
            if requested && still_leading == 0 {
                tracing::info!(
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "controlled shutdown: leadership moved off this broker"
                );
                // Let the local replicas see it before the listeners stop.
                self.sync_logs().await;
                return;
            }
            tokio::select! {
                _ = images.changed() => {}
                _ = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
            }
        }
    }
}
