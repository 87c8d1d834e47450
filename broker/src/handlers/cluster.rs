//! DescribeCluster and UnregisterBroker, and the broker list shared with
//! Metadata.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{
    BrokerId, DescribeClusterRequest, DescribeClusterResponse, UnregisterBrokerRequest,
    UnregisterBrokerResponse,
};

use super::{message, str_bytes};
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

/// The active controller's id as a response listing the brokers `listed`
/// may give it: -1 while none is elected, and also while this broker's
/// image does not yet hold the controller's registration (just after
/// start-up). A client sends controller-bound requests to the broker with
/// this id in the same response's broker list; librdkafka, given an id it
/// cannot find there, waits without refreshing metadata until its request
/// times out, while -1 makes it ask again.
pub fn controller_id(broker: &Broker, listed: &[BrokerEndpoint]) -> i32 {
    listed_controller(broker.quorum.active_controller(), listed)
}

fn listed_controller(active: Option<u64>, listed: &[BrokerEndpoint]) -> i32 {
    active
        .map(|id| id as i32)
        .filter(|id| listed.iter().any(|b| b.id == *id))
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
    let listed = brokers(broker);
    response.controller_id = BrokerId(controller_id(broker, &listed));
    response.cluster_authorized_operations = i32::MIN;
    let mut brokers: Vec<DescribeClusterBroker> =
        listed.into_iter().map(|b| described(b, false)).collect();
    // v2 (KIP-1073) may ask for the registered brokers the controller has
    // fenced too, so tools can tell a broker that is down from one that
    // was never there.
    if request.include_fenced_brokers {
        let image = broker.image();
        brokers.extend(
            image
                .brokers
                .values()
                .filter(|b| !image.is_live(b.broker_id))
                .map(|b| {
                    let endpoint = BrokerEndpoint {
                        id: b.broker_id,
                        host: b.host.clone(),
                        port: b.port,
                        rack: b.rack.clone(),
                    };
                    described(endpoint, true)
                }),
        );
        brokers.sort_by_key(|b| b.broker_id.0);
    }
    response.brokers = brokers;
    response
}

/// UnregisterBroker (KIP-631): a broker that left the cluster for good is
/// no longer listed. Meant for a broker that was drained and stopped; one
/// still running is unregistered too (as in Kafka), and is back in the
/// cluster when it restarts.
pub async fn unregister_broker(
    broker: &Broker,
    request: UnregisterBrokerRequest,
) -> UnregisterBrokerResponse {
    let mut response = UnregisterBrokerResponse::default();
    let id = request.broker_id.0;
    let still_running = broker.image().is_live(id);
    match broker.controller.unregister_broker(id).await {
        Ok(()) => {
            if still_running {
                tracing::warn!(
                    broker = id,
                    "unregistered a broker that is still running: clients are no longer sent to it until it restarts"
                );
            } else {
                tracing::info!(broker = id, "broker unregistered");
            }
        }
        Err(e) => {
            response.error_code = e.kind.code();
            response.error_message = message(&e);
        }
    }
    response
}

fn described(b: BrokerEndpoint, fenced: bool) -> DescribeClusterBroker {
    let mut d = DescribeClusterBroker::default();
    d.broker_id = BrokerId(b.id);
    d.host = str_bytes(b.host);
    d.port = b.port;
    d.rack = b.rack.map(str_bytes);
    d.is_fenced = fenced;
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(id: i32) -> BrokerEndpoint {
        BrokerEndpoint {
            id,
            host: "127.0.0.1".into(),
            port: 9092,
            rack: None,
        }
    }

    #[test]
    fn the_controller_is_named_only_when_the_same_response_lists_it() {
        let listed = [endpoint(2), endpoint(3)];
        assert_eq!(listed_controller(Some(3), &listed), 3);
        assert_eq!(
            listed_controller(Some(1), &listed),
            -1,
            "not yet in this image"
        );
        assert_eq!(listed_controller(None, &listed), -1, "none elected");
    }
}
