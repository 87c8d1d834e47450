//! Building one fetch: a full fetch, or the incremental changes the
//! leader's session does not hold yet (KIP-227).

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::time::Instant;

use super::state::{FetchSession, SessionEntry, Shared};
use super::Context;
use crate::log::TopicPartition;

/// The entry of topic `name` in a request's topic list, added if missing
/// (requests group their partitions by topic).
pub(super) fn topic_entry<'a, T>(
    topics: &'a mut Vec<T>,
    name: &str,
    name_of: impl Fn(&T) -> &TopicName,
    new: impl FnOnce() -> T,
) -> &'a mut T {
    match topics.iter().position(|t| name_of(t).0.as_str() == name) {
        Some(i) => &mut topics[i],
        None => {
            topics.push(new());
            topics.last_mut().expect("just pushed")
        }
    }
}

/// The fetch request for one round: every ready partition for a full
/// fetch; for an incremental one those whose position changed since the
/// leader's session last got it, and those to forget (no longer followed
/// here, or waiting out an error or a truncation). Marks what it sends as
/// held by the session.
pub(super) fn build_request(
    context: &Context,
    shared: &Shared,
    session: &FetchSession,
) -> FetchRequest {
    let settings = &context.settings;
    let mut request = FetchRequest::default();
    request.replica_id = BrokerId(context.node_id);
    request.max_wait_ms = settings.max_wait_ms;
    request.min_bytes = 1;
    request.max_bytes = settings.response_max_bytes;
    // Epoch 0 without an id: a full fetch that opens a session.
    request.session_id = session.id;
    request.session_epoch = if session.id == 0 { 0 } else { session.epoch };
    let full = session.id == 0;
    let generation = session.generation;
    let mut forget: Vec<TopicPartition> = std::mem::take(&mut *shared.removed.lock())
        .into_iter()
        .filter(|(_, g)| !full && *g == generation)
        .map(|(tp, _)| tp)
        .collect();
    let now = Instant::now();
    let mut partitions = shared.partitions.lock();
    for (tp, state) in partitions.iter_mut() {
        let held = state.in_session.filter(|(g, _)| *g == generation);
        if !state.truncated || !state.ready(now) {
            // Not fetched this round: the leader must not answer for it.
            if held.is_some() && !full {
                forget.push(tp.clone());
            }
            state.in_session = None;
            continue;
        }
        let offsets = state.partition.offsets();
        let entry = SessionEntry {
            fetch_offset: offsets.log_end_offset,
            log_start: offsets.log_start_offset,
            leader_epoch: state.leader_epoch,
        };
        if !full && held.map(|(_, e)| e) == Some(entry) {
            continue; // the leader's session has it as it is
        }
        state.in_session = Some((generation, entry));
        let mut p = FetchPartition::default();
        p.partition = tp.partition;
        p.current_leader_epoch = entry.leader_epoch;
        p.fetch_offset = entry.fetch_offset;
        p.log_start_offset = entry.log_start;
        p.partition_max_bytes = settings.partition_max_bytes;
        p.last_fetched_epoch = -1;
        topic_entry(
            &mut request.topics,
            &tp.topic,
            |t| &t.topic,
            || {
                let mut topic = FetchTopic::default();
                topic.topic = TopicName(StrBytes::from_string(tp.topic.clone()));
                topic
            },
        )
        .partitions
        .push(p);
    }
    for tp in forget {
        topic_entry(
            &mut request.forgotten_topics_data,
            &tp.topic,
            |t| &t.topic,
            || {
                let mut topic = ForgottenTopic::default();
                topic.topic = TopicName(StrBytes::from_string(tp.topic.clone()));
                topic
            },
        )
        .partitions
        .push(tp.partition);
    }
    request
}
