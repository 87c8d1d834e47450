//! Coordinators that live next to the log: the consumer-group coordinator
//! (classic protocol). `group` holds the protocol's state machine as pure,
//! clock-driven logic, kept apart from networking so every rule is unit tested.
//!
//! Work in progress for the consumer-groups issue: the state machine is
//! complete and tested; the request handlers, the `__consumer_offsets` topic
//! and the offset store are not wired yet, and FindCoordinator still answers
//! COORDINATOR_NOT_AVAILABLE.

pub mod group;
pub mod groups;
pub mod offset_store;
pub mod offsets_format;
