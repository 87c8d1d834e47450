//! Real broker processes started from what the operator renders for a
//! KafkaCluster — the shared `server.properties` of its ConfigMap plus each
//! pod's environment — with the pods' DNS names mapped to loopback ports.
//! Broker `i` is pod ordinal `i` and node id `i`, as in Kubernetes; with
//! rack awareness its rack is `rack_of(i)`.

use std::path::PathBuf;
use std::time::Duration;

use tempfile::TempDir;
use tideline_operator::crd::KafkaCluster;
use tideline_operator::render::names::{CONTROLLER_PORT, KAFKA_PORT};
use tideline_operator::render::server_properties::RACK_ANNOTATION;
use tideline_operator::render::{broker_environment, server_properties, BrokerEnv, ClusterNames};

use crate::{free_port, Broker, BrokerOpts};

/// The rack broker `i` gets when the cluster is rack-aware: its "node"
/// alternates between two zones.
pub fn rack_of(broker: i32) -> String {
    format!("zone-{}", broker % 2)
}

pub struct RenderedCluster {
    pub brokers: Vec<Broker>,
    _dir: TempDir,
}

impl RenderedCluster {
    /// Starts `spec.replicas` brokers and waits until each is ready.
    pub fn start(cluster: &KafkaCluster) -> RenderedCluster {
        let properties = server_properties(cluster).expect("a valid spec renders");
        let environment = broker_environment(cluster);
        let names = ClusterNames::new(
            cluster.metadata.name.as_deref().unwrap_or("tideline"),
            cluster.metadata.namespace.as_deref().unwrap_or("default"),
        );
        let count = cluster.spec.replicas;
        let ports: Vec<(u16, u16)> = (0..count).map(|_| (free_port(), free_port())).collect();
        let to_loopback = |text: &str| -> String {
            let mut text = text.to_string();
            for (i, (kafka, controller)) in ports.iter().enumerate() {
                let host = names.pod_host(&names.pod(i as i32));
                text = text
                    .replace(
                        &format!("{host}:{KAFKA_PORT}"),
                        &format!("127.0.0.1:{kafka}"),
                    )
                    .replace(
                        &format!("{host}:{CONTROLLER_PORT}"),
                        &format!("127.0.0.1:{controller}"),
                    );
            }
            text
        };
        let dir = tempfile::tempdir().unwrap();
        let file: PathBuf = dir.path().join("server.properties");
        std::fs::write(&file, to_loopback(&properties)).unwrap();
        let mut brokers: Vec<Broker> = ports
            .iter()
            .enumerate()
            .map(|(i, (kafka, controller))| {
                let pod = names.pod(i as i32);
                // What the StatefulSet's env gives pod i, as Kubernetes expands it.
                let env: Vec<(String, String)> = environment
                    .iter()
                    .map(|(name, source)| {
                        let value = match source {
                            BrokerEnv::PodField(field) if field == "metadata.name" => pod.clone(),
                            BrokerEnv::PodField(field) if field.contains("pod-index") => {
                                i.to_string()
                            }
                            // The node label the operator copies: two zones.
                            BrokerEnv::PodField(field) if field.contains(RACK_ANNOTATION) => {
                                rack_of(i as i32)
                            }
                            BrokerEnv::PodField(field) => {
                                panic!("no stand-in for pod field {field}")
                            }
                            BrokerEnv::Value(v) => to_loopback(&v.replace("$(POD_NAME)", &pod)),
                        };
                        (name.clone(), value)
                    })
                    .collect();
                // As rendered, every pod has both listeners; only the
                // voters' controller listener is used.
                let listeners =
                    format!("PLAINTEXT://127.0.0.1:{kafka},CONTROLLER://127.0.0.1:{controller}");
                let mut opts = BrokerOpts::new()
                    .kafka_port(*kafka)
                    .set("listeners", listeners);
                opts.config_file = Some(file.clone());
                opts.env = env;
                opts.ready_timeout = Duration::from_secs(60);
                Broker::launch(opts)
            })
            .collect();
        for b in &mut brokers {
            b.wait_ready();
        }
        RenderedCluster { brokers, _dir: dir }
    }

    pub fn bootstrap(&self) -> String {
        self.brokers
            .iter()
            .map(Broker::bootstrap)
            .collect::<Vec<_>>()
            .join(",")
    }
}
