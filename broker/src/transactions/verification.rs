//! KIP-890 part 1, the partition leader's side: before the first
//! transactional batch of a producer is appended to a partition, the
//! leader asks the producer's transaction coordinator whether the
//! partition is part of its open transaction (AddPartitionsToTxn v4,
//! `verify_only`). A late or zombie write, whose transaction was already
//! ended, is refused instead of opening a transaction nobody will close.
//!
//! The coordinator may be this broker (asked directly) or another one
//! (asked over a pooled connection, so concurrent verifications do not
//! wait for each other).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, ProducerId, TopicName, TransactionalId};
use parking_lot::Mutex;
use tideline_protocol::KafkaClient;

use super::{TransactionCoordinator, TRANSACTION_STATE_TOPIC};
use crate::coordinator::offsets_format::partition_for;
use crate::error::ResponseError;
use crate::handlers::str_bytes;
use crate::metadata::MetadataQuorum;

const VERIFY_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a verification failed, in the three kinds Kafka tells clients
/// apart; each request answers every kind with its own error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerificationFailure {
    /// Coordinator trouble (moving, loading, busy, slow): the client
    /// retries.
    Retriable,
    /// A newer producer epoch holds the transactional id.
    Fenced,
    /// The partition (or group) is not part of the open transaction.
    NotInTransaction,
}

impl VerificationFailure {
    pub fn of(e: ResponseError) -> VerificationFailure {
        match e {
            ResponseError::NotCoordinator
            | ResponseError::CoordinatorNotAvailable
            | ResponseError::CoordinatorLoadInProgress
            | ResponseError::ConcurrentTransactions
            | ResponseError::RequestTimedOut => VerificationFailure::Retriable,
            ResponseError::ProducerFenced | ResponseError::InvalidProducerEpoch => {
                VerificationFailure::Fenced
            }
            _ => VerificationFailure::NotInTransaction,
        }
    }
}

/// Idle connections to other brokers, by broker id.
pub(super) struct PeerPool {
    quorum: Arc<MetadataQuorum>,
    node_id: i32,
    idle: Mutex<HashMap<i32, Vec<KafkaClient>>>,
}

impl PeerPool {
    pub(super) fn new(quorum: Arc<MetadataQuorum>, node_id: i32) -> PeerPool {
        PeerPool {
            quorum,
            node_id,
            idle: Mutex::new(HashMap::new()),
        }
    }

    async fn send(
        &self,
        broker: i32,
        request: &AddPartitionsToTxnRequest,
    ) -> anyhow::Result<kafka_protocol::messages::AddPartitionsToTxnResponse> {
        let pooled = self.idle.lock().get_mut(&broker).and_then(Vec::pop);
        let mut client = match pooled {
            Some(client) => client,
            None => self.connect(broker).await?,
        };
        let response = client.send(request, 4, VERIFY_TIMEOUT).await?;
        // Only a client whose request completed can be used again.
        self.idle.lock().entry(broker).or_default().push(client);
        Ok(response)
    }

    async fn connect(&self, broker: i32) -> anyhow::Result<KafkaClient> {
        let image = self.quorum.image();
        let endpoint = image
            .brokers
            .get(&broker)
            .ok_or_else(|| anyhow::anyhow!("broker {broker} is not registered"))?;
        let address = format!("{}:{}", endpoint.host, endpoint.port);
        let stream = tokio::time::timeout(
            Duration::from_secs(5),
            crate::util::connect_to_peer(&address),
        )
        .await
        .map_err(|_| anyhow::anyhow!("connecting to {address} timed out"))??;
        KafkaClient::over(stream, &format!("tideline-txn-verify-{}", self.node_id))
    }
}

impl TransactionCoordinator {
    /// Whether each of `partitions` is in the open transaction of
    /// `txn_id`'s producer, as its coordinator says. Errors are those the
    /// coordinator gives (NOT_COORDINATOR and the like when it cannot be
    /// asked now).
    pub async fn verify(
        &self,
        txn_id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
    ) -> Vec<Result<(), ResponseError>> {
        let all = |e: ResponseError| partitions.iter().map(|_| Err(e)).collect();
        match self.verify_partitions(txn_id, producer_id, epoch, partitions) {
            Ok(results) => return results,
            Err(ResponseError::NotCoordinator | ResponseError::CoordinatorNotAvailable) => {}
            Err(e) => return all(e),
        }
        let image = self.markers.quorum().image();
        let Some(topic) = image.topics.get(TRANSACTION_STATE_TOPIC) else {
            return all(ResponseError::CoordinatorNotAvailable);
        };
        let index = partition_for(txn_id, topic.partitions.len() as i32);
        let leader = topic.partitions[index as usize].leader;
        if leader < 0 || leader == self.node_id {
            return all(ResponseError::CoordinatorNotAvailable);
        }
        let mut txn = AddPartitionsToTxnTransaction::default();
        txn.transactional_id = TransactionalId(str_bytes(txn_id));
        txn.producer_id = ProducerId(producer_id);
        txn.producer_epoch = epoch;
        txn.verify_only = true;
        for (name, partition) in partitions {
            match txn.topics.iter_mut().find(|t| t.name.0.as_str() == name) {
                Some(t) => t.partitions.push(*partition),
                None => {
                    let mut t = AddPartitionsToTxnTopic::default();
                    t.name = TopicName(str_bytes(name.clone()));
                    t.partitions.push(*partition);
                    txn.topics.push(t);
                }
            }
        }
        let mut request = AddPartitionsToTxnRequest::default();
        request.transactions.push(txn);
        let response = match self.peers.send(leader, &request).await {
            Ok(response) => response,
            Err(e) => {
                tracing::debug!(coordinator = leader, error = %e, "cannot verify a transaction");
                return all(ResponseError::CoordinatorNotAvailable);
            }
        };
        if let Some(e) = ResponseError::try_from_code(response.error_code) {
            return all(e);
        }
        let mut codes: HashMap<(String, i32), i16> = HashMap::new();
        for result in response.results_by_transaction {
            for topic in result.topic_results {
                for p in topic.results_by_partition {
                    codes.insert(
                        (topic.name.0.to_string(), p.partition_index),
                        p.partition_error_code,
                    );
                }
            }
        }
        partitions
            .iter()
            .map(|tp| match codes.get(tp) {
                Some(0) => Ok(()),
                Some(code) => Err(ResponseError::try_from_code(*code)
                    .unwrap_or(ResponseError::UnknownServerError)),
                None => Err(ResponseError::CoordinatorNotAvailable),
            })
            .collect()
    }
}
