//! Clusters of broker processes on this machine, each node with its own
//! Kafka, HTTP (and, for voters, controller) ports and data directory. The
//! first nodes are combined broker/controllers listed in
//! `controller.quorum.voters`; any further ones are broker-only observers.

use std::time::{Duration, Instant};

use kafka_protocol::messages::DescribeClusterRequest;

use crate::broker::{Broker, BrokerOpts};
use crate::free_port;
use crate::wire::RawConn;

pub struct Cluster {
    pub nodes: Vec<Broker>,
    cluster_id: String,
    voter_list: Vec<String>,
    overrides: Vec<(String, String)>,
}

impl Cluster {
    /// Starts `size` nodes (ids 1..=size), every one a voter, and waits
    /// until all are ready.
    pub fn start(size: usize, overrides: &[(&str, &str)]) -> Cluster {
        Cluster::start_mixed(size, size, overrides)
    }

    /// Starts `size` nodes of which the first `voters` vote in the metadata
    /// quorum and the rest are broker-only, and waits until all are ready.
    pub fn start_mixed(voters: usize, size: usize, overrides: &[(&str, &str)]) -> Cluster {
        let cluster_id = format!("tideline-test-{}", free_port());
        let ports: Vec<(u16, u16)> = (0..size).map(|_| (free_port(), free_port())).collect();
        let voter_list: Vec<String> = ports
            .iter()
            .take(voters)
            .enumerate()
            .map(|(i, (_, controller))| format!("{}@127.0.0.1:{controller}", i + 1))
            .collect();
        let mut cluster = Cluster {
            nodes: Vec::new(),
            cluster_id,
            voter_list,
            overrides: overrides
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        for (i, (kafka, controller)) in ports.iter().enumerate() {
            let node =
                cluster.launch_node(i as i32 + 1, *kafka, (i < voters).then_some(*controller));
            cluster.nodes.push(node);
        }
        for node in &mut cluster.nodes {
            node.wait_ready();
        }
        cluster
    }

    /// Starts one more broker-only node (the next id) that joins the
    /// cluster, as a scale-out does, and waits until it is ready.
    pub fn add_broker(&mut self) -> i32 {
        let id = self.nodes.len() as i32 + 1;
        let mut node = self.launch_node(id, free_port(), None);
        node.wait_ready();
        self.nodes.push(node);
        id
    }

    fn launch_node(&self, id: i32, kafka: u16, controller: Option<u16>) -> Broker {
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
        for (k, v) in &self.overrides {
            opts = opts.set(k, v);
        }
        opts.ready_timeout = Duration::from_secs(60);
        Broker::launch(opts)
    }

    /// `bootstrap.servers` naming every node.
    pub fn bootstrap(&self) -> String {
        self.nodes
            .iter()
            .map(Broker::bootstrap)
            .collect::<Vec<_>>()
            .join(",")
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
