//! Clusters of broker processes on this machine, each node with its own
//! Kafka, HTTP (and, for voters, controller) ports and data directory. The
//! first nodes are combined broker/controllers listed in
//! `controller.quorum.voters`; any further ones are broker-only observers.

use std::time::{Duration, Instant};

use kafka_protocol::messages::DescribeClusterRequest;

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use crate::broker::{Broker, BrokerOpts};
use crate::free_port;
use crate::proxy::Proxy;
use crate::wire::RawConn;

pub struct Cluster {
    pub nodes: Vec<Broker>,
    cluster_id: String,
    voter_list: Vec<String>,
    overrides: Vec<(String, String)>,
    /// Present when every listener is behind a fault-injecting proxy.
    net: Option<FaultNet>,
}

/// One end of a network link: a Kafka client, or a broker (by node id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Client,
    Broker(i32),
}

/// The network of a cluster started with [`Cluster::start_with_faults`].
///
/// Every node's Kafka and controller listeners sit behind proxies, and the
/// node advertises the proxies (clients and brokers alike connect through
/// them). Node `i` originates its broker-to-broker connections from
/// 127.0.0.(10+i) (`outbound.bind.host`), so a proxy knows from the source
/// address which broker — or, from anything else, which client — is on the
/// other end, and can refuse and cut exactly the links a test blocks:
/// broker↔broker and client↔broker independently.
struct FaultNet {
    blocked: Arc<Mutex<HashSet<(Endpoint, i32)>>>,
    kafka: Vec<Proxy>,
    controller: Vec<Option<Proxy>>,
}

/// The source address node `id` binds its outbound connections to.
fn node_ip(id: i32) -> IpAddr {
    IpAddr::from([127, 0, 0, 10 + id as u8])
}

fn endpoint_of(ip: IpAddr) -> Endpoint {
    match ip {
        IpAddr::V4(v4)
            if v4.octets()[..3] == [127, 0, 0] && (11..=60).contains(&v4.octets()[3]) =>
        {
            Endpoint::Broker(v4.octets()[3] as i32 - 10)
        }
        _ => Endpoint::Client,
    }
}

fn proxy_to(port: u16, to: i32, blocked: &Arc<Mutex<HashSet<(Endpoint, i32)>>>) -> Proxy {
    let blocked = blocked.clone();
    Proxy::start_admitting(
        SocketAddr::from(([127, 0, 0, 1], port)),
        Some(Arc::new(move |ip| {
            !blocked.lock().unwrap().contains(&(endpoint_of(ip), to))
        })),
    )
}

impl Cluster {
    fn new(cluster_id: String, voter_list: Vec<String>, overrides: &[(&str, &str)]) -> Cluster {
        Cluster {
            nodes: Vec::new(),
            cluster_id,
            voter_list,
            overrides: overrides
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            net: None,
        }
    }

    /// Starts `size` nodes (ids 1..=size), every one a voter, and waits
    /// until all are ready.
    pub fn start(size: usize, overrides: &[(&str, &str)]) -> Cluster {
        Cluster::start_mixed(size, size, overrides)
    }

    /// Starts `size` nodes of which the first `voters` vote in the metadata
    /// quorum and the rest are broker-only, and waits until all are ready.
    pub fn start_mixed(voters: usize, size: usize, overrides: &[(&str, &str)]) -> Cluster {
        Cluster::start_mixed_with(voters, size, overrides, |_| Vec::new())
    }

    /// Like [`Cluster::start`], with settings for single nodes too (for
    /// example one node's `log.dirs` on a small file system); `overrides`
    /// win over them.
    pub fn start_with_node_overrides(
        size: usize,
        overrides: &[(&str, &str)],
        node_overrides: impl Fn(i32) -> Vec<(String, String)>,
    ) -> Cluster {
        Cluster::start_mixed_with(size, size, overrides, node_overrides)
    }

    fn start_mixed_with(
        voters: usize,
        size: usize,
        overrides: &[(&str, &str)],
        node_overrides: impl Fn(i32) -> Vec<(String, String)>,
    ) -> Cluster {
        let cluster_id = format!("tideline-test-{}", free_port());
        let ports: Vec<(u16, u16)> = (0..size).map(|_| (free_port(), free_port())).collect();
        let voter_list: Vec<String> = ports
            .iter()
            .take(voters)
            .enumerate()
            .map(|(i, (_, controller))| format!("{}@127.0.0.1:{controller}", i + 1))
            .collect();
        let mut cluster = Cluster::new(cluster_id, voter_list, overrides);
        for (i, (kafka, controller)) in ports.iter().enumerate() {
            let id = i as i32 + 1;
            let node = cluster.launch_node(
                id,
                *kafka,
                (i < voters).then_some(*controller),
                &node_overrides(id),
            );
            cluster.nodes.push(node);
        }
        cluster.wait_until_started();
        cluster
    }

    /// Like [`Cluster::start_mixed`], with every listener behind a
    /// fault-injecting proxy (see [`FaultNet`]) so tests can cut links.
    pub fn start_with_faults(voters: usize, size: usize, overrides: &[(&str, &str)]) -> Cluster {
        let ports: Vec<(u16, u16)> = (0..size).map(|_| (free_port(), free_port())).collect();
        let blocked = Arc::new(Mutex::new(HashSet::new()));
        let kafka: Vec<Proxy> = ports
            .iter()
            .enumerate()
            .map(|(i, (k, _))| proxy_to(*k, i as i32 + 1, &blocked))
            .collect();
        let controller: Vec<Option<Proxy>> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, c))| (i < voters).then(|| proxy_to(*c, i as i32 + 1, &blocked)))
            .collect();
        let voter_list = controller
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.as_ref().map(|p| format!("{}@{}", i + 1, p.addr())))
            .collect();
        let cluster_id = format!("tideline-test-{}", free_port());
        let mut cluster = Cluster::new(cluster_id, voter_list, overrides);
        for (i, (k, c)) in ports.iter().enumerate() {
            let id = i as i32 + 1;
            let extra = [
                (
                    "advertised.listeners".to_string(),
                    format!("PLAINTEXT://{}", kafka[i].addr()),
                ),
                ("outbound.bind.host".to_string(), node_ip(id).to_string()),
            ];
            let node = cluster.launch_node(id, *k, (i < voters).then_some(*c), &extra);
            cluster.nodes.push(node);
        }
        cluster.net = Some(FaultNet {
            blocked,
            kafka,
            controller,
        });
        cluster.wait_until_started();
        cluster
    }

    /// Waits until every node is ready and its Metadata lists every broker
    /// and a controller among them: a node is ready once its own
    /// registration is applied, and may not yet have applied the others'.
    fn wait_until_started(&mut self) {
        for node in &mut self.nodes {
            node.wait_ready();
        }
        use kafka_protocol::messages::MetadataRequest;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        for (i, node) in self.nodes.iter().enumerate() {
            loop {
                let converged = RawConn::try_connect(node.kafka_addr(), Duration::from_secs(5))
                    .ok()
                    .and_then(|mut conn| {
                        let mut request = MetadataRequest::default();
                        request.topics = Some(Vec::new());
                        conn.request(&request, 12).ok()
                    })
                    .is_some_and(|r| {
                        r.brokers.len() == self.nodes.len()
                            && r.brokers.iter().any(|b| b.node_id == r.controller_id)
                    });
                if converged {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "node {} does not list all {} brokers and a controller among them",
                    i + 1,
                    self.nodes.len()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    fn net(&self) -> &FaultNet {
        self.net
            .as_ref()
            .expect("start the cluster with Cluster::start_with_faults to cut links")
    }

    /// Blocks `from` → broker `to` (new connections refused, live ones cut).
    pub fn block(&self, from: Endpoint, to: i32) {
        let net = self.net();
        net.blocked.lock().unwrap().insert((from, to));
        let selected = |ip| endpoint_of(ip) == from;
        net.kafka[to as usize - 1].cut_from(selected);
        if let Some(p) = &net.controller[to as usize - 1] {
            p.cut_from(selected);
        }
    }

    /// Cuts every link between the brokers of `side` and the other brokers,
    /// both ways (clients still reach everyone).
    pub fn partition(&self, side: &[i32]) {
        let all: Vec<i32> = (1..=self.nodes.len() as i32).collect();
        for a in side {
            for b in all.iter().filter(|b| !side.contains(b)) {
                self.block(Endpoint::Broker(*a), *b);
                self.block(Endpoint::Broker(*b), *a);
            }
        }
    }

    /// Leader and ISR of every partition of `topic`, asked of the first of
    /// `via` that answers (`None` if none does or the topic is unknown).
    pub fn partition_states(&self, via: &[i32], topic: &str) -> Option<Vec<(i32, Vec<i32>)>> {
        use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
        use kafka_protocol::messages::{MetadataRequest, TopicName};
        use kafka_protocol::protocol::StrBytes;
        for id in via {
            let node = &self.nodes[*id as usize - 1];
            let Ok(mut conn) = RawConn::try_connect(node.kafka_addr(), Duration::from_secs(5))
            else {
                continue;
            };
            let mut t = MetadataRequestTopic::default();
            t.name = Some(TopicName(StrBytes::from_string(topic.into())));
            let mut request = MetadataRequest::default();
            request.topics = Some(vec![t]);
            let Ok(response) = conn.request(&request, 12) else {
                continue;
            };
            let t = response.topics.first()?;
            if t.error_code != 0 {
                return None;
            }
            let mut states: Vec<(i32, (i32, Vec<i32>))> = t
                .partitions
                .iter()
                .map(|p| {
                    let mut isr: Vec<i32> = p.isr_nodes.iter().map(|b| b.0).collect();
                    isr.sort_unstable();
                    (p.partition_index, (p.leader_id.0, isr))
                })
                .collect();
            states.sort_by_key(|(i, _)| *i);
            return Some(states.into_iter().map(|(_, s)| s).collect());
        }
        None
    }

    /// The active controller as the first of `via` that answers reports it.
    pub fn controller_via(&self, via: &[i32]) -> Option<i32> {
        via.iter().find_map(|id| {
            let node = &self.nodes[*id as usize - 1];
            let mut conn = RawConn::try_connect(node.kafka_addr(), Duration::from_secs(5)).ok()?;
            let response = conn.request(&DescribeClusterRequest::default(), 0).ok()?;
            (response.controller_id.0 >= 0).then_some(response.controller_id.0)
        })
    }

    /// Removes every block.
    pub fn heal(&self) {
        self.net().blocked.lock().unwrap().clear();
    }

    /// A cluster of nodes started by the caller (ids 1..=n in order,
    /// whatever `node.id` they were given), for the queries below.
    pub fn from_nodes(nodes: Vec<Broker>) -> Cluster {
        let mut cluster = Cluster::new(String::new(), Vec::new(), &[]);
        cluster.nodes = nodes;
        cluster
    }

    /// Starts one more broker-only node (the next id) that joins the
    /// cluster, as a scale-out does, and waits until it is ready.
    pub fn add_broker(&mut self) -> i32 {
        assert!(
            self.net.is_none(),
            "add_broker does not support fault-injecting clusters"
        );
        let id = self.nodes.len() as i32 + 1;
        let mut node = self.launch_node(id, free_port(), None, &[]);
        node.wait_ready();
        self.nodes.push(node);
        id
    }

    fn launch_node(
        &self,
        id: i32,
        kafka: u16,
        controller: Option<u16>,
        extra: &[(String, String)],
    ) -> Broker {
        let listeners = match controller {
            Some(controller) => {
                format!("PLAINTEXT://127.0.0.1:{kafka},CONTROLLER://127.0.0.1:{controller}")
            }
            None => format!("PLAINTEXT://127.0.0.1:{kafka}"),
        };
        let roles = if controller.is_some() {
            "broker,controller"
        } else {
            "broker"
        };
        let mut opts = BrokerOpts::new()
            .kafka_port(kafka)
            .set("node.id", id)
            .set("process.roles", roles)
            .set("listeners", listeners)
            .set("controller.quorum.voters", self.voter_list.join(","))
            .set("cluster.id", &self.cluster_id);
        for (k, v) in extra.iter().chain(&self.overrides) {
            opts = opts.set(k, v);
        }
        opts.ready_timeout = Duration::from_secs(60);
        Broker::launch(opts)
    }

    /// `bootstrap.servers` naming every node (through the proxies of a
    /// fault-injecting cluster).
    pub fn bootstrap(&self) -> String {
        match &self.net {
            Some(net) => net
                .kafka
                .iter()
                .map(Proxy::bootstrap)
                .collect::<Vec<_>>()
                .join(","),
            None => self
                .nodes
                .iter()
                .map(Broker::bootstrap)
                .collect::<Vec<_>>()
                .join(","),
        }
    }

    /// Node `id` (1-based, as `node.id`).
    pub fn node(&mut self, id: i32) -> &mut Broker {
        &mut self.nodes[id as usize - 1]
    }

    /// The active controller as node `id` reports it in DescribeCluster.
    pub fn controller_seen_by(&self, id: i32) -> i32 {
        let node = &self.nodes[id as usize - 1];
        let mut conn = RawConn::connect(node.kafka_addr());
        let response = conn
            .request(&DescribeClusterRequest::default(), 0)
            .expect("DescribeCluster");
        response.controller_id.0
    }

    /// Waits until every running node in `among` reports the same active
    /// controller (not `-1`) and returns it.
    pub fn wait_for_controller(&self, among: &[i32], timeout: Duration) -> i32 {
        self.wait_for_controller_other_than(among, -1, timeout)
    }

    /// Like [`Cluster::wait_for_controller`], for a controller other than
    /// `old` (which the survivors keep reporting until they notice it died).
    pub fn wait_for_controller_other_than(
        &self,
        among: &[i32],
        old: i32,
        timeout: Duration,
    ) -> i32 {
        let deadline = Instant::now() + timeout;
        loop {
            let seen: Vec<i32> = among
                .iter()
                .map(|id| self.controller_seen_by(*id))
                .collect();
            if seen[0] >= 0 && seen[0] != old && seen.iter().all(|c| *c == seen[0]) {
                return seen[0];
            }
            assert!(
                Instant::now() < deadline,
                "no agreed controller after {timeout:?}: {seen:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
