//! InitProducerId for idempotent producers: a fresh producer id with epoch 0
//! from this broker's block of ids (granted through the metadata log, so ids
//! are never reused, even across restarts).

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::broker::Broker;
use crate::error::ResponseError;

pub async fn init_producer_id(
    broker: &Broker,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let mut response = InitProducerIdResponse::default();
    response.producer_id = ProducerId(-1);
    response.producer_epoch = -1;
    if request
        .transactional_id
        .as_ref()
        .is_some_and(|id| id.is_empty())
    {
        // Kafka refuses an empty transactional id (null means "idempotent only").
        response.error_code = ResponseError::InvalidRequest.code();
        return response;
    }
    if request.transactional_id.is_some() {
        // Transactions need the transaction coordinator, which this broker
        // does not run; Kafka answers this way when it is unavailable.
        response.error_code = ResponseError::CoordinatorNotAvailable.code();
        return response;
    }
    match broker.next_producer_id().await {
        Ok(id) => {
            response.producer_id = ProducerId(id);
            response.producer_epoch = 0;
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot allocate a producer id");
            response.error_code = e.code();
        }
    }
    response
}
