//! The fetcher task for one leader: waits for work, connects, and runs
//! truncation or fetch rounds until its partitions are gone.

use std::sync::Arc;
use std::time::Duration;

use tideline_protocol::KafkaClient;
use tokio::time::Instant;

use super::round::fetch;
use super::state::{FetchSession, Shared};
use super::truncation::truncate;
use super::Context;
use crate::disk::DirState;

/// The fetcher task for one leader.
pub(super) async fn run(context: Arc<Context>, leader: i32, shared: Arc<Shared>) {
    let mut client: Option<KafkaClient> = None;
    let mut session = FetchSession::new();
    loop {
        let now = Instant::now();
        // One look over the followed partitions, without copying them.
        let (followed, any_ready, truncating) = {
            let partitions = shared.partitions.lock();
            let mut any_ready = false;
            let mut truncating = Vec::new();
            for (tp, state) in partitions.iter().filter(|(_, s)| s.ready(now)) {
                any_ready = true;
                if !state.truncated {
                    truncating.push((tp.clone(), state.clone()));
                }
            }
            (partitions.len(), any_ready, truncating)
        };
        if followed == 0 {
            shared.wake.notified().await;
            continue;
        }
        if context.health.state() != DirState::Writable {
            // Nothing fetched could be appended: wait for space (or a
            // restart, for an offline directory) instead of failing.
            let mut changes = context.health.subscribe();
            tokio::select! {
                _ = changes.changed() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            continue;
        }
        if !any_ready {
            tokio::select! {
                _ = shared.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
            continue;
        }
        if client.is_none() {
            match connect(&context, leader).await {
                Ok(c) => client = Some(c),
                Err(e) => {
                    tracing::debug!(leader, error = %e, "cannot reach the leader");
                    tokio::time::sleep(context.settings.backoff.min(Duration::from_millis(500)))
                        .await;
                    continue;
                }
            }
        }
        let connection = client.as_mut().expect("connected above");
        let result = if !truncating.is_empty() {
            truncate(&context, connection, &shared, truncating).await
        } else {
            fetch(&context, connection, &shared, &mut session).await
        };
        if let Err(e) = result {
            tracing::debug!(leader, error = %e, "replica fetch failed; reconnecting");
            client = None;
            session = FetchSession::new();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

async fn connect(context: &Context, leader: i32) -> anyhow::Result<KafkaClient> {
    let image = context.quorum.image();
    let broker = image
        .brokers
        .get(&leader)
        .ok_or_else(|| anyhow::anyhow!("leader {leader} is not registered"))?;
    let address = format!("{}:{}", broker.host, broker.port);
    let client_id = format!("tideline-replica-fetcher-{}", context.node_id);
    let stream = tokio::time::timeout(
        Duration::from_secs(5),
        crate::util::connect_to_peer(&address),
    )
    .await
    .map_err(|_| anyhow::anyhow!("connecting to {address} timed out"))??;
    KafkaClient::over(stream, &client_id)
}
