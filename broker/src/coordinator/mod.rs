//! Coordinators that live next to the log: the consumer-group coordinator
//! (classic protocol). `group` holds the protocol's state machine as pure,
//! clock-driven logic, kept apart from networking so every rule is unit tested.
//! `groups` owns the waiting, the `__consumer_offsets` partitions this
//! broker leads (`offset_store` replays one, `offsets_format` is Kafka's
//! record format) and offset expiry.

pub mod group;
pub mod groups;
pub mod offset_store;
pub mod offsets_format;
