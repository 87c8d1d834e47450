//! One fetch round: send the request, take the leader's high watermark for
//! idle partitions, append what came back through the partition's
//! replication origin, and take the leader's log start (checkpointed before
//! the next round when it moved: the records the leader deleted stay
//! deleted here after a crash).

use std::time::Duration;

use tideline_protocol::KafkaClient;
use tokio::time::Instant;

use super::request::build_request;
use super::state::{update_state, FetchSession, FetchState, Shared};
use super::Context;
use crate::error::ResponseError;
use crate::log::{AppendError, TopicPartition};
use crate::partition::{Append, AppendFailure};

const FETCH_VERSION: i16 = 12;

/// One fetch round: only partitions with news come back, each answered
/// from the position the leader's session holds for it.
pub(super) async fn fetch(
    context: &Context,
    client: &mut KafkaClient,
    shared: &Shared,
    session: &mut FetchSession,
) -> anyhow::Result<()> {
    let settings = &context.settings;
    let request = build_request(context, shared, session);
    let timeout = settings.socket_timeout + Duration::from_millis(settings.max_wait_ms as u64);
    let response = client.send(&request, FETCH_VERSION, timeout).await?;
    match ResponseError::try_from_code(response.error_code) {
        None => {}
        Some(ResponseError::FetchSessionIdNotFound | ResponseError::InvalidFetchSessionEpoch) => {
            // Evicted, or the leader restarted: start over with a full fetch.
            tracing::debug!(
                session = session.id,
                "fetch session lost; opening a new one"
            );
            *session = FetchSession::new();
            return Ok(());
        }
        Some(error) => anyhow::bail!("fetch failed: {error:?}"),
    }
    if session.id == 0 {
        session.id = response.session_id;
        session.epoch = 1;
    } else {
        session.epoch = if session.epoch == i32::MAX {
            1
        } else {
            session.epoch + 1
        };
    }
    let generation = session.generation;
    let mut any_error = false;
    // Partitions answered without an error, with the leader's log start,
    // taken once the round's appends are done (outside the fetch state's
    // lock: it may delete segments).
    let mut leader_log_starts = Vec::new();
    // Partitions that brought records or an error, handled below; each
    // with the offset the leader answered from.
    let mut with_records = Vec::new();
    {
        let mut followed = shared.partitions.lock();
        for topic in &response.responses {
            for data in &topic.partitions {
                let tp = TopicPartition::new(topic.topic.0.as_str(), data.partition_index);
                let Some(state) = followed.get_mut(&tp) else {
                    continue;
                };
                // Answered for the position this session holds, or stale.
                let Some((_, entry)) = state.in_session.filter(|(g, _)| *g == generation) else {
                    continue;
                };
                if data.error_code != 0 || data.records.as_ref().is_some_and(|r| !r.is_empty()) {
                    with_records.push((tp, state.clone(), entry.fetch_offset, data));
                    continue;
                }
                // Nothing new: only the leader's high watermark and log
                // start to take.
                let end = state
                    .partition
                    .take_leader_high_watermark(data.high_watermark);
                state.lag = (data.high_watermark - end).max(0);
                leader_log_starts.push((
                    state.partition.clone(),
                    state.leader_epoch,
                    data.log_start_offset,
                ));
            }
        }
    }
    for (tp, state, fetch_offset, data) in with_records {
        let tp = &tp;
        let state = &state;
        let partition = &state.partition;
        if data.error_code != 0 {
            any_error = true;
            handle_partition_error(context, shared, tp, state, data, fetch_offset);
            continue;
        }
        let records = data.records.as_deref().unwrap_or(&[]);
        let appended = partition.append(Append::Replication {
            records,
            leader_epoch: state.leader_epoch,
            fetch_offset,
            leader_high_watermark: data.high_watermark,
        });
        match appended {
            Ok(appended) => {
                if appended.info.records > 0 {
                    context.metrics.record_replicated(appended.info.bytes);
                }
                let lag = (data.high_watermark - appended.log_end_offset).max(0);
                update_state(shared, tp, state.leader_epoch, partition, |s| s.lag = lag);
                leader_log_starts.push((
                    partition.clone(),
                    state.leader_epoch,
                    data.log_start_offset,
                ));
            }
            // Truncated or re-led meanwhile: the next round refetches.
            Err(AppendFailure::Stale) => {}
            Err(e) => {
                any_error = true;
                let storage = matches!(
                    e,
                    AppendFailure::Log(AppendError::Io(_) | AppendError::Storage(_))
                );
                if storage {
                    tracing::warn!(partition = %tp, error = %e, "cannot append replicated records; pausing until the log directory takes writes");
                } else {
                    tracing::error!(partition = %tp, error = %e, "cannot append replicated records");
                }
                let retry = Instant::now() + settings.backoff;
                update_state(shared, tp, state.leader_epoch, partition, |s| {
                    // A non-contiguous batch means the logs disagree:
                    // truncate again. A storage failure changed nothing.
                    s.truncated &= storage;
                    s.retry_at = Some(retry);
                });
            }
        }
    }
    let mut log_start_moved = false;
    for (partition, leader_epoch, log_start) in leader_log_starts {
        log_start_moved |= partition.take_leader_log_start(leader_epoch, log_start);
    }
    if log_start_moved {
        // Before the next round reports the new log start to the leader,
        // whose DeleteRecords answer waits for it.
        let logs = context.logs.clone();
        let written = tokio::task::spawn_blocking(move || logs.write_log_start_checkpoint())
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        if let Err(e) = written {
            tracing::error!(error = %e, "cannot checkpoint the log start offsets");
        }
    }
    if any_error {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

fn handle_partition_error(
    context: &Context,
    shared: &Shared,
    tp: &TopicPartition,
    state: &FetchState,
    data: &kafka_protocol::messages::fetch_response::PartitionData,
    fetch_offset: i64,
) {
    let error = ResponseError::try_from_code(data.error_code);
    let partition = &state.partition;
    let backoff = context.settings.backoff.min(Duration::from_millis(500));
    match error {
        Some(ResponseError::OffsetOutOfRange) => {
            // Our log ends before the leader's log start (retention moved
            // on while we were away), or past its end (we diverged).
            let leader_start = data.log_start_offset;
            if leader_start >= 0 && fetch_offset < leader_start {
                tracing::warn!(partition = %tp, fetch_offset, leader_start, "follower is behind the leader's log start: restarting the log there");
                if let Err(e) = partition.restart_at_leader_start(leader_start) {
                    tracing::error!(partition = %tp, error = %e, "cannot reset the log");
                }
                update_state(shared, tp, state.leader_epoch, partition, |s| {
                    s.retry_at = None
                });
            } else {
                update_state(shared, tp, state.leader_epoch, partition, |s| {
                    s.truncated = false;
                    s.retry_at = None;
                });
            }
        }
        _ => {
            tracing::debug!(partition = %tp, error = ?error, "replica fetch error; retrying");
            let retry = Instant::now() + backoff;
            update_state(shared, tp, state.leader_epoch, partition, |s| {
                s.retry_at = Some(retry)
            });
        }
    }
}
