//! InitProducerId for idempotent producers: a fresh producer id with epoch 0
//! from this broker's block of ids (granted through the metadata log, so ids
//! are never reused, even across restarts). With a transactional id the
//! transaction coordinator answers (`transactions`).

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::broker::Broker;
use crate::error::ResponseError;

pub async fn init_producer_id(
    broker: &Broker,
    request: InitProducerIdRequest,
    version: i16,
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
    if let Some(txn_id) = &request.transactional_id {
        return super::transactions::init_producer_id(broker, &request, txn_id, version).await;
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
