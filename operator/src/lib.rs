//! The Tideline Kubernetes operator: custom resources (`crd`), their CRD
//! YAML (`crdgen`), and pure rendering of what a KafkaCluster becomes
//! (`render`). The controllers that apply it follow.

pub mod crd;
pub mod crdgen;
pub mod render;
