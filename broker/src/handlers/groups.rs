//! The classic group membership APIs (JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup) and group administration (ListGroups, DescribeGroups,
//! DeleteGroups). The rules live in `coordinator::group`; these handlers
//! translate between the wire and the coordinator.

use std::net::SocketAddr;

use bytes::Bytes;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse,
    GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse,
    LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, SyncGroupRequest,
    SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::str_bytes;
use crate::broker::Broker;
use crate::coordinator::group::JoinRequest;
use crate::error::ResponseError;

/// Kafka's authorized-operations sentinel: "not requested".
const OPERATIONS_OMITTED: i32 = i32::MIN;

fn opt_string(s: &Option<StrBytes>) -> Option<String> {
    s.as_ref().map(|s| s.to_string())
}

pub async fn join_group(
    broker: &Broker,
    request: JoinGroupRequest,
    version: i16,
    client_id: &str,
    peer: SocketAddr,
) -> JoinGroupResponse {
    let group_id = request.group_id.to_string();
    let mut response = JoinGroupResponse::default();
    response.generation_id = -1;
    response.member_id = request.member_id.clone();
    if version < 7 {
        // A non-nullable string before v7.
        response.protocol_name = Some(StrBytes::default());
    }
    if group_id.is_empty() {
        response.error_code = ResponseError::InvalidGroupId.code();
        return response;
    }
    let join = JoinRequest {
        member_id: request.member_id.to_string(),
        group_instance_id: opt_string(&request.group_instance_id),
        client_id: client_id.to_string(),
        client_host: format!("/{}", peer.ip()),
        session_timeout_ms: request.session_timeout_ms,
        // v0 has no rebalance timeout; Kafka uses the session timeout.
        rebalance_timeout_ms: if version >= 1 {
            request.rebalance_timeout_ms
        } else {
            request.session_timeout_ms
        },
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect(),
        require_known_member_id: version >= 4,
    };
    let result = broker.groups.join(&group_id, join).await;
    response.error_code = result.error.map_or(0, |e| e.code());
    response.generation_id = result.generation_id;
    response.member_id = str_bytes(result.member_id);
    response.leader = str_bytes(result.leader);
    if version >= 7 {
        response.protocol_type = result.protocol_type.map(str_bytes);
        response.protocol_name = result.protocol_name.map(str_bytes);
    } else {
        response.protocol_name = Some(str_bytes(result.protocol_name.unwrap_or_default()));
    }
    if version >= 9 {
        response.skip_assignment = result.skip_assignment;
    }
    response.members = result
        .members
        .into_iter()
        .map(|m| {
            let mut member = JoinGroupResponseMember::default();
            member.member_id = str_bytes(m.member_id);
            if version >= 5 {
                member.group_instance_id = m.group_instance_id.map(str_bytes);
            }
            member.metadata = m.metadata;
            member
        })
        .collect();
    response
}

pub async fn sync_group(
    broker: &Broker,
    request: SyncGroupRequest,
    version: i16,
) -> SyncGroupResponse {
    let group_id = request.group_id.to_string();
    let mut response = SyncGroupResponse::default();
    if group_id.is_empty() {
        response.error_code = ResponseError::InvalidGroupId.code();
        return response;
    }
    let assignments: Vec<(String, Bytes)> = request
        .assignments
        .iter()
        .map(|a| (a.member_id.to_string(), a.assignment.clone()))
        .collect();
    let result = broker
        .groups
        .sync(
            &group_id,
            &request.member_id,
            &opt_string(&request.group_instance_id),
            request.generation_id,
            assignments,
        )
        .await;
    // v5 names the protocol it expects; a mismatch is a client bug.
    let mismatch = |asked: &Option<StrBytes>, actual: &Option<String>| matches!((asked, actual), (Some(a), Some(b)) if a.as_str() != b);
    if result.error.is_none()
        && version >= 5
        && (mismatch(&request.protocol_type, &result.protocol_type)
            || mismatch(&request.protocol_name, &result.protocol_name))
    {
        response.error_code = ResponseError::InconsistentGroupProtocol.code();
        return response;
    }
    response.error_code = result.error.map_or(0, |e| e.code());
    if version >= 5 {
        response.protocol_type = result.protocol_type.map(str_bytes);
        response.protocol_name = result.protocol_name.map(str_bytes);
    }
    response.assignment = result.assignment;
    response
}

pub fn heartbeat(broker: &Broker, request: HeartbeatRequest) -> HeartbeatResponse {
    let group_id = request.group_id.to_string();
    let mut response = HeartbeatResponse::default();
    let result = if group_id.is_empty() {
        Err(ResponseError::InvalidGroupId)
    } else {
        broker.groups.heartbeat(
            &group_id,
            &request.member_id,
            &opt_string(&request.group_instance_id),
            request.generation_id,
        )
    };
    response.error_code = result.err().map_or(0, |e| e.code());
    response
}

pub fn leave_group(
    broker: &Broker,
    request: LeaveGroupRequest,
    version: i16,
) -> LeaveGroupResponse {
    let group_id = request.group_id.to_string();
    let mut response = LeaveGroupResponse::default();
    // v3+ leaves a batch of members (static members by instance id).
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        request
            .members
            .iter()
            .map(|m| (m.member_id.to_string(), opt_string(&m.group_instance_id)))
            .collect()
    } else {
        vec![(request.member_id.to_string(), None)]
    };
    if let Some(reason) = request.members.iter().find_map(|m| m.reason.as_ref()) {
        tracing::info!(group = %group_id, %reason, "members leaving");
    }
    let result = if group_id.is_empty() {
        Err(ResponseError::InvalidGroupId)
    } else {
        broker.groups.leave(&group_id, &members)
    };
    match result {
        Ok(per_member) if version >= 3 => {
            response.members = members
                .into_iter()
                .zip(per_member)
                .map(|((member_id, instance), error)| {
                    let mut m = MemberResponse::default();
                    m.member_id = str_bytes(member_id);
                    m.group_instance_id = instance.map(str_bytes);
                    m.error_code = error.map_or(0, |e| e.code());
                    m
                })
                .collect();
        }
        Ok(per_member) => {
            response.error_code = per_member[0].map_or(0, |e| e.code());
        }
        Err(e) => response.error_code = e.code(),
    }
    response
}

pub fn list_groups(
    broker: &Broker,
    request: ListGroupsRequest,
    version: i16,
) -> ListGroupsResponse {
    let wanted_states: Vec<String> = request
        .states_filter
        .iter()
        .map(|s| s.to_lowercase())
        .collect();
    // Every group here uses the classic protocol.
    let classic_wanted = request.types_filter.is_empty()
        || request
            .types_filter
            .iter()
            .any(|t| t.eq_ignore_ascii_case("classic"));
    let mut response = ListGroupsResponse::default();
    if !classic_wanted {
        return response;
    }
    response.groups = broker
        .groups
        .list_groups()
        .into_iter()
        .filter(|(_, _, state)| {
            wanted_states.is_empty() || wanted_states.contains(&state.name().to_lowercase())
        })
        .map(|(id, protocol_type, state)| {
            let mut g = ListedGroup::default();
            g.group_id = GroupId(str_bytes(id));
            g.protocol_type = str_bytes(protocol_type);
            if version >= 4 {
                g.group_state = str_bytes(state.name());
            }
            if version >= 5 {
                g.group_type = str_bytes("classic");
            }
            g
        })
        .collect();
    response
}

pub fn describe_groups(
    broker: &Broker,
    request: DescribeGroupsRequest,
    version: i16,
) -> DescribeGroupsResponse {
    let mut response = DescribeGroupsResponse::default();
    for group_id in request.groups {
        let mut described = DescribedGroup::default();
        described.group_id = group_id.clone();
        if version >= 3 {
            described.authorized_operations = OPERATIONS_OMITTED;
        }
        match broker.groups.describe(&group_id) {
            Ok(group) => {
                described.group_state = str_bytes(group.state.name());
                described.protocol_type = str_bytes(group.protocol_type);
                described.protocol_data = str_bytes(group.protocol_name.clone());
                described.members = group
                    .members
                    .into_iter()
                    .map(|m| {
                        let mut member = DescribedGroupMember::default();
                        member.member_metadata = m
                            .protocols
                            .iter()
                            .find(|(name, _)| *name == group.protocol_name)
                            .map(|(_, metadata)| metadata.clone())
                            .unwrap_or_default();
                        member.member_id = str_bytes(m.member_id);
                        if version >= 4 {
                            member.group_instance_id = m.group_instance_id.map(str_bytes);
                        }
                        member.client_id = str_bytes(m.client_id);
                        member.client_host = str_bytes(m.client_host);
                        member.member_assignment = m.assignment;
                        member
                    })
                    .collect();
            }
            Err(e) => {
                described.error_code = e.code();
                described.group_state = str_bytes("Dead");
            }
        }
        response.groups.push(described);
    }
    response
}

pub fn delete_groups(broker: &Broker, request: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut response = DeleteGroupsResponse::default();
    for group_id in request.groups_names {
        let mut result = DeletableGroupResult::default();
        let outcome = if group_id.is_empty() {
            Err(ResponseError::InvalidGroupId)
        } else {
            broker.groups.delete_group(&group_id)
        };
        result.group_id = group_id;
        result.error_code = outcome.err().map_or(0, |e| e.code());
        response.results.push(result);
    }
    response
}
