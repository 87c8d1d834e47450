//! DescribeCluster, and the broker list shared with Metadata.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::str_bytes;
use crate::broker::Broker;
use crate::error::ResponseError;

/// A broker as clients should reach it.
pub struct BrokerEndpoint {
    pub id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

/// The brokers registered in the metadata log and not fenced (as Kafka,
/// clients are only told about brokers the controller hears from).
pub fn brokers(broker: &Broker) -> Vec<BrokerEndpoint> {
    let image = broker.image();
    image
        .brokers
        .values()
        .filter(|b| image.is_live(b.broker_id))
        .map(|b| BrokerEndpoint {
            id: b.broker_id,
            host: b.host.clone(),
            port: b.port,
            rack: b.rack.clone(),
        })
        .collect()
}

/// The active controller's id, or -1 while none is elected.
pub fn controller_id(broker: &Broker) -> i32 {
    broker
        .quorum
        .active_controller()
        .map(|id| id as i32)
        .unwrap_or(-1)
}

pub fn describe_cluster(
    broker: &Broker,
    request: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let mut response = DescribeClusterResponse::default();
    // endpoint_type 1 = brokers, 2 = controllers (KIP-919); we are both.
    if request.endpoint_type != 1 && request.endpoint_type != 2 {
        response.error_code = ResponseError::UnsupportedEndpointType.code();
        response.error_message = Some(str_bytes(format!(
            "unknown endpoint type {}",
            request.endpoint_type
        )));
        return response;
    }
    response.endpoint_type = request.endpoint_type;
    response.cluster_id = str_bytes(broker.cluster_id.clone());
    response.controller_id = BrokerId(controller_id(broker));
    response.cluster_authorized_operations = i32::MIN;
    response.brokers = brokers(broker)
        .into_iter()
        .map(|b| {
            let mut d = DescribeClusterBroker::default();
            d.broker_id = BrokerId(b.id);
            d.host = str_bytes(b.host);
            d.port = b.port;
            d.rack = b.rack.map(str_bytes);
            d.is_fenced = false;
            d
        })
        .collect();
    response
}
