//! Sending WriteTxnMarkers to partition leaders, this broker included
//! (through its own listener, so every marker takes the same path).
//!
//! One sender task per destination broker owns one connection and sends
//! one request at a time, carrying every marker queued for that broker
//! since the last one: markers of concurrent transactions share a request
//! and the leader's replication wait, which is how marker throughput grows
//! with load instead of paying a round trip each (Kafka's
//! `TransactionMarkerChannelManager` drains its queues the same way).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{ProducerId, TopicName, WriteTxnMarkersRequest};
use parking_lot::Mutex;
use tideline_protocol::KafkaClient;
use tokio::sync::{mpsc, oneshot};

use crate::error::ResponseError;
use crate::handlers::str_bytes;
use crate::metadata::MetadataQuorum;

/// Markers are waited for on the leaders (acks=all), so a request may take
/// as long as a replication round; beyond this the sender gives up and the
/// completion retries.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Markers per request at most.
const MAX_MARKERS_PER_REQUEST: usize = 1000;

/// One transaction's marker for the partitions one broker leads.
pub struct Marker {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub commit: bool,
    pub coordinator_epoch: i32,
    pub partitions: BTreeSet<(String, i32)>,
}

/// How a partition's marker went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkerOutcome {
    /// Written (or not needed: the topic is gone).
    Done,
    /// Try again later (no leader, not leader any more, not replicated in time).
    Retry,
    /// This marker can never be written: a newer producer epoch or
    /// coordinator epoch is already there. The completion stops.
    Fenced,
}

/// Each partition's error code, or why the request failed as a whole.
type Reply = Result<Vec<((String, i32), i16)>, String>;

struct Job {
    marker: Marker,
    reply: oneshot::Sender<Reply>,
}

pub struct MarkerSender {
    quorum: Arc<MetadataQuorum>,
    node_id: i32,
    queues: Mutex<HashMap<i32, mpsc::UnboundedSender<Job>>>,
}

impl MarkerSender {
    pub fn new(quorum: Arc<MetadataQuorum>, node_id: i32) -> MarkerSender {
        MarkerSender {
            quorum,
            node_id,
            queues: Mutex::new(HashMap::new()),
        }
    }

    pub fn quorum(&self) -> &Arc<MetadataQuorum> {
        &self.quorum
    }

    /// Writes one transaction's marker to every partition in `partitions`,
    /// on their current leaders, and says how each went.
    pub async fn write(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        coordinator_epoch: i32,
        partitions: &BTreeSet<(String, i32)>,
    ) -> Vec<((String, i32), MarkerOutcome)> {
        let image = self.quorum.image();
        let mut outcomes = Vec::new();
        let mut by_leader: BTreeMap<i32, BTreeSet<(String, i32)>> = BTreeMap::new();
        for tp in partitions {
            let Some(topic) = image.topics.get(&tp.0) else {
                // Deleted: nothing left to mark.
                outcomes.push((tp.clone(), MarkerOutcome::Done));
                continue;
            };
            match topic.partitions.get(tp.1 as usize) {
                None => outcomes.push((tp.clone(), MarkerOutcome::Done)),
                Some(p) if p.leader < 0 => outcomes.push((tp.clone(), MarkerOutcome::Retry)),
                Some(p) => {
                    by_leader.entry(p.leader).or_default().insert(tp.clone());
                }
            }
        }
        let sends = by_leader.into_iter().map(|(leader, partitions)| {
            let marker = Marker {
                producer_id,
                producer_epoch,
                commit,
                coordinator_epoch,
                partitions,
            };
            self.send(leader, marker)
        });
        for result in futures::future::join_all(sends).await {
            outcomes.extend(result);
        }
        outcomes
    }

    async fn send(&self, leader: i32, marker: Marker) -> Vec<((String, i32), MarkerOutcome)> {
        let partitions: Vec<(String, i32)> = marker.partitions.iter().cloned().collect();
        let (reply, answer) = oneshot::channel();
        self.queue(leader).send(Job { marker, reply }).ok();
        match answer.await {
            Ok(Ok(results)) => {
                let codes: HashMap<(String, i32), i16> = results.into_iter().collect();
                partitions
                    .into_iter()
                    .map(|tp| {
                        let outcome = match codes.get(&tp).copied() {
                            Some(0) => MarkerOutcome::Done,
                            Some(code) => outcome_of(code),
                            None => MarkerOutcome::Retry,
                        };
                        (tp, outcome)
                    })
                    .collect()
            }
            Ok(Err(e)) => {
                tracing::debug!(leader, error = %e, "cannot send transaction markers; retrying");
                partitions
                    .into_iter()
                    .map(|tp| (tp, MarkerOutcome::Retry))
                    .collect()
            }
            Err(_) => partitions
                .into_iter()
                .map(|tp| (tp, MarkerOutcome::Retry))
                .collect(),
        }
    }

    fn queue(&self, broker: i32) -> mpsc::UnboundedSender<Job> {
        let mut queues = self.queues.lock();
        if let Some(q) = queues.get(&broker).filter(|q| !q.is_closed()) {
            return q.clone();
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let context = SenderContext {
            quorum: self.quorum.clone(),
            node_id: self.node_id,
            broker,
        };
        tokio::spawn(run_sender(context, rx));
        queues.insert(broker, tx.clone());
        tx
    }
}

/// Kafka's reading of a partition's WriteTxnMarkers error.
fn outcome_of(code: i16) -> MarkerOutcome {
    match ResponseError::try_from_code(code) {
        None => MarkerOutcome::Done,
        Some(ResponseError::InvalidProducerEpoch | ResponseError::TransactionCoordinatorFenced) => {
            MarkerOutcome::Fenced
        }
        Some(_) => MarkerOutcome::Retry,
    }
}

struct SenderContext {
    quorum: Arc<MetadataQuorum>,
    node_id: i32,
    broker: i32,
}

async fn run_sender(context: SenderContext, mut jobs: mpsc::UnboundedReceiver<Job>) {
    let mut client: Option<KafkaClient> = None;
    while let Some(first) = jobs.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_MARKERS_PER_REQUEST {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let request = request_for(&batch);
        let result = match client.as_mut() {
            Some(c) => c.send(&request, 1, REQUEST_TIMEOUT).await,
            None => match connect(&context).await {
                Ok(mut c) => {
                    let sent = c.send(&request, 1, REQUEST_TIMEOUT).await;
                    client = Some(c);
                    sent
                }
                Err(e) => Err(e),
            },
        };
        match result {
            Ok(response) => {
                let mut results = response.markers.into_iter();
                for job in batch {
                    // Kafka answers the markers in request order.
                    let codes = results
                        .next()
                        .map(|m| {
                            m.topics
                                .into_iter()
                                .flat_map(|t| {
                                    let name = t.name.0.to_string();
                                    t.partitions.into_iter().map(move |p| {
                                        ((name.clone(), p.partition_index), p.error_code)
                                    })
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    let _ = job.reply.send(Ok(codes));
                }
            }
            Err(e) => {
                client = None;
                let message = e.to_string();
                for job in batch {
                    let _ = job.reply.send(Err(message.clone()));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

fn request_for(batch: &[Job]) -> WriteTxnMarkersRequest {
    let mut request = WriteTxnMarkersRequest::default();
    for job in batch {
        let m = &job.marker;
        let mut topics: Vec<WritableTxnMarkerTopic> = Vec::new();
        for (topic, partition) in &m.partitions {
            match topics.last_mut() {
                Some(t) if t.name.0.as_str() == topic => t.partition_indexes.push(*partition),
                _ => {
                    let mut t = WritableTxnMarkerTopic::default();
                    t.name = TopicName(str_bytes(topic.clone()));
                    t.partition_indexes.push(*partition);
                    topics.push(t);
                }
            }
        }
        let mut marker = WritableTxnMarker::default();
        marker.producer_id = ProducerId(m.producer_id);
        marker.producer_epoch = m.producer_epoch;
        marker.transaction_result = m.commit;
        marker.coordinator_epoch = m.coordinator_epoch;
        marker.topics = topics;
        request.markers.push(marker);
    }
    request
}

async fn connect(context: &SenderContext) -> anyhow::Result<KafkaClient> {
    let image = context.quorum.image();
    let broker = image
        .brokers
        .get(&context.broker)
        .ok_or_else(|| anyhow::anyhow!("broker {} is not registered", context.broker))?;
    let address = format!("{}:{}", broker.host, broker.port);
    let stream = tokio::time::timeout(
        Duration::from_secs(5),
        crate::util::connect_to_peer(&address),
    )
    .await
    .map_err(|_| anyhow::anyhow!("connecting to {address} timed out"))??;
    KafkaClient::over(stream, &format!("tideline-txn-markers-{}", context.node_id))
}
