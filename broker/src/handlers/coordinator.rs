//! FindCoordinator. This broker runs no group or transaction coordinator
//! yet, so every key is answered as Kafka answers while a coordinator is
//! unavailable (COORDINATOR_NOT_AVAILABLE, a retriable error). Clients also
//! read the presence of this API as the broker supporting lz4 batches.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};

use super::str_bytes;
use crate::error::ResponseError;

const UNAVAILABLE: &str = "no group or transaction coordinator runs on this broker yet";

pub fn find_coordinator(request: FindCoordinatorRequest, version: i16) -> FindCoordinatorResponse {
    let mut response = FindCoordinatorResponse::default();
    let code = ResponseError::CoordinatorNotAvailable.code();
    if version >= 4 {
        response.coordinators = request
            .coordinator_keys
            .into_iter()
            .map(|key| {
                let mut c = Coordinator::default();
                c.key = key;
                c.node_id = BrokerId(-1);
                c.port = -1;
                c.error_code = code;
                c.error_message = Some(str_bytes(UNAVAILABLE));
                c
            })
            .collect();
    } else {
        response.error_code = code;
        response.error_message = Some(str_bytes(UNAVAILABLE));
        response.node_id = BrokerId(-1);
        response.port = -1;
    }
    response
}
