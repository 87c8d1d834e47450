//! Fetch sessions (KIP-227): incremental fetches that send only what
//! changed, for consumers (kafka-python implements sessions; librdkafka
//! fetches without one) and for the brokers' own followers.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};

use tideline_tests::clients::{admin_client, block_on, reliable_producer_config, TestProducer};
use tideline_tests::cluster::Cluster;
use tideline_tests::wire::RawConn;
use tideline_tests::{consume_all, create_topic, wait_for, Broker, TestRecord};

const FETCH_SESSION_ID_NOT_FOUND: i16 = 70;
const INVALID_FETCH_SESSION_EPOCH: i16 = 71;

/// Value `i` of partition `p`, as the Python consumer checks them.
fn value(p: i32, i: u64) -> TestRecord {
    TestRecord::value(format!("p{p}-{i:06}"))
}

/// Produces values `from..from + n` to each of `partitions`.
fn produce(bootstrap: &str, topic: &str, partitions: std::ops::Range<i32>, from: u64, n: u64) {
    let producer = TestProducer::new(&reliable_producer_config(bootstrap));
    for p in partitions {
        for i in from..from + n {
            producer.send(topic, Some(p), &value(p, i));
        }
    }
    producer.expect_all_delivered(Duration::from_secs(60));
}

fn fetch_request(
    session_id: i32,
    epoch: i32,
    wanted: &[(i32, i64)],
    forget: &[i32],
) -> FetchRequest {
    let mut request = FetchRequest::default();
    request.replica_id = kafka_protocol::messages::BrokerId(-1);
    request.max_wait_ms = 50;
    request.min_bytes = 1;
    request.max_bytes = 1 << 20;
    request.session_id = session_id;
    request.session_epoch = epoch;
    let mut topic = FetchTopic::default();
    topic.topic = TopicName(StrBytes::from_static_str("sessions"));
    for &(partition, offset) in wanted {
        let mut p = FetchPartition::default();
        p.partition = partition;
        p.fetch_offset = offset;
        p.partition_max_bytes = 1 << 20;
        p.current_leader_epoch = -1;
        p.log_start_offset = -1;
        topic.partitions.push(p);
    }
    if !topic.partitions.is_empty() {
        request.topics.push(topic);
    }
    if !forget.is_empty() {
        let mut forgotten = ForgottenTopic::default();
        forgotten.topic = TopicName(StrBytes::from_static_str("sessions"));
        forgotten.partitions = forget.to_vec();
        request.forgotten_topics_data.push(forgotten);
    }
    request
}

/// (partition, high watermark, has records) of every partition answered.
fn answered(response: &FetchResponse) -> Vec<(i32, i64, bool)> {
    response
        .responses
        .iter()
        .flat_map(|t| t.partitions.iter())
        .map(|p| {
            let records = p.records.as_ref().is_some_and(|r| !r.is_empty());
            (p.partition_index, p.high_watermark, records)
        })
        .collect()
}

/// The protocol, exactly: a full fetch opens a session; incremental ones
/// carry only changed partitions both ways, add and forget partitions; a
/// wrong epoch, an unknown id and a closed session get Kafka's errors.
#[test]
fn incremental_fetches_carry_only_changes_and_bad_sessions_get_kafka_errors() {
    let broker = Broker::start_with(&[]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "sessions", 3, &[]);
    produce(&bootstrap, "sessions", 0..1, 0, 5);
    let mut conn = RawConn::connect(broker.kafka_addr());
    let mut fetch = |request: &FetchRequest| conn.request(request, 12).expect("fetch");

    let full = fetch(&fetch_request(0, 0, &[(0, 0), (1, 0)], &[]));
    assert_eq!(full.error_code, 0);
    let id = full.session_id;
    assert_ne!(id, 0, "a full fetch opens a session");
    assert_eq!(answered(&full), [(0, 5, true), (1, 0, false)]);

    // Partition 0 moves to its end; nothing else changed: nothing to say.
    let quiet = fetch(&fetch_request(id, 1, &[(0, 5)], &[]));
    assert_eq!((quiet.error_code, quiet.session_id), (0, id));
    assert_eq!(answered(&quiet), []);

    // Records on partition 1, which the request does not even name.
    produce(&bootstrap, "sessions", 1..2, 0, 3);
    let news = fetch(&fetch_request(id, 2, &[], &[]));
    assert_eq!(answered(&news), [(1, 3, true)]);

    // Add partition 2, forget partition 0: 2 is new to the client.
    let reshaped = fetch(&fetch_request(id, 3, &[(1, 3), (2, 0)], &[0]));
    assert_eq!(answered(&reshaped), [(2, 0, false)]);
    produce(&bootstrap, "sessions", 0..1, 5, 2);
    let forgotten = fetch(&fetch_request(id, 4, &[], &[]));
    assert_eq!(answered(&forgotten), [], "partition 0 left the session");

    let wrong_epoch = fetch(&fetch_request(id, 9, &[], &[]));
    assert_eq!(wrong_epoch.error_code, INVALID_FETCH_SESSION_EPOCH);
    let unknown = fetch(&fetch_request(id ^ 0x5555, 1, &[], &[]));
    assert_eq!(unknown.error_code, FETCH_SESSION_ID_NOT_FOUND);
    // The wrong epoch did not use up the session's.
    assert_eq!(fetch(&fetch_request(id, 5, &[], &[])).error_code, 0);

    // The final epoch closes the session and fetches without one.
    let last = fetch(&fetch_request(id, -1, &[(0, 5)], &[]));
    assert_eq!((last.error_code, last.session_id), (0, 0));
    assert_eq!(answered(&last), [(0, 7, true)]);
    let closed = fetch(&fetch_request(id, 6, &[], &[]));
    assert_eq!(closed.error_code, FETCH_SESSION_ID_NOT_FOUND);

    assert!(broker.metric("tideline_fetch_requests_total{session=\"incremental\"}") >= 5.0);
    assert_eq!(
        broker.metric("tideline_fetch_requests_total{session=\"error\"}"),
        3.0
    );
}

fn spawn_python_consumer(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    n: u64,
    mode: &str,
) -> Child {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("python/fetch_sessions_kafka_python.py");
    Command::new(std::env::var("TIDELINE_PYTHON").unwrap_or("python3".into()))
        .arg(script)
        .args([
            bootstrap,
            topic,
            &partitions.to_string(),
            &n.to_string(),
            mode,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3")
}

/// Reads the consumer's stdout until it prints READY.
fn wait_ready(child: &mut Child) -> BufReader<std::process::ChildStdout> {
    let mut out = BufReader::new(child.stdout.take().expect("piped"));
    let mut line = String::new();
    loop {
        line.clear();
        if out.read_line(&mut line).expect("read stdout") == 0 {
            let status = child.wait().expect("wait");
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).ok();
            panic!("consumer exited ({status}) before READY:\n{err}");
        }
        if line.trim() == "READY" {
            return out;
        }
    }
}

fn wait_done(mut child: Child, mut out: BufReader<std::process::ChildStdout>) {
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).expect("read stdout");
    let status = child.wait().expect("wait");
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).ok();
    assert!(
        status.success() && rest.contains("DONE"),
        "consumer failed ({status}):\n{rest}\n{err}"
    );
}

/// kafka-python grows its session, shrinks it, and loses it when the
/// broker restarts (a new broker knows no sessions): it reads every record
/// once, in order, throughout.
#[test]
fn a_kafka_python_consumer_reads_everything_while_its_session_grows_shrinks_and_is_lost() {
    let mut broker = Broker::start_with(&[]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "reshape", 8, &[]);
    produce(&bootstrap, "reshape", 0..8, 0, 200);
    let mut consumer = spawn_python_consumer(&bootstrap, "reshape", 8, 200, "reshape");
    let out = wait_ready(&mut consumer);
    assert!(
        broker.metric("tideline_fetch_requests_total{session=\"incremental\"}") > 0.0,
        "kafka-python fetched incrementally"
    );
    broker.restart();
    produce(&bootstrap, "reshape", 0..8, 200, 200);
    wait_done(consumer, out);
    // After the restart it opened a new session and used it.
    assert!(broker.metric("tideline_fetch_requests_total{session=\"full\"}") >= 1.0);
    assert!(broker.metric("tideline_fetch_requests_total{session=\"incremental\"}") > 0.0);
}

fn create_assigned(cluster: &Cluster, topic: &str, replicas: &[&[i32]]) {
    let admin = admin_client(&cluster.bootstrap());
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let new = NewTopic::new(
        topic,
        replicas.len() as i32,
        TopicReplication::Variable(replicas),
    );
    for r in block_on(admin.create_topics(&[new], &opts)).expect("CreateTopics") {
        r.expect("topic created");
    }
}

/// With one session slot, a follower's new session evicts a consumer's
/// young one (followers are privileged, as in Kafka): the consumer gets
/// FETCH_SESSION_ID_NOT_FOUND, starts over without a session and misses
/// nothing; the follower replicates through its session.
#[test]
fn a_follower_session_evicts_a_consumer_session_and_both_keep_going() {
    let cluster = Cluster::start(2, &[("max.incremental.fetch.session.cache.slots", "1")]);
    let bootstrap = cluster.bootstrap();
    create_assigned(&cluster, "solo", &[&[1]]);
    produce(&bootstrap, "solo", 0..1, 0, 100);
    let mut consumer = spawn_python_consumer(&bootstrap, "solo", 1, 100, "follow");
    let out = wait_ready(&mut consumer);
    let leader = &cluster.nodes[0];
    assert_eq!(leader.metric("tideline_fetch_sessions"), 1.0);

    // Broker 2 starts following partitions led by broker 1.
    create_assigned(&cluster, "pair", &[&[1, 2], &[1, 2]]);
    wait_for(
        "the follower's session evicts the consumer's",
        Duration::from_secs(30),
        || (leader.metric("tideline_fetch_session_evictions_total") >= 1.0).then_some(()),
    );
    produce(&bootstrap, "solo", 0..1, 100, 100);
    wait_done(consumer, out);
    assert!(leader.metric("tideline_fetch_requests_total{session=\"error\"}") >= 1.0);

    // acks=all through the follower's session, and it has every record.
    produce(&bootstrap, "pair", 0..2, 0, 300);
    let consumed = consume_all(&bootstrap, "pair", &[(0, 300), (1, 300)]);
    assert_eq!(consumed[&0].len() + consumed[&1].len(), 600);
    // The one slot is the follower's, and it fetches incrementally.
    assert_eq!(leader.metric("tideline_fetch_sessions"), 1.0);
    assert!(leader.metric("tideline_fetch_requests_total{session=\"incremental\"}") > 0.0);
    let follower = &cluster.nodes[1];
    wait_for(
        "the follower has every record",
        Duration::from_secs(30),
        || {
            let ends = follower.metrics();
            let end = |p: i32| {
                tideline_tests::broker::sum_samples(
                    &ends,
                    &format!("tideline_log_end_offset{{partition=\"{p}\",topic=\"pair\"}}"),
                )
            };
            (end(0) == 300.0 && end(1) == 300.0).then_some(())
        },
    );
}

/// Between full passes a follower's incremental fetch looks only at the
/// partitions that changed. Idle partitions must still count as caught up
/// (no ISR shrinks however long they stay idle), and one that wakes up
/// after a long silence is replicated through the session at once.
#[test]
fn a_follower_keeps_idle_partitions_in_sync_and_replicates_one_that_wakes_up() {
    let cluster = Cluster::start(2, &[("replica.lag.time.max.ms", "1500")]);
    let bootstrap = cluster.bootstrap();
    let assignment: Vec<&[i32]> = (0..40).map(|_| &[1, 2][..]).collect();
    create_assigned(&cluster, "quiet", &assignment);
    produce(&bootstrap, "quiet", 0..40, 0, 1);
    let leader = &cluster.nodes[0];
    // Several times the lag limit with nothing but idle fetches.
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(leader.metric("tideline_isr_shrinks_total"), 0.0);

    for (round, p) in [(1, 7), (2, 33), (3, 7)] {
        // acks=all: answered only once the follower has it.
        produce(&bootstrap, "quiet", p..p + 1, round, 20);
        std::thread::sleep(Duration::from_secs(2));
    }
    assert_eq!(leader.metric("tideline_isr_shrinks_total"), 0.0);
    let follower = &cluster.nodes[1];
    let ends = follower.metrics();
    let end = |p: i32| {
        tideline_tests::broker::sum_samples(
            &ends,
            &format!("tideline_log_end_offset{{partition=\"{p}\",topic=\"quiet\"}}"),
        )
    };
    assert_eq!((end(7), end(33), end(0)), (41.0, 21.0, 1.0));
    assert!(leader.metric("tideline_fetch_requests_total{session=\"incremental\"}") > 10.0);
}

/// A response's byte limit leaves partitions with data unsent; an
/// incremental fetch that does not name them must still send it next time
/// (nothing about them changed, but the client is still waiting for it),
/// whether the cut happened in the full fetch or in an incremental one.
#[test]
fn data_left_out_by_the_byte_limit_comes_in_the_next_incremental_fetch() {
    let broker = Broker::start_with(&[]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "sessions", 3, &[]);
    produce(&bootstrap, "sessions", 0..3, 0, 5);
    let mut conn = RawConn::connect(broker.kafka_addr());
    let mut fetch = |mut request: FetchRequest| {
        // Only the first batch of the first partition with data fits.
        request.max_bytes = 1;
        conn.request(&request, 12).expect("fetch")
    };
    let full = fetch(fetch_request(0, 0, &[(0, 0), (1, 0), (2, 0)], &[]));
    let id = full.session_id;
    assert_ne!(id, 0);
    assert_eq!(
        answered(&full),
        [(0, 5, true), (1, 5, false), (2, 5, false)]
    );
    // Partition 0 is done; 1 and 2 wait their turn, one per fetch.
    let second = fetch(fetch_request(id, 1, &[(0, 5)], &[]));
    assert_eq!(answered(&second), [(1, 5, true)]);
    let third = fetch(fetch_request(id, 2, &[(1, 5)], &[]));
    assert_eq!(answered(&third), [(2, 5, true)]);
    let last = fetch(fetch_request(id, 3, &[(2, 5)], &[]));
    assert_eq!(answered(&last), []);
}
