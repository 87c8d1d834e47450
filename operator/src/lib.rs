//! The Tideline Kubernetes operator.
//!
//! - `crd`, `crdgen`: the custom resources and their CRD YAML;
//! - `render`: pure functions from a KafkaCluster to Kubernetes objects and
//!   the broker's `server.properties`;
//! - `topic_plan`, `roll`: the topic controller's and the rolling restart's
//!   decisions, pure;
//! - `kafka_admin`: the Kafka admin API calls that carry them out;
//! - `controller`: the reconcile loops applying all of it;
//! - `metrics`, `http`, `leader`, `values_resources`: the operator process
//!   around them.

pub mod controller;
pub mod crd;
pub mod crdgen;
pub mod http;
pub mod kafka_admin;
pub mod leader;
pub mod metrics;
pub mod render;
pub mod roll;
pub mod topic_plan;
pub mod values_resources;
