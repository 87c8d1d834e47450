//! The names and addresses of a cluster's objects. Broker `i` is pod
//! `<cluster>-<i>` of the StatefulSet `<cluster>`, reachable at the stable
//! DNS name the headless Service `<cluster>-headless` gives it.

/// Kafka clients' port on every broker.
pub const KAFKA_PORT: u16 = 9092;
/// The metadata quorum's port on voters.
pub const CONTROLLER_PORT: u16 = 9093;
/// `/metrics`, `/healthz` and `/readyz`.
pub const HTTP_PORT: u16 = 9644;
/// Where the broker's volume is mounted.
pub const DATA_DIR: &str = "/var/lib/tideline/data";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNames {
    pub cluster: String,
    pub namespace: String,
}

impl ClusterNames {
    pub fn new(cluster: &str, namespace: &str) -> Self {
        ClusterNames {
            cluster: cluster.to_string(),
            namespace: namespace.to_string(),
        }
    }

    pub fn statefulset(&self) -> String {
        self.cluster.clone()
    }

    pub fn headless_service(&self) -> String {
        format!("{}-headless", self.cluster)
    }

    pub fn bootstrap_service(&self) -> String {
        format!("{}-bootstrap", self.cluster)
    }

    pub fn config_map(&self) -> String {
        format!("{}-config", self.cluster)
    }

    pub fn pod(&self, ordinal: i32) -> String {
        format!("{}-{ordinal}", self.cluster)
    }

    /// The stable DNS name of the pod named `pod` (resolved through the
    /// pods' DNS search path, whatever the cluster domain).
    pub fn pod_host(&self, pod: &str) -> String {
        format!("{pod}.{}.{}.svc", self.headless_service(), self.namespace)
    }

    /// `host:port` clients bootstrap from inside the cluster.
    pub fn bootstrap_address(&self) -> String {
        format!(
            "{}.{}.svc:{KAFKA_PORT}",
            self.bootstrap_service(),
            self.namespace
        )
    }
}
