//! Pure functions from a `KafkaCluster` to what the cluster controller
//! applies: names and addresses, the broker's `server.properties`, and the
//! per-pod environment. Nothing here talks to the API server or a broker,
//! so every decision is testable on its own.

pub mod labels;
pub mod monitoring;
pub mod names;
pub mod objects;
pub mod server_properties;

pub use names::ClusterNames;
pub use server_properties::{broker_environment, server_properties, BrokerEnv, SpecError};
