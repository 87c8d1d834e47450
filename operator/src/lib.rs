//! The Tideline Kubernetes operator: custom resources (`crd`), their CRD
//! YAML (`crdgen`), pure rendering of what a KafkaCluster becomes
//! (`render`), and the topic controller's decisions (`topic_plan`). The
//! controllers that apply them follow.

pub mod crd;
pub mod crdgen;
pub mod render;
pub mod topic_plan;
