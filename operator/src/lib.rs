//! The Tideline Kubernetes operator: custom resources (`crd`), their CRD
//! YAML (`crdgen`), pure rendering of what a KafkaCluster becomes
//! (`render`), the topic controller's decisions (`topic_plan`) and their
//! execution through the Kafka admin API (`kafka_admin`), and the
//! rolling-restart decision (`roll`). The
//! controllers that apply them follow.

pub mod crd;
pub mod crdgen;
pub mod kafka_admin;
pub mod render;
pub mod roll;
pub mod topic_plan;
