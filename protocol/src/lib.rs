//! The Kafka protocol as Tideline's own programs speak it.
//!
//! The broker's follower fetchers, the operator's admin client, the
//! benchmark tool and the tests all talk to brokers as a Kafka client does.
//! They share this crate so a request is framed in one place, and so the
//! tools link only this (and `kafka-protocol`), not the broker.
//!
//! - [`frame`]: Kafka's size-prefixed framing and request/response headers.
//! - [`client`]: an async client, one request at a time on one connection,
//!   with version negotiation through ApiVersions.
//! - [`configs`]: Kafka's configuration keys (names, types, defaults,
//!   validation), which the broker enforces and the operator and tools
//!   check before they send a change.

pub mod client;
pub mod configs;
pub mod frame;

pub use client::KafkaClient;
