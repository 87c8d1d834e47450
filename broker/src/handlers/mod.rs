//! One module per API family; each reads top to bottom: decode → validate →
//! act → respond. [`handle`] routes a decoded request to its handler.

pub mod api_versions;
pub mod cluster;
pub mod configs;
pub mod coordinator;
pub mod delete_records;
pub mod describe_producers;
pub mod elections;
pub mod fetch;
pub mod group_offsets;
pub mod groups;
pub mod leader_epochs;
pub mod list_offsets;
pub mod log_dirs;
pub mod metadata;
pub mod produce;
pub mod producer_ids;
pub mod reassignments;
pub mod topics;
pub mod transactions;
pub mod txn_markers;

use std::net::SocketAddr;

use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseKind};
use kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;

/// The APIs this broker implements, with the version ranges it accepts
/// (Apache Kafka 4.0's baselines and up to what the codec knows).
pub const SUPPORTED_APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 13),
    (ApiKey::Fetch, 4, 18),
    (ApiKey::ListOffsets, 1, 10),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 6),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::Metadata, 0, 13),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 2),
    (ApiKey::DescribeLogDirs, 1, 4),
    (ApiKey::OffsetForLeaderEpoch, 0, 4),
    (ApiKey::ElectLeaders, 0, 2),
    (ApiKey::AlterPartitionReassignments, 0, 1),
    (ApiKey::ListPartitionReassignments, 0, 0),
    (ApiKey::AddPartitionsToTxn, 0, 5),
    (ApiKey::AddOffsetsToTxn, 0, 4),
    (ApiKey::EndTxn, 0, 5),
    (ApiKey::TxnOffsetCommit, 0, 4),
    (ApiKey::DescribeTransactions, 0, 0),
    (ApiKey::ListTransactions, 0, 2),
    (ApiKey::WriteTxnMarkers, 1, 1),
    (ApiKey::DescribeProducers, 0, 0),
    (ApiKey::UnregisterBroker, 0, 0),
];

pub fn is_supported(api_key: ApiKey, version: i16) -> bool {
    SUPPORTED_APIS
        .iter()
        .any(|&(key, min, max)| key == api_key && (min..=max).contains(&version))
}

/// Handles one request; `None` when no response is due (acks=0 produce).
pub async fn handle(
    broker: &Broker,
    header: &RequestHeader,
    peer: SocketAddr,
    request: RequestKind,
) -> Option<ResponseKind> {
    let version = header.request_api_version;
    let client_id = header.client_id.as_deref().unwrap_or("");
    let response: ResponseKind = match request {
        RequestKind::ApiVersions(_) => api_versions::handle().into(),
        RequestKind::Metadata(r) => metadata::handle(broker, r, version).await.into(),
        RequestKind::Produce(r) => {
            return produce::handle(broker, r, version).await.map(Into::into)
        }
        RequestKind::Fetch(r) => fetch::handle(broker, r, version)
            .await
            .read_into_memory()
            .into(),
        RequestKind::FindCoordinator(r) => coordinator::find_coordinator(broker, r, version)
            .await
            .into(),
        RequestKind::JoinGroup(r) => groups::join_group(broker, r, version, client_id, peer)
            .await
            .into(),
        RequestKind::SyncGroup(r) => groups::sync_group(broker, r, version).await.into(),
        RequestKind::Heartbeat(r) => groups::heartbeat(broker, r).into(),
        RequestKind::LeaveGroup(r) => groups::leave_group(broker, r, version).into(),
        RequestKind::ListGroups(r) => groups::list_groups(broker, r, version).into(),
        RequestKind::DescribeGroups(r) => groups::describe_groups(broker, r, version).into(),
        RequestKind::DeleteGroups(r) => groups::delete_groups(broker, r).into(),
        RequestKind::OffsetCommit(r) => group_offsets::offset_commit(broker, r, version)
            .await
            .into(),
        RequestKind::OffsetFetch(r) => group_offsets::offset_fetch(broker, r, version).into(),
        RequestKind::OffsetDelete(r) => group_offsets::offset_delete(broker, r).into(),
        RequestKind::ListOffsets(r) => list_offsets::handle(broker, r, version).await.into(),
        RequestKind::CreateTopics(r) => topics::create_topics(broker, r, version).await.into(),
        RequestKind::DeleteTopics(r) => topics::delete_topics(broker, r).await.into(),
        RequestKind::DeleteRecords(r) => delete_records::delete_records(broker, r).await.into(),
        RequestKind::CreatePartitions(r) => topics::create_partitions(broker, r).await.into(),
        RequestKind::DescribeConfigs(r) => configs::describe(broker, r, version).into(),
        RequestKind::AlterConfigs(r) => configs::alter(broker, r).await.into(),
        RequestKind::IncrementalAlterConfigs(r) => {
            configs::incremental_alter(broker, r).await.into()
        }
        RequestKind::DescribeCluster(r) => cluster::describe_cluster(broker, r).into(),
        RequestKind::DescribeLogDirs(r) => log_dirs::describe_log_dirs(broker, r, version).into(),
        RequestKind::AlterPartitionReassignments(r) => {
            reassignments::alter_partition_reassignments(broker, r, version)
                .await
                .into()
        }
        RequestKind::ListPartitionReassignments(r) => {
            reassignments::list_partition_reassignments(broker, r).into()
        }
        RequestKind::ElectLeaders(r) => elections::elect_leaders(broker, r, version).await.into(),
        RequestKind::OffsetForLeaderEpoch(r) => {
            leader_epochs::offsets_for_leader_epoch(broker, r).into()
        }
        RequestKind::InitProducerId(r) => producer_ids::init_producer_id(broker, r, version)
            .await
            .into(),
        RequestKind::AddPartitionsToTxn(r) => {
            transactions::add_partitions_to_txn(broker, r, version)
                .await
                .into()
        }
        RequestKind::AddOffsetsToTxn(r) => transactions::add_offsets_to_txn(broker, r, version)
            .await
            .into(),
        RequestKind::EndTxn(r) => transactions::end_txn(broker, r, version).await.into(),
        RequestKind::TxnOffsetCommit(r) => group_offsets::txn_offset_commit(broker, r, version)
            .await
            .into(),
        RequestKind::DescribeTransactions(r) => {
            transactions::describe_transactions(broker, r).into()
        }
        RequestKind::ListTransactions(r) => {
            transactions::list_transactions(broker, r, version).into()
        }
        RequestKind::DescribeProducers(r) => {
            describe_producers::describe_producers(broker, r).into()
        }
        RequestKind::WriteTxnMarkers(r) => txn_markers::write_txn_markers(broker, r).await.into(),
        RequestKind::UnregisterBroker(r) => cluster::unregister_broker(broker, r).await.into(),
        other => {
            // `is_supported` filters requests before decoding, so this is a bug.
            tracing::error!(request = ?std::mem::discriminant(&other), "request without a handler");
            return None;
        }
    };
    Some(response)
}

pub fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

pub fn message(error: &crate::error::ApiError) -> Option<StrBytes> {
    Some(str_bytes(error.message.clone()))
}
