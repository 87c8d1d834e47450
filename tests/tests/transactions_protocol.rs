//! Transactions over the raw protocol: the requests no well-behaved client
//! sends get the error codes Apache Kafka gives, and nothing they carry is
//! stored. A timeout above `transaction.max.timeout.ms`, EndTxn with no
//! transaction, a transactional batch for a partition that is not in the
//! transaction (refused by the KIP-890 verification, so it cannot leave a
//! hanging transaction), a fenced epoch, TxnOffsetCommit from a
//! generation or member the group does not have, and TxnOffsetCommit for a
//! group not added to the transaction, late or from a zombie (also
//! refused by the verification, so no offsets are left pending). And a
//! retried version 2 EndTxn, recognised after a crash too.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, EndTxnRequest, FindCoordinatorRequest,
    GroupId, InitProducerIdRequest, ListOffsetsRequest, OffsetFetchRequest, ProducerId, TopicName,
    TransactionalId, TxnOffsetCommitRequest,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use tideline_tests::wire::{produce_request, RawConn};
use tideline_tests::{create_topic, Broker, BrokerOpts};

const TOPIC: &str = "raw-txn";
const GROUP: &str = "raw-txn-group";

fn name(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn code(e: ResponseError) -> i16 {
    e.code()
}

/// FindCoordinator for a transactional id (key type 1), as a client asks
/// first; the first one creates `__transaction_state`.
fn find_coordinator(conn: &mut RawConn, txn_id: &str) {
    let request = FindCoordinatorRequest::default()
        .with_key_type(1)
        .with_coordinator_keys(vec![name(txn_id)]);
    wait_until("the transaction coordinator is found", || {
        let r = conn.request(&request, 4).expect("FindCoordinator");
        r.coordinators[0].error_code == 0
    });
}

/// InitProducerId for `txn_id`, retried while the coordinator is still
/// loading.
fn init(conn: &mut RawConn, txn_id: &str, timeout_ms: i32) -> (i16, i64, i16) {
    let request = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(name(txn_id))))
        .with_transaction_timeout_ms(timeout_ms)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let r = retried(
        || conn.request(&request, 4).expect("InitProducerId"),
        |r| r.error_code,
    );
    (r.error_code, r.producer_id.0, r.producer_epoch)
}

/// Sends a transaction request again while its answer is one a client
/// retries (the coordinator is moving, loading or busy), for up to 30 s.
fn retried<R>(mut send: impl FnMut() -> R, error_code: impl Fn(&R) -> i16) -> R {
    let retriable = [
        ResponseError::CoordinatorNotAvailable,
        ResponseError::CoordinatorLoadInProgress,
        ResponseError::NotCoordinator,
        ResponseError::ConcurrentTransactions,
    ]
    .map(code);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = send();
        if !retriable.contains(&error_code(&r)) || Instant::now() > deadline {
            return r;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn add_partition(conn: &mut RawConn, txn_id: &str, pid: i64, epoch: i16) -> i16 {
    let request = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(TransactionalId(name(txn_id)))
        .with_v3_and_below_producer_id(ProducerId(pid))
        .with_v3_and_below_producer_epoch(epoch)
        .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
            .with_name(TopicName(name(TOPIC)))
            .with_partitions(vec![0])]);
    let r = conn.request(&request, 3).expect("AddPartitionsToTxn");
    r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code
}

fn end_txn(conn: &mut RawConn, txn_id: &str, pid: i64, epoch: i16, commit: bool) -> i16 {
    let request = EndTxnRequest::default()
        .with_transactional_id(TransactionalId(name(txn_id)))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_committed(commit);
    conn.request(&request, 3).expect("EndTxn").error_code
}

/// A transactional batch of one record, as a transactional producer sends it.
fn txn_batch(pid: i64, epoch: i16, sequence: i32) -> Vec<u8> {
    let record = Record {
        transactional: true,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: pid,
        producer_epoch: epoch,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence,
        timestamp: tideline_tests::now_ms(),
        key: None,
        value: Some(Bytes::from_static(b"txn")),
        headers: kafka_protocol::indexmap::IndexMap::new(),
    };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        [&record],
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    buf.to_vec()
}

fn produce(conn: &mut RawConn, txn_id: &str, batch: Vec<u8>) -> i16 {
    let request =
        produce_request(TOPIC, 0, batch).with_transactional_id(Some(TransactionalId(name(txn_id))));
    let r = conn.request(&request, 9).expect("Produce");
    r.responses[0].partition_responses[0].error_code
}

/// ListOffsets "latest" at an isolation level (0 uncommitted, 1 committed).
fn latest(conn: &mut RawConn, isolation: i8) -> i64 {
    let request = ListOffsetsRequest::default()
        .with_replica_id((-1).into())
        .with_isolation_level(isolation)
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(name(TOPIC)))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(-1)])]);
    let r = conn.request(&request, 4).expect("ListOffsets");
    r.topics[0].partitions[0].offset
}

fn add_offsets(conn: &mut RawConn, txn_id: &str, pid: i64, epoch: i16, group: &str) -> i16 {
    let request = AddOffsetsToTxnRequest::default()
        .with_transactional_id(TransactionalId(name(txn_id)))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_group_id(GroupId(name(group)));
    conn.request(&request, 3)
        .expect("AddOffsetsToTxn")
        .error_code
}

/// TxnOffsetCommit of offset 1 of `TOPIC`-0 for `group`.
#[allow(clippy::too_many_arguments)]
fn txn_offset_commit(
    conn: &mut RawConn,
    txn_id: &str,
    pid: i64,
    epoch: i16,
    group: &str,
    member: &str,
    generation: i32,
) -> i16 {
    let request = TxnOffsetCommitRequest::default()
        .with_transactional_id(TransactionalId(name(txn_id)))
        .with_group_id(GroupId(name(group)))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_generation_id(generation)
        .with_member_id(name(member))
        .with_topics(vec![TxnOffsetCommitRequestTopic::default()
            .with_name(TopicName(name(TOPIC)))
            .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(1)
                .with_committed_leader_epoch(-1)])]);
    let r = conn.request(&request, 3).expect("TxnOffsetCommit");
    r.topics[0].partitions[0].error_code
}

/// OffsetFetch v7 with `require_stable` for `group`'s offset of `TOPIC`-0:
/// (error, offset).
fn stable_offset(conn: &mut RawConn, group: &str) -> (i16, i64) {
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(name(group)))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(TopicName(name(TOPIC)))
            .with_partition_indexes(vec![0])]))
        .with_require_stable(true);
    let r = conn.request(&request, 7).expect("OffsetFetch");
    let p = &r.topics[0].partitions[0];
    let error = if r.error_code != 0 {
        r.error_code
    } else {
        p.error_code
    };
    (error, p.committed_offset)
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn requests_no_client_should_send_get_kafkas_error_codes_and_store_nothing() {
    let broker = Broker::start(BrokerOpts::new());
    create_topic(&broker.bootstrap(), TOPIC, 1, &[]);
    let mut conn = RawConn::connect(broker.kafka_addr());
    find_coordinator(&mut conn, "raw-1");

    // transaction.timeout.ms above transaction.max.timeout.ms (15 min), or 0.
    for timeout in [900_001, 0] {
        let (error, _, _) = init(&mut conn, "raw-1", timeout);
        assert_eq!(
            error,
            code(ResponseError::InvalidTransactionTimeout),
            "{timeout}"
        );
    }
    let (error, pid, epoch) = init(&mut conn, "raw-1", 60_000);
    assert_eq!(error, 0);

    // EndTxn with no transaction.
    assert_eq!(
        end_txn(&mut conn, "raw-1", pid, epoch, true),
        code(ResponseError::InvalidTxnState)
    );

    // A transactional batch for a partition not added to the transaction:
    // the coordinator does not confirm it, nothing is stored.
    assert_eq!(
        produce(&mut conn, "raw-1", txn_batch(pid, epoch, 0)),
        code(ResponseError::InvalidTxnState)
    );
    assert_eq!(latest(&mut conn, 0), 0, "nothing was appended");

    // Added first, it is accepted and holds the last stable offset back.
    assert_eq!(add_partition(&mut conn, "raw-1", pid, epoch), 0);
    assert_eq!(produce(&mut conn, "raw-1", txn_batch(pid, epoch, 0)), 0);
    assert_eq!(latest(&mut conn, 0), 1, "read_uncommitted sees it");
    assert_eq!(latest(&mut conn, 1), 0, "read_committed does not, yet");

    // TxnOffsetCommit for a group not added to the transaction: the
    // coordinator does not confirm its offsets partition, nothing pends.
    assert_eq!(
        txn_offset_commit(&mut conn, "raw-1", pid, epoch, GROUP, "", -1),
        code(ResponseError::InvalidTxnState)
    );
    assert_eq!(stable_offset(&mut conn, GROUP), (0, -1));

    // TxnOffsetCommit from a member or generation the group does not have.
    assert_eq!(add_offsets(&mut conn, "raw-1", pid, epoch, GROUP), 0);
    assert_eq!(
        txn_offset_commit(&mut conn, "raw-1", pid, epoch, GROUP, "ghost", 1),
        code(ResponseError::UnknownMemberId)
    );
    assert_eq!(
        txn_offset_commit(&mut conn, "raw-1", pid, epoch, GROUP, "", 5),
        code(ResponseError::IllegalGeneration)
    );

    // A second instance fences the first and aborts its transaction.
    let (error, same_pid, bumped) = init(&mut conn, "raw-1", 60_000);
    assert_eq!(error, 0);
    assert_eq!(same_pid, pid);
    assert!(bumped > epoch);
    assert_eq!(
        add_partition(&mut conn, "raw-1", pid, epoch),
        code(ResponseError::ProducerFenced)
    );
    assert_eq!(
        end_txn(&mut conn, "raw-1", pid, epoch, true),
        code(ResponseError::ProducerFenced)
    );
    wait_until("the aborted transaction no longer holds the LSO", || {
        latest(&mut conn, 1) == latest(&mut conn, 0)
    });
    let end = latest(&mut conn, 0);
    assert_eq!(end, 2, "the data batch and the abort marker");
    // The zombie's batch is refused (it is fenced), and nothing is stored.
    assert_eq!(
        produce(&mut conn, "raw-1", txn_batch(pid, epoch, 1)),
        code(ResponseError::InvalidProducerEpoch)
    );
    assert_eq!(latest(&mut conn, 0), end);
    // So are the zombie's offsets, and the new instance's, sent with no
    // transaction open: neither leaves offsets pending.
    assert_eq!(
        txn_offset_commit(&mut conn, "raw-1", pid, epoch, GROUP, "", -1),
        code(ResponseError::ProducerFenced)
    );
    assert_eq!(
        txn_offset_commit(&mut conn, "raw-1", pid, bumped, GROUP, "", -1),
        code(ResponseError::InvalidTxnState)
    );
    assert_eq!(stable_offset(&mut conn, GROUP), (0, -1));
}

/// EndTxn v5 (transaction version 2, KIP-890 part 2) with its answer
/// lost: the client retries it with the epoch it had. The answer gives the
/// bumped epoch, and the retry is recognised from the stored state alone,
/// so it still succeeds after a crash, when a new coordinator has replayed
/// `__transaction_state`.
#[test]
fn a_version_2_end_txn_bumps_the_epoch_and_its_retry_succeeds_after_a_crash() {
    let mut broker = Broker::start(BrokerOpts::new());
    create_topic(&broker.bootstrap(), TOPIC, 1, &[]);
    let mut conn = RawConn::connect(broker.kafka_addr());
    find_coordinator(&mut conn, "v2-1");
    let (error, pid, epoch) = init(&mut conn, "v2-1", 60_000);
    assert_eq!(error, 0);
    assert_eq!(add_partition(&mut conn, "v2-1", pid, epoch), 0);
    assert_eq!(produce(&mut conn, "v2-1", txn_batch(pid, epoch, 0)), 0);

    let end_v5 = |conn: &mut RawConn, epoch: i16, commit: bool| {
        let request = EndTxnRequest::default()
            .with_transactional_id(TransactionalId(name("v2-1")))
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch)
            .with_committed(commit);
        let r = retried(
            || conn.request(&request, 5).expect("EndTxn"),
            |r| r.error_code,
        );
        (r.error_code, r.producer_id.0, r.producer_epoch)
    };
    assert_eq!(
        end_v5(&mut conn, epoch, true),
        (0, pid, epoch + 1),
        "the commit bumps the epoch"
    );
    wait_until("the commit is stable", || {
        latest(&mut conn, 1) == latest(&mut conn, 0)
    });
    assert_eq!(
        end_v5(&mut conn, epoch, true),
        (0, pid, epoch + 1),
        "a retry"
    );

    broker.kill();
    broker.restart();
    let mut conn = RawConn::connect(broker.kafka_addr());
    find_coordinator(&mut conn, "v2-1");
    assert_eq!(
        end_v5(&mut conn, epoch, true),
        (0, pid, epoch + 1),
        "a retry to the replayed coordinator"
    );
    assert_eq!(
        end_v5(&mut conn, epoch, false).0,
        code(ResponseError::InvalidTxnState),
        "a retry asking for the other result"
    );
    assert_eq!(
        end_v5(&mut conn, epoch + 2, true).0,
        code(ResponseError::ProducerFenced),
        "an epoch never handed out"
    );
    // The bumped epoch carries on with the next transaction.
    assert_eq!(add_partition(&mut conn, "v2-1", pid, epoch + 1), 0);
}
