//! What can go wrong, and what the user should do about it. Every error
//! prints as one `error:` line naming the broker and the Kafka error, then
//! one `hint:` line; the exit code says whose fault it was.

use std::fmt;

use kafka_protocol::error::ResponseError;

/// Exit code of a command that worked.
pub const EXIT_OK: i32 = 0;
/// Exit code of an error reported by (or reaching) the cluster, and of a
/// check that found the cluster unhealthy.
pub const EXIT_CLUSTER: i32 = 1;
/// Exit code of a mistake on the command line or in an input file (clap
/// uses the same code for its own parse errors).
pub const EXIT_USAGE: i32 = 2;

#[derive(Debug)]
pub enum CliError {
    /// The command line or an input file is wrong; nothing was sent.
    Usage { message: String, hint: String },
    /// A broker answered with a Kafka error code.
    Kafka {
        action: String,
        broker: String,
        code: i16,
        message: Option<String>,
    },
    /// The cluster could not be reached, timed out, or is not in the state
    /// the command needs.
    Failed { message: String, hint: String },
}

pub type Result<T> = std::result::Result<T, CliError>;

impl CliError {
    pub fn usage(message: impl Into<String>, hint: impl Into<String>) -> Self {
        CliError::Usage {
            message: message.into(),
            hint: hint.into(),
        }
    }

    pub fn failed(message: impl Into<String>, hint: impl Into<String>) -> Self {
        CliError::Failed {
            message: message.into(),
            hint: hint.into(),
        }
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage { .. } => EXIT_USAGE,
            CliError::Kafka { .. } | CliError::Failed { .. } => EXIT_CLUSTER,
        }
    }

    /// The Kafka error code, for callers that tolerate some of them.
    pub fn kafka_code(&self) -> Option<i16> {
        match self {
            CliError::Kafka { code, .. } => Some(*code),
            _ => None,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Usage { message, hint } | CliError::Failed { message, hint } => {
                write!(f, "error: {message}\nhint: {hint}")
            }
            CliError::Kafka {
                action,
                broker,
                code,
                message,
            } => {
                write!(
                    f,
                    "error: {action}: {broker} answered {}",
                    error_name(*code)
                )?;
                if let Some(message) = message.as_deref().filter(|m| !m.is_empty()) {
                    write!(f, " ({message})")?;
                }
                write!(f, "\nhint: {}", advice(*code))
            }
        }
    }
}

/// Kafka's name for an error code, as the protocol guide spells it
/// (`UNKNOWN_TOPIC_OR_PARTITION`).
pub fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        None => "NONE".to_string(),
        Some(ResponseError::Unknown(code)) => format!("error code {code}"),
        Some(error) => {
            // The crate names variants in CamelCase after Kafka's names.
            let camel = format!("{error:?}");
            let mut name = String::with_capacity(camel.len() + 8);
            for (i, c) in camel.chars().enumerate() {
                if c.is_ascii_uppercase() && i > 0 {
                    name.push('_');
                }
                name.push(c.to_ascii_uppercase());
            }
            name
        }
    }
}

/// One line of advice for the errors a user of this tool meets.
fn advice(code: i16) -> &'static str {
    use ResponseError as E;
    match ResponseError::try_from_code(code) {
        Some(E::UnknownTopicOrPartition) | Some(E::UnknownTopicId) => {
            "check the name with `tideline topic list`"
        }
        Some(E::TopicAlreadyExists) => "pick another name, or add --if-not-exists",
        Some(E::InvalidPartitions) => "give more partitions than the topic has, and at least 1",
        Some(E::InvalidReplicationFactor) => {
            "the replication factor must be at least 1 and at most the number of brokers (`tideline cluster info`)"
        }
        Some(E::InvalidReplicaAssignment) => {
            "every replica must be a live broker id, listed once (`tideline cluster info`)"
        }
        Some(E::InvalidConfig) => "check the key and value against Kafka's configuration reference",
        Some(E::PolicyViolation) => "the topic's cleanup.policy or the broker's policy forbids this",
        Some(E::OffsetOutOfRange) => {
            "the offset must lie between the partition's earliest and latest offsets (`tideline topic describe`)"
        }
        Some(E::NotLeaderOrFollower) | Some(E::LeaderNotAvailable) => {
            "leadership is moving; retry in a moment, or check `tideline cluster health`"
        }
        Some(E::NotController) | Some(E::NotCoordinator) | Some(E::CoordinatorNotAvailable) => {
            "the cluster is electing; retry in a moment"
        }
        Some(E::CoordinatorLoadInProgress) => "the group coordinator is loading; retry in a moment",
        Some(E::RequestTimedOut) => "the cluster did not finish in time; check `tideline cluster health`",
        Some(E::NonEmptyGroup) => "stop the group's consumers first (`tideline group describe`)",
        Some(E::GroupIdNotFound) => "check the name with `tideline group list`",
        Some(E::GroupSubscribedToTopic) => "stop the consumers subscribed to that topic first",
        Some(E::NoReassignmentInProgress) => "list moves in progress with `tideline partition reassignments`",
        Some(E::TopicDeletionDisabled) => "the brokers run with delete.topic.enable=false",
        Some(E::ElectionNotNeeded) => "the preferred replica already leads",
        Some(E::EligibleLeadersNotAvailable) | Some(E::PreferredLeaderNotAvailable) => {
            "no eligible replica is alive; bring its brokers back, or use --type unclean (may lose data)"
        }
        Some(E::KafkaStorageError) => "a log directory on that broker is offline; check its disks",
        Some(E::NotEnoughReplicas) | Some(E::NotEnoughReplicasAfterAppend) => {
            "fewer in-sync replicas than min.insync.replicas; check `tideline cluster health`"
        }
        Some(E::MessageTooLarge) | Some(E::RecordListTooLarge) => {
            "raise max.message.bytes on the topic, or send smaller records"
        }
        Some(E::UnsupportedVersion) => "the broker is older than this tool; upgrade the cluster",
        Some(E::InvalidRequest) => "the broker refused the request as malformed; check the arguments",
        _ => "see Kafka's protocol guide for this error code",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_are_kafkas() {
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(36), "TOPIC_ALREADY_EXISTS");
        assert_eq!(error_name(56), "KAFKA_STORAGE_ERROR");
        assert_eq!(error_name(0), "NONE");
        assert_eq!(error_name(30000), "error code 30000");
    }

    #[test]
    fn a_kafka_error_is_two_lines_naming_the_broker() {
        let e = CliError::Kafka {
            action: "creating topic orders".into(),
            broker: "broker 1 (127.0.0.1:9092)".into(),
            code: 36,
            message: Some("Topic 'orders' already exists.".into()),
        };
        let text = e.to_string();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.starts_with(
            "error: creating topic orders: broker 1 (127.0.0.1:9092) answered TOPIC_ALREADY_EXISTS"
        ));
        assert!(text.contains("hint: "));
        assert_eq!(e.exit_code(), EXIT_CLUSTER);
        assert_eq!(CliError::usage("x", "y").exit_code(), EXIT_USAGE);
    }
}
