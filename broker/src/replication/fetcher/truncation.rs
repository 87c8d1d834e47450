//! The truncation step after a leader change: ask the leader where this
//! replica's latest epoch ended (OffsetsForLeaderEpoch), and cut the local
//! log there.

use std::time::Duration;

use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{BrokerId, OffsetForLeaderEpochRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use tideline_protocol::KafkaClient;
use tokio::time::Instant;

use super::request::topic_entry;
use super::state::{update_state, FetchState, Shared};
use super::Context;
use crate::error::ResponseError;
use crate::log::TopicPartition;

const OFFSET_FOR_LEADER_EPOCH_VERSION: i16 = 4;

/// One OffsetsForLeaderEpoch round for the partitions that must truncate.
pub(super) async fn truncate(
    context: &Context,
    client: &mut KafkaClient,
    shared: &Shared,
    partitions: Vec<(TopicPartition, FetchState)>,
) -> anyhow::Result<()> {
    let mut request = OffsetForLeaderEpochRequest::default();
    request.replica_id = BrokerId(context.node_id);
    let mut asked = Vec::new();
    for (tp, state) in partitions {
        let latest = state.partition.latest_epoch();
        let Some(latest) = latest else {
            // Nothing written under any epoch: nothing can have diverged.
            update_state(shared, &tp, state.leader_epoch, &state.partition, |s| {
                s.truncated = true
            });
            continue;
        };
        let mut p = OffsetForLeaderPartition::default();
        p.partition = tp.partition;
        p.current_leader_epoch = state.leader_epoch;
        p.leader_epoch = latest;
        topic_entry(
            &mut request.topics,
            &tp.topic,
            |t| &t.topic,
            || {
                let mut topic = OffsetForLeaderTopic::default();
                topic.topic = TopicName(StrBytes::from_string(tp.topic.clone()));
                topic
            },
        )
        .partitions
        .push(p);
        asked.push((tp, state, latest));
    }
    if asked.is_empty() {
        return Ok(());
    }
    let response = client
        .send(
            &request,
            OFFSET_FOR_LEADER_EPOCH_VERSION,
            context.settings.socket_timeout,
        )
        .await?;
    for (tp, state, asked_epoch) in asked {
        let answer = response
            .topics
            .iter()
            .filter(|t| t.topic.0.as_str() == tp.topic)
            .flat_map(|t| t.partitions.iter())
            .find(|p| p.partition == tp.partition);
        let Some(answer) = answer else { continue };
        if answer.error_code != 0 {
            let error = ResponseError::try_from_code(answer.error_code);
            tracing::debug!(partition = %tp, error = ?error, "OffsetsForLeaderEpoch failed; retrying");
            let retry = Instant::now() + context.settings.backoff.min(Duration::from_millis(500));
            update_state(shared, &tp, state.leader_epoch, &state.partition, |s| {
                s.retry_at = Some(retry)
            });
            continue;
        }
        let done = tokio::task::block_in_place(|| {
            state
                .partition
                .truncate_to_leader(asked_epoch, answer.leader_epoch, answer.end_offset)
        });
        match done {
            Ok(done) => update_state(shared, &tp, state.leader_epoch, &state.partition, |s| {
                s.truncated = done;
                s.retry_at = None;
            }),
            Err(e) => {
                tracing::error!(partition = %tp, error = %e, "truncation failed");
                let retry = Instant::now() + context.settings.backoff;
                update_state(shared, &tp, state.leader_epoch, &state.partition, |s| {
                    s.retry_at = Some(retry)
                });
            }
        }
    }
    Ok(())
}
