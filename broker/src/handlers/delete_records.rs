//! DeleteRecords (KIP-107): deletes the records below an offset in each
//! partition by moving its log start there, for `kafka-delete-records.sh`,
//! the admin clients' `deleteRecords` and `tideline topic trim`.
//!
//! The leader moves its log start at once (`Partition::delete_records`),
//! and the log-start checkpoint is written before anything is answered: an
//! acknowledged deletion must not be undone by a crash. The answer then
//! waits, up to the request's `timeout_ms`, until the partition's low
//! watermark (the smallest log start among the live replicas) reaches the
//! offset, as Kafka's `DelayedDeleteRecords` does: followers delete the
//! records when their next fetch response carries the leader's new log
//! start, and their following fetch reports it. The wait is woken by those
//! reports and by metadata changes (a replica that stops being live no
//! longer counts); a partition still short at the deadline gets
//! REQUEST_TIMED_OUT. With one replica nothing is waited for.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::broker::Broker;
use crate::coordinator::groups::OFFSETS_TOPIC;
use crate::error::ResponseError;
use crate::metadata::MetadataImage;
use crate::partition::Partition;

/// Kafka's `DeleteRecordsResponse.INVALID_LOW_WATERMARK`, for a partition
/// answered with an error.
const INVALID_LOW_WATERMARK: i64 = -1;

/// A partition whose log start moved (or already was there) on this
/// leader, waiting for the low watermark; its place in the response.
struct Pending {
    topic: usize,
    partition: usize,
    replica: Arc<Partition>,
    offset: i64,
    moved: bool,
}

pub async fn delete_records(
    broker: &Broker,
    request: DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    let image = broker.image();
    let deadline = Instant::now() + Duration::from_millis(request.timeout_ms.max(0) as u64);
    let mut response = DeleteRecordsResponse::default();
    let mut pending = Vec::new();
    for topic in request.topics {
        let mut topic_result = DeleteRecordsTopicResult::default();
        topic_result.name = topic.name.clone();
        for p in topic.partitions {
            let mut result = DeleteRecordsPartitionResult::default();
            result.partition_index = p.partition_index;
            result.low_watermark = INVALID_LOW_WATERMARK;
            let local = |topic: &str, index| broker.partition(topic, index);
            let deleted = resolve(
                &image,
                broker.node_id(),
                topic.name.0.as_str(),
                p.partition_index,
                local,
            )
            .and_then(|replica| Ok((replica.delete_records(p.offset)?, replica)));
            match deleted {
                Ok((deleted, replica)) => pending.push(Pending {
                    topic: response.topics.len(),
                    partition: topic_result.partitions.len(),
                    replica,
                    offset: deleted.offset,
                    moved: deleted.moved,
                }),
                Err(error) => {
                    tracing::debug!(topic = %topic.name.0, partition = p.partition_index, offset = p.offset, ?error, "DeleteRecords refused");
                    result.error_code = error.code();
                }
            }
            topic_result.partitions.push(result);
        }
        response.topics.push(topic_result);
    }

    if pending.iter().any(|p| p.moved) {
        let logs = broker.logs.clone();
        let written = tokio::task::spawn_blocking(move || logs.write_log_start_checkpoint())
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        if let Err(e) = written {
            // Deleted here, but a crash could bring the records back: not
            // acknowledged. (A retry finds the log start moved and writes
            // the checkpoint again.)
            tracing::error!(error = %e, "cannot checkpoint the log start offsets after DeleteRecords");
            pending.retain(|p| {
                if p.moved {
                    let result = &mut response.topics[p.topic].partitions[p.partition];
                    result.error_code = ResponseError::KafkaStorageError.code();
                }
                !p.moved
            });
        }
    }

    let images = broker.quorum.subscribe();
    let outcomes = join_all(
        pending
            .iter()
            .map(|p| wait_for_low_watermark(&p.replica, p.offset, images.clone(), deadline)),
    )
    .await;
    for (p, outcome) in pending.iter().zip(outcomes) {
        let result = &mut response.topics[p.topic].partitions[p.partition];
        match outcome {
            Ok(low_watermark) => result.low_watermark = low_watermark,
            Err(error) => result.error_code = error.code(),
        }
    }
    response
}

/// The local partition to delete from: it must exist, not be the offsets
/// topic (Kafka refuses internal topics), and be led by this broker (`me`).
fn resolve(
    image: &MetadataImage,
    me: i32,
    topic: &str,
    index: i32,
    local: impl Fn(&str, i32) -> Option<Arc<Partition>>,
) -> Result<Arc<Partition>, ResponseError> {
    let assignment = image
        .topics
        .get(topic)
        .and_then(|t| t.partitions.get(usize::try_from(index).ok()?))
        .ok_or(ResponseError::UnknownTopicOrPartition)?;
    if topic == OFFSETS_TOPIC {
        return Err(ResponseError::InvalidTopicException);
    }
    if assignment.leader != me {
        return Err(ResponseError::NotLeaderOrFollower);
    }
    local(topic, index).ok_or(ResponseError::NotLeaderOrFollower)
}

/// Waits until the low watermark of `partition` (over the brokers live in
/// the latest image) reaches `offset`, and returns it. Fails with
/// NOT_LEADER_OR_FOLLOWER if leadership moves meanwhile, and with
/// REQUEST_TIMED_OUT at `deadline`.
async fn wait_for_low_watermark(
    partition: &Partition,
    offset: i64,
    mut images: watch::Receiver<Arc<MetadataImage>>,
    deadline: Instant,
) -> Result<i64, ResponseError> {
    let mut log_starts = partition.subscribe_replica_log_starts();
    loop {
        // Both are marked seen before the low watermark is read, so a change
        // after the read ends the wait below.
        log_starts.borrow_and_update();
        let image = images.borrow_and_update().clone();
        let low_watermark = partition.low_watermark(|broker| image.is_live(broker))?;
        if low_watermark >= offset {
            return Ok(low_watermark);
        }
        tokio::select! {
            // The partition outlives this wait (it is held), so its sender does too.
            _ = log_starts.changed() => {}
            changed = images.changed() => {
                if changed.is_err() {
                    // The metadata is gone: the broker is stopping.
                    return Err(ResponseError::NotLeaderOrFollower);
                }
            }
            _ = tokio::time::sleep_until(deadline) => return Err(ResponseError::RequestTimedOut),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LogConfig;
    use crate::metadata::records::{BrokerRegistration, PartitionRecord};
    use crate::metadata::TopicImage;
    use crate::partition::testing::led_partition;
    use crate::partition::LogManager;

    const ME: i32 = 1;

    fn topic(name: &str, leaders: &[i32]) -> TopicImage {
        let partitions = leaders
            .iter()
            .map(|&leader| {
                let mut record = PartitionRecord::new(vec![leader]);
                record.leader = leader;
                record
            })
            .collect();
        TopicImage {
            name: name.to_string(),
            topic_id: uuid::Uuid::new_v4(),
            partitions,
            configs: Default::default(),
        }
    }

    fn image_with(brokers: &[i32], topics: Vec<TopicImage>) -> MetadataImage {
        let mut image = MetadataImage::default();
        for &broker_id in brokers {
            let registration = BrokerRegistration {
                broker_id,
                incarnation_id: uuid::Uuid::new_v4(),
                host: "127.0.0.1".into(),
                port: 9092,
                rack: None,
            };
            image.brokers.insert(broker_id, registration);
        }
        for t in topics {
            image.topic_names.insert(t.topic_id, t.name.clone());
            image.topics.insert(t.name.clone(), t);
        }
        image
    }

    /// A partition `t-0` in `dir` led here with `replicas`, holding `n`
    /// records, every replica having fetched them (log starts still 0).
    fn led(dir: &std::path::Path, replicas: Vec<i32>, n: i64) -> (LogManager, Arc<Partition>) {
        let (manager, partition) =
            led_partition(dir, ME, LogConfig::default(), n, replicas.clone());
        for &follower in replicas.iter().filter(|&&r| r != ME) {
            partition.record_follower_fetch(follower, n, 0, 0).unwrap();
        }
        (manager, partition)
    }

    #[test]
    fn only_an_existing_partition_led_here_outside_the_offsets_topic_is_deleted_from() {
        let dir = tempfile::tempdir().unwrap();
        let (_manager, partition) = led(dir.path(), vec![ME], 1);
        let image = image_with(
            &[ME, 2],
            vec![
                topic("t", &[ME]),
                topic("elsewhere", &[2]),
                topic("not-here", &[ME]),
                topic(OFFSETS_TOPIC, &[ME]),
            ],
        );
        let local = |topic: &str, index| (topic == "t" && index == 0).then(|| partition.clone());
        let resolved = |topic, index| resolve(&image, ME, topic, index, local).map(|_| ());
        assert_eq!(resolved("t", 0), Ok(()));
        assert_eq!(
            resolved("t", 1),
            Err(ResponseError::UnknownTopicOrPartition)
        );
        assert_eq!(
            resolved("t", -1),
            Err(ResponseError::UnknownTopicOrPartition)
        );
        assert_eq!(
            resolved("nope", 0),
            Err(ResponseError::UnknownTopicOrPartition)
        );
        assert_eq!(
            resolved("elsewhere", 0),
            Err(ResponseError::NotLeaderOrFollower)
        );
        assert_eq!(
            resolved("not-here", 0),
            Err(ResponseError::NotLeaderOrFollower),
            "led here by the image, but not hosted (yet)"
        );
        assert_eq!(
            resolved(OFFSETS_TOPIC, 0),
            Err(ResponseError::InvalidTopicException)
        );
    }

    #[tokio::test]
    async fn one_replica_is_done_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let (_manager, partition) = led(dir.path(), vec![ME], 10);
        let (_sender, images) = watch::channel(Arc::new(image_with(&[ME], Vec::new())));
        partition.delete_records(4).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let low = wait_for_low_watermark(&partition, 4, images, deadline).await;
        assert_eq!(low, Ok(4));
    }

    #[tokio::test]
    async fn the_wait_ends_when_every_live_follower_reports_the_new_log_start() {
        let dir = tempfile::tempdir().unwrap();
        let (_manager, partition) = led(dir.path(), vec![ME, 2, 3], 10);
        let (images_sender, images) = watch::channel(Arc::new(image_with(&[ME, 2, 3], Vec::new())));
        partition.delete_records(6).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let waiting = {
            let partition = partition.clone();
            tokio::spawn(
                async move { wait_for_low_watermark(&partition, 6, images, deadline).await },
            )
        };
        tokio::task::yield_now().await;
        partition.record_follower_fetch(2, 10, 6, 0).unwrap();
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "follower 3 still has the records");

        // Broker 3 is fenced: it no longer counts.
        let mut fenced = image_with(&[ME, 2, 3], Vec::new());
        fenced.fenced_brokers.insert(3);
        images_sender.send_replace(Arc::new(fenced));
        assert_eq!(waiting.await.unwrap(), Ok(6));
    }

    #[tokio::test]
    async fn a_follower_that_never_catches_up_times_the_wait_out() {
        let dir = tempfile::tempdir().unwrap();
        let (_manager, partition) = led(dir.path(), vec![ME, 2], 10);
        let (_sender, images) = watch::channel(Arc::new(image_with(&[ME, 2], Vec::new())));
        partition.delete_records(6).unwrap();
        let deadline = Instant::now() + Duration::from_millis(200);
        let low = wait_for_low_watermark(&partition, 6, images, deadline).await;
        assert_eq!(low, Err(ResponseError::RequestTimedOut));
    }

    #[tokio::test]
    async fn losing_leadership_ends_the_wait() {
        let dir = tempfile::tempdir().unwrap();
        let (_manager, partition) = led(dir.path(), vec![ME, 2], 10);
        let (_sender, images) = watch::channel(Arc::new(image_with(&[ME, 2], Vec::new())));
        partition.delete_records(6).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let waiting = {
            let partition = partition.clone();
            tokio::spawn(
                async move { wait_for_low_watermark(&partition, 6, images, deadline).await },
            )
        };
        tokio::task::yield_now().await;
        let mut record = PartitionRecord::new(vec![2, ME]);
        record.leader_epoch = 1;
        partition.apply_record(&record, ME, 0);
        assert_eq!(
            waiting.await.unwrap(),
            Err(ResponseError::NotLeaderOrFollower)
        );
    }
}
