//! The transaction coordinator's APIs: InitProducerId with a
//! transactional id, AddPartitionsToTxn (v0-3 from producers; v4+ batched
//! from partition leaders, `verify_only` for KIP-890 part 1),
//! AddOffsetsToTxn, EndTxn, DescribeTransactions and ListTransactions.
//! Each decodes, asks `transactions::TransactionCoordinator`, and answers
//! with Kafka's error codes, including its downgrades for old versions:
//! PRODUCER_FENCED did not exist before KIP-588, so older requests get
//! INVALID_PRODUCER_EPOCH.

use std::collections::BTreeSet;

use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::describe_transactions_response::{self as described, TopicData};
use kafka_protocol::messages::list_transactions_response as listed;
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, DescribeTransactionsRequest, DescribeTransactionsResponse,
    EndTxnRequest, EndTxnResponse, InitProducerIdRequest, InitProducerIdResponse,
    ListTransactionsRequest, ListTransactionsResponse, ProducerId, TopicName, TransactionalId,
};

use super::str_bytes;
use crate::broker::Broker;
use crate::coordinator::groups::OFFSETS_TOPIC;
use crate::coordinator::offsets_format::partition_for;
use crate::error::{ApiError, ResponseError};
use crate::transactions::metadata::TxnState;
use crate::transactions::ListFilter;

/// PRODUCER_FENCED as a request of `version` understands it.
fn fenced_for(error: ResponseError, version: i16, first_version_with_fenced: i16) -> i16 {
    if error == ResponseError::ProducerFenced && version < first_version_with_fenced {
        ResponseError::InvalidProducerEpoch.code()
    } else {
        error.code()
    }
}

/// InitProducerId for a transactional id (the idempotent case is in
/// `producer_ids`).
pub async fn init_producer_id(
    broker: &Broker,
    request: &InitProducerIdRequest,
    txn_id: &str,
    version: i16,
) -> InitProducerIdResponse {
    let mut response = InitProducerIdResponse::default();
    response.producer_id = ProducerId(-1);
    response.producer_epoch = -1;
    let expected =
        (request.producer_id.0 >= 0).then_some((request.producer_id.0, request.producer_epoch));
    let result = broker
        .transactions
        .init_producer_id(txn_id, request.transaction_timeout_ms, expected, || {
            broker.next_producer_id()
        })
        .await;
    match result {
        Ok((id, epoch)) => {
            response.producer_id = ProducerId(id);
            response.producer_epoch = epoch;
        }
        Err(e) => {
            log_refusal("InitProducerId", txn_id, &e);
            response.error_code = fenced_for(e.kind, version, 4);
        }
    }
    response
}

pub async fn add_partitions_to_txn(
    broker: &Broker,
    request: AddPartitionsToTxnRequest,
    version: i16,
) -> AddPartitionsToTxnResponse {
    let mut response = AddPartitionsToTxnResponse::default();
    if version <= 3 {
        let partitions = request
            .v3_and_below_topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| (t.name.0.to_string(), *p)))
            .collect::<Vec<_>>();
        response.results_by_topic_v3_and_below = add_for_producer(
            broker,
            &request.v3_and_below_transactional_id.0,
            request.v3_and_below_producer_id.0,
            request.v3_and_below_producer_epoch,
            partitions,
            version,
        )
        .await;
        return response;
    }
    // v4+: batched, from a partition leader.
    for txn in request.transactions {
        let partitions: Vec<(String, i32)> = txn
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| (t.name.0.to_string(), *p)))
            .collect();
        let id = txn.transactional_id.0.to_string();
        let results = if txn.verify_only {
            match broker.transactions.verify_partitions(
                &id,
                txn.producer_id.0,
                txn.producer_epoch,
                &partitions,
            ) {
                Ok(checked) => partitions
                    .iter()
                    .cloned()
                    .zip(checked.into_iter().map(|r| r.err().map_or(0, |e| e.code())))
                    .collect(),
                Err(e) => partitions.iter().map(|tp| (tp.clone(), e.code())).collect(),
            }
        } else {
            let topics = add_for_producer(
                broker,
                &id,
                txn.producer_id.0,
                txn.producer_epoch,
                partitions,
                version,
            )
            .await;
            let mut result = AddPartitionsToTxnResult::default();
            result.transactional_id = txn.transactional_id.clone();
            result.topic_results = topics;
            response.results_by_transaction.push(result);
            continue;
        };
        let mut result = AddPartitionsToTxnResult::default();
        result.transactional_id = TransactionalId(str_bytes(id));
        result.topic_results = topic_results(results);
        response.results_by_transaction.push(result);
    }
    response
}

/// Adds partitions to a producer's transaction; per-partition errors as
/// Kafka gives them: unknown partitions fail with UNKNOWN_TOPIC_OR_PARTITION
/// and the others with OPERATION_NOT_ATTEMPTED.
async fn add_for_producer(
    broker: &Broker,
    txn_id: &str,
    producer_id: i64,
    epoch: i16,
    partitions: Vec<(String, i32)>,
    version: i16,
) -> Vec<AddPartitionsToTxnTopicResult> {
    let image = broker.image();
    let unknown: BTreeSet<(String, i32)> = partitions
        .iter()
        .filter(|(t, p)| {
            image
                .topics
                .get(t)
                .is_none_or(|topic| *p < 0 || *p as usize >= topic.partitions.len())
        })
        .cloned()
        .collect();
    let codes: Vec<((String, i32), i16)> = if !unknown.is_empty() {
        partitions
            .into_iter()
            .map(|tp| {
                let code = if unknown.contains(&tp) {
                    ResponseError::UnknownTopicOrPartition
                } else {
                    ResponseError::OperationNotAttempted
                };
                (tp, code.code())
            })
            .collect()
    } else {
        let set: BTreeSet<(String, i32)> = partitions.iter().cloned().collect();
        let code = match broker
            .transactions
            .add_partitions(txn_id, producer_id, epoch, set)
            .await
        {
            Ok(()) => 0,
            Err(e) => {
                log_refusal("AddPartitionsToTxn", txn_id, &ApiError::new(e, ""));
                fenced_for(e, version, 2)
            }
        };
        partitions.into_iter().map(|tp| (tp, code)).collect()
    };
    topic_results(codes)
}

fn topic_results(codes: Vec<((String, i32), i16)>) -> Vec<AddPartitionsToTxnTopicResult> {
    let mut topics: Vec<AddPartitionsToTxnTopicResult> = Vec::new();
    for ((topic, partition), code) in codes {
        let mut result = AddPartitionsToTxnPartitionResult::default();
        result.partition_index = partition;
        result.partition_error_code = code;
        match topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
            Some(t) => t.results_by_partition.push(result),
            None => {
                let mut t = AddPartitionsToTxnTopicResult::default();
                t.name = TopicName(str_bytes(topic));
                t.results_by_partition.push(result);
                topics.push(t);
            }
        }
    }
    topics
}

/// AddOffsetsToTxn: the group's `__consumer_offsets` partition joins the
/// transaction, so its TxnOffsetCommit gets a marker too.
pub async fn add_offsets_to_txn(
    broker: &Broker,
    request: AddOffsetsToTxnRequest,
    version: i16,
) -> AddOffsetsToTxnResponse {
    let mut response = AddOffsetsToTxnResponse::default();
    let txn_id = request.transactional_id.0.to_string();
    // The offsets topic may not exist yet: FindCoordinator for the group
    // creates it, as the producer's next step would anyway.
    if let Err(e) = super::coordinator::locate_group_coordinator(broker, &request.group_id.0).await
    {
        response.error_code = e.code();
        return response;
    }
    let Some(num) = broker
        .image()
        .topics
        .get(OFFSETS_TOPIC)
        .map(|t| t.partitions.len() as i32)
    else {
        response.error_code = ResponseError::CoordinatorNotAvailable.code();
        return response;
    };
    let partition = (
        OFFSETS_TOPIC.to_string(),
        partition_for(&request.group_id.0, num),
    );
    if let Err(e) = broker
        .transactions
        .add_partitions(
            &txn_id,
            request.producer_id.0,
            request.producer_epoch,
            BTreeSet::from([partition]),
        )
        .await
    {
        log_refusal("AddOffsetsToTxn", &txn_id, &ApiError::new(e, ""));
        response.error_code = fenced_for(e, version, 2);
    }
    response
}

pub async fn end_txn(broker: &Broker, request: EndTxnRequest, version: i16) -> EndTxnResponse {
    let mut response = EndTxnResponse::default();
    response.producer_id = ProducerId(-1);
    response.producer_epoch = -1;
    let txn_id = request.transactional_id.0.to_string();
    let result = broker
        .transactions
        .end_txn(
            &txn_id,
            request.producer_id.0,
            request.producer_epoch,
            request.committed,
            version >= 5,
            || broker.next_producer_id(),
        )
        .await;
    match result {
        Ok((id, epoch)) => {
            if version >= 5 {
                response.producer_id = ProducerId(id);
                response.producer_epoch = epoch;
            }
        }
        Err(e) => {
            log_refusal("EndTxn", &txn_id, &e);
            response.error_code = fenced_for(e.kind, version, 2);
        }
    }
    response
}

pub fn describe_transactions(
    broker: &Broker,
    request: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let mut response = DescribeTransactionsResponse::default();
    for id in request.transactional_ids {
        let mut state = described::TransactionState::default();
        state.transactional_id = id.clone();
        state.producer_id = ProducerId(-1);
        state.producer_epoch = -1;
        state.transaction_start_time_ms = -1;
        state.transaction_state = str_bytes("");
        match broker.transactions.describe(&id.0) {
            Ok(txn) => {
                state.transaction_state = str_bytes(txn.state.name());
                state.transaction_timeout_ms = txn.timeout_ms;
                state.transaction_start_time_ms = txn.start_ms;
                state.producer_id = ProducerId(txn.producer_id);
                state.producer_epoch = txn.producer_epoch;
                for (topic, partition) in txn.partitions {
                    match state.topics.last_mut() {
                        Some(t) if t.topic.0.as_str() == topic => t.partitions.push(partition),
                        _ => {
                            let mut t = TopicData::default();
                            t.topic = TopicName(str_bytes(topic));
                            t.partitions.push(partition);
                            state.topics.push(t);
                        }
                    }
                }
            }
            Err(e) => state.error_code = e.code(),
        }
        response.transaction_states.push(state);
    }
    response
}

pub fn list_transactions(
    broker: &Broker,
    request: ListTransactionsRequest,
    version: i16,
) -> ListTransactionsResponse {
    let mut response = ListTransactionsResponse::default();
    let mut filter = ListFilter {
        producer_ids: request.producer_id_filters.iter().map(|p| p.0).collect(),
        min_duration_ms: if version >= 1 {
            request.duration_filter
        } else {
            -1
        },
        ..ListFilter::default()
    };
    for name in &request.state_filters {
        match TxnState::from_name(name) {
            Some(state) => filter.states.push(state),
            None => response.unknown_state_filters.push(name.clone()),
        }
    }
    if !response.unknown_state_filters.is_empty() && filter.states.is_empty() {
        // Only unknown states asked for: nothing can match.
        return response;
    }
    if let Some(pattern) = request.transactional_id_pattern.filter(|_| version >= 2) {
        match regex::Regex::new(&format!("^(?:{pattern})$")) {
            Ok(re) => filter.id_pattern = Some(re),
            Err(_) => {
                response.error_code = ResponseError::InvalidRegularExpression.code();
                return response;
            }
        }
    }
    for txn in broker.transactions.list(&filter) {
        let mut state = listed::TransactionState::default();
        state.transactional_id = TransactionalId(str_bytes(txn.transactional_id));
        state.producer_id = ProducerId(txn.producer_id);
        state.transaction_state = str_bytes(txn.state.name());
        response.transaction_states.push(state);
    }
    response
}

fn log_refusal(api: &str, txn_id: &str, e: &ApiError) {
    tracing::debug!(api, transactional_id = txn_id, error = %e.kind, message = %e.message, "transaction request refused");
}
