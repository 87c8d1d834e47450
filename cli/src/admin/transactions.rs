//! Transactions: FindCoordinator (transaction keys), ListTransactions,
//! DescribeTransactions, DescribeProducers, and the WriteTxnMarkers ABORT
//! that ends a hanging transaction, as `kafka-transactions.sh` sends them.

use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{
    DescribeProducersRequest, DescribeTransactionsRequest, ListTransactionsRequest, ProducerId,
    TopicName, TransactionalId, WriteTxnMarkersRequest,
};
use serde::Serialize;

use super::{name, Admin, Target};
use crate::error::{CliError, Result};

/// A transaction as ListTransactions reports it.
#[derive(Clone, Debug, Serialize)]
pub struct ListedTransaction {
    pub transactional_id: String,
    pub producer_id: i64,
    pub state: String,
    pub coordinator: i32,
}

/// A transaction as its coordinator describes it.
#[derive(Clone, Debug, Serialize)]
pub struct TransactionDescription {
    pub transactional_id: String,
    pub coordinator: i32,
    pub state: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    /// -1 when no transaction is open.
    pub start_time_ms: i64,
    pub partitions: Vec<(String, i32)>,
}

/// A producer with state in a partition (DescribeProducers).
#[derive(Clone, Debug, Serialize)]
pub struct ActiveProducer {
    pub producer_id: i64,
    pub producer_epoch: i32,
    pub last_sequence: i32,
    pub last_timestamp: i64,
    pub coordinator_epoch: i32,
    /// Where its open transaction starts; -1 for none.
    pub current_txn_start_offset: i64,
}

impl Admin {
    /// The broker coordinating the transactional id `txn_id`.
    pub async fn transaction_coordinator(&mut self, txn_id: &str) -> Result<i32> {
        self.find_coordinator(txn_id, 1, || {
            format!("finding the coordinator of transactional id {txn_id}")
        })
        .await
    }

    /// Every transaction every broker coordinates, filtered by state names,
    /// producer ids and (v1+) how long they have been open at least.
    pub async fn list_transactions(
        &mut self,
        brokers: &[i32],
        states: &[String],
        producer_ids: &[i64],
        min_duration_ms: Option<i64>,
    ) -> Result<Vec<ListedTransaction>> {
        let mut listed = Vec::new();
        for &broker in brokers {
            let target = Target::Broker(broker);
            let mut request = ListTransactionsRequest::default();
            request.state_filters = states.iter().map(|s| name(s)).collect();
            request.producer_id_filters = producer_ids.iter().map(|&p| ProducerId(p)).collect();
            request.duration_filter = min_duration_ms.unwrap_or(-1);
            let cap = if min_duration_ms.is_some() { 1 } else { 0 };
            let version = self.version::<ListTransactionsRequest>(target, 1).await?;
            if version < cap {
                return Err(CliError::failed(
                    format!(
                        "{}: ListTransactions v{version} has no duration filter",
                        self.label(target)
                    ),
                    "leave out --duration-ms, or upgrade the cluster",
                ));
            }
            let response = self.send(target, &request, version).await?;
            self.check(
                target,
                || "listing transactions".into(),
                response.error_code,
                None,
            )?;
            listed.extend(
                response
                    .transaction_states
                    .into_iter()
                    .map(|t| ListedTransaction {
                        transactional_id: t.transactional_id.0.to_string(),
                        producer_id: t.producer_id.0,
                        state: t.transaction_state.to_string(),
                        coordinator: broker,
                    }),
            );
        }
        listed.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        Ok(listed)
    }

    pub async fn describe_transaction(&mut self, txn_id: &str) -> Result<TransactionDescription> {
        let coordinator = self.transaction_coordinator(txn_id).await?;
        let target = Target::Broker(coordinator);
        let mut request = DescribeTransactionsRequest::default();
        request.transactional_ids = vec![TransactionalId(name(txn_id))];
        let response = self.call(target, &request, 0).await?;
        let Some(t) = response.transaction_states.into_iter().next() else {
            return Err(CliError::failed(
                format!(
                    "{}: no description of {txn_id} in the answer",
                    self.label(target)
                ),
                "retry; the coordinator may have moved",
            ));
        };
        self.check(
            target,
            || format!("describing transactional id {txn_id}"),
            t.error_code,
            None,
        )?;
        let mut partitions: Vec<(String, i32)> = t
            .topics
            .iter()
            .flat_map(|topic| {
                let name = topic.topic.0.to_string();
                topic.partitions.iter().map(move |&p| (name.clone(), p))
            })
            .collect();
        partitions.sort();
        Ok(TransactionDescription {
            transactional_id: txn_id.to_string(),
            coordinator,
            state: t.transaction_state.to_string(),
            producer_id: t.producer_id.0,
            producer_epoch: t.producer_epoch,
            timeout_ms: t.transaction_timeout_ms,
            start_time_ms: t.transaction_start_time_ms,
            partitions,
        })
    }

    /// The producers with state in `topic`-`partition`, from its `leader`.
    pub async fn describe_producers(
        &mut self,
        leader: i32,
        topic: &str,
        partition: i32,
    ) -> Result<Vec<ActiveProducer>> {
        let target = Target::Broker(leader);
        let mut request = DescribeProducersRequest::default();
        let mut t = kafka_protocol::messages::describe_producers_request::TopicRequest::default();
        t.name = TopicName(name(topic));
        t.partition_indexes = vec![partition];
        request.topics = vec![t];
        let response = self.call(target, &request, 0).await?;
        let Some(p) = response
            .topics
            .into_iter()
            .flat_map(|t| t.partitions)
            .find(|p| p.partition_index == partition)
        else {
            return Err(CliError::failed(
                format!("{}: no answer for {topic}-{partition}", self.label(target)),
                "check the topic and partition with `tideline topic describe`",
            ));
        };
        self.check(
            target,
            || format!("describing the producers of {topic}-{partition}"),
            p.error_code,
            p.error_message.as_ref(),
        )?;
        Ok(p.active_producers
            .into_iter()
            .map(|a| ActiveProducer {
                producer_id: a.producer_id.0,
                producer_epoch: a.producer_epoch,
                last_sequence: a.last_sequence,
                last_timestamp: a.last_timestamp,
                coordinator_epoch: a.coordinator_epoch,
                current_txn_start_offset: a.current_txn_start_offset,
            })
            .collect())
    }

    /// Writes an ABORT marker for `producer` to `topic`-`partition` on its
    /// `leader`, ending the producer's open transaction there.
    pub async fn abort_transaction(
        &mut self,
        leader: i32,
        topic: &str,
        partition: i32,
        producer: &ActiveProducer,
    ) -> Result<()> {
        let target = Target::Broker(leader);
        let mut marker = WritableTxnMarker::default();
        marker.producer_id = ProducerId(producer.producer_id);
        marker.producer_epoch = producer.producer_epoch as i16;
        marker.transaction_result = false;
        marker.coordinator_epoch = producer.coordinator_epoch;
        let mut t = WritableTxnMarkerTopic::default();
        t.name = TopicName(name(topic));
        t.partition_indexes = vec![partition];
        marker.topics = vec![t];
        let mut request = WriteTxnMarkersRequest::default();
        request.markers = vec![marker];
        let response = self.call(target, &request, 1).await?;
        let code = response
            .markers
            .iter()
            .flat_map(|m| &m.topics)
            .flat_map(|t| &t.partitions)
            .map(|p| p.error_code)
            .find(|&c| c != 0)
            .unwrap_or(0);
        self.check(
            target,
            || format!("writing an ABORT marker to {topic}-{partition}"),
            code,
            None,
        )
    }
}
