//! A Kafka error code with the message that goes back to the client.

pub use kafka_protocol::error::ResponseError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub kind: ResponseError,
    pub message: String,
}

impl ApiError {
    pub fn new(kind: ResponseError, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
        }
    }

    pub fn code(&self) -> i16 {
        self.kind.code()
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for ApiError {}
