//! The classic consumer-group protocol (JoinGroup / SyncGroup / Heartbeat /
//! LeaveGroup) as a state machine, following Kafka's `GroupCoordinator`:
//!
//! ```text
//! Empty ──join──▶ PreparingRebalance ──all joined / timeout──▶ CompletingRebalance
//!   ▲                  ▲      ▲                                      │ leader's SyncGroup
//!   └─ last member ────┘      └──── join with new metadata, leave, ──┴──▶ Stable
//!      leaves/expires                 session expiry
//! ```
//!
//! Calls take the current time and return the answer for the caller, or
//! `Pending` when the caller must wait; answers released for *other* waiting
//! members come back as [`Effect`]s. The async layer owns the waiting.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use uuid::Uuid;

use super::offsets_format::{GroupMetadataValue, MemberMetadata};
use crate::error::ResponseError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// The name DescribeGroups and ListGroups report.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// Coordinator-wide limits (Kafka's `group.*` broker configs).
#[derive(Debug, Clone, Copy)]
pub struct GroupLimits {
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    pub initial_rebalance_delay_ms: i64,
    pub max_size: usize,
}

impl Default for GroupLimits {
    fn default() -> Self {
        GroupLimits {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            max_size: i32::MAX as usize,
        }
    }
}

#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    /// (name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+ requires a member id before a member is admitted.
    pub require_known_member_id: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JoinMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub metadata: Bytes,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JoinResult {
    pub error: Option<ResponseError>,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Filled for the leader only: every member and its metadata for the chosen protocol.
    pub members: Vec<JoinMember>,
    /// The leader already has an assignment (a static leader rejoined); it
    /// must not compute a new one (JoinGroup v9 `skip_assignment`).
    pub skip_assignment: bool,
}

impl JoinResult {
    pub fn error(error: ResponseError, member_id: &str) -> JoinResult {
        JoinResult {
            error: Some(error),
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
            skip_assignment: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SyncResult {
    pub error: Option<ResponseError>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResult {
    pub fn error(error: ResponseError) -> SyncResult {
        SyncResult {
            error: Some(error),
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

/// An immediate answer, or "wait: an [`Effect`] will carry it".
#[derive(Debug, Clone, PartialEq)]
pub enum Reply<T> {
    Now(T),
    Pending,
}

/// An answer released for a member that is waiting.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Join(String, JoinResult),
    Sync(String, SyncResult),
}

#[derive(Debug, Clone)]
pub struct Member {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    last_heartbeat_ms: i64,
    awaiting_join: bool,
    awaiting_sync: bool,
}

impl Member {
    fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

#[derive(Debug)]
pub struct Group {
    pub group_id: String,
    pub state: GroupState,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: Option<String>,
    /// Members by id, in join order (the key is the join sequence number).
    members: BTreeMap<u64, Member>,
    index: HashMap<String, u64>,
    next_seq: u64,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with their expiry time.
    pending: HashMap<String, i64>,
    static_members: HashMap<String, String>,
    rebalance_deadline_ms: i64,
    /// While the first members join an empty group, wait this long for more.
    initial_delay_until_ms: Option<i64>,
    limits: GroupLimits,
}

impl Group {
    pub fn new(group_id: &str, limits: GroupLimits) -> Group {
        Group {
            group_id: group_id.to_string(),
            state: GroupState::Empty,
            generation_id: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: BTreeMap::new(),
            index: HashMap::new(),
            next_seq: 0,
            pending: HashMap::new(),
            static_members: HashMap::new(),
            rebalance_deadline_ms: 0,
            initial_delay_until_ms: None,
            limits,
        }
    }

    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    fn member(&self, id: &str) -> Option<&Member> {
        self.index.get(id).and_then(|seq| self.members.get(seq))
    }

    fn member_mut(&mut self, id: &str) -> Option<&mut Member> {
        let seq = *self.index.get(id)?;
        self.members.get_mut(&seq)
    }

    fn add_member(&mut self, member: Member) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.index.insert(member.member_id.clone(), seq);
        if let Some(instance) = &member.group_instance_id {
            self.static_members
                .insert(instance.clone(), member.member_id.clone());
        }
        self.members.insert(seq, member);
    }

    fn remove_member(&mut self, id: &str) -> Option<Member> {
        let seq = self.index.remove(id)?;
        let member = self.members.remove(&seq)?;
        if let Some(instance) = &member.group_instance_id {
            if self.static_members.get(instance).map(String::as_str) == Some(id) {
                self.static_members.remove(instance);
            }
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = self.members.values().next().map(|m| m.member_id.clone());
        }
        Some(member)
    }

    /// Protocols every member (and the candidate) supports.
    fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if protocols.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        protocols.iter().any(|(name, _)| {
            self.members
                .values()
                .all(|m| m.protocols.iter().any(|(n, _)| n == name))
        })
    }

    pub fn join(&mut self, now: i64, req: JoinRequest) -> (Reply<JoinResult>, Vec<Effect>) {
        let mut effects = Vec::new();
        if self.state == GroupState::Dead {
            return (
                Reply::Now(JoinResult::error(
                    ResponseError::CoordinatorNotAvailable,
                    &req.member_id,
                )),
                effects,
            );
        }
        if req.session_timeout_ms < self.limits.min_session_timeout_ms
            || req.session_timeout_ms > self.limits.max_session_timeout_ms
        {
            return (
                Reply::Now(JoinResult::error(
                    ResponseError::InvalidSessionTimeout,
                    &req.member_id,
                )),
                effects,
            );
        }
        if !self.supports(&req.protocol_type, &req.protocols) {
            return (
                Reply::Now(JoinResult::error(
                    ResponseError::InconsistentGroupProtocol,
                    &req.member_id,
                )),
                effects,
            );
        }

        if req.member_id.is_empty() {
            // A static member that restarts takes over its old identity.
            if let Some(instance) = &req.group_instance_id {
                if let Some(old_id) = self.static_members.get(instance).cloned() {
                    return self.replace_static_member(now, &old_id, req);
                }
            }
            if self.members.len() >= self.limits.max_size {
                return (
                    Reply::Now(JoinResult::error(ResponseError::GroupMaxSizeReached, "")),
                    effects,
                );
            }
            let member_id = format!("{}-{}", req.client_id, Uuid::new_v4());
            if req.require_known_member_id && req.group_instance_id.is_none() {
                self.pending
                    .insert(member_id.clone(), now + req.session_timeout_ms as i64);
                return (
                    Reply::Now(JoinResult::error(
                        ResponseError::MemberIdRequired,
                        &member_id,
                    )),
                    effects,
                );
            }
            self.admit(now, member_id.clone(), req, &mut effects);
            let reply = self.pending_join_reply(&member_id, &mut effects);
            return (reply, effects);
        }

        if let Some(instance) = &req.group_instance_id {
            match self.static_members.get(instance) {
                Some(id) if *id != req.member_id => {
                    return (
                        Reply::Now(JoinResult::error(
                            ResponseError::FencedInstanceId,
                            &req.member_id,
                        )),
                        effects,
                    )
                }
                _ => {}
            }
        }
        if self.pending.remove(&req.member_id).is_some() {
            if self.members.len() >= self.limits.max_size {
                return (
                    Reply::Now(JoinResult::error(
                        ResponseError::GroupMaxSizeReached,
                        &req.member_id,
                    )),
                    effects,
                );
            }
            let member_id = req.member_id.clone();
            self.admit(now, member_id.clone(), req, &mut effects);
            let reply = self.pending_join_reply(&member_id, &mut effects);
            return (reply, effects);
        }
        let Some(member) = self.member(&req.member_id) else {
            return (
                Reply::Now(JoinResult::error(
                    ResponseError::UnknownMemberId,
                    &req.member_id,
                )),
                effects,
            );
        };
        let unchanged = member.protocols == req.protocols;
        let is_leader = self.leader.as_deref() == Some(req.member_id.as_str());
        match self.state {
            GroupState::PreparingRebalance => {
                self.update_member(now, &req);
                self.try_complete_join(now, &mut effects);
            }
            GroupState::CompletingRebalance | GroupState::Stable
                if unchanged && !(is_leader && self.state == GroupState::Stable) =>
            {
                // Same metadata: hand back the current generation, no rebalance.
                let result = self.join_result_for(&req.member_id, false);
                return (Reply::Now(result), effects);
            }
            _ => {
                self.update_member(now, &req);
                self.prepare_rebalance(now, &mut effects);
                self.try_complete_join(now, &mut effects);
            }
        }
        (
            self.pending_join_reply(&req.member_id, &mut effects),
            effects,
        )
    }

    /// If the join already completed (the effects hold this member's answer),
    /// return it directly instead of as an effect.
    fn pending_join_reply(&self, member_id: &str, effects: &mut Vec<Effect>) -> Reply<JoinResult> {
        if let Some(pos) = effects
            .iter()
            .position(|e| matches!(e, Effect::Join(id, _) if id == member_id))
        {
            if let Effect::Join(_, result) = effects.remove(pos) {
                return Reply::Now(result);
            }
        }
        Reply::Pending
    }

    fn admit(&mut self, now: i64, member_id: String, req: JoinRequest, effects: &mut Vec<Effect>) {
        let was_empty = self.members.is_empty();
        if was_empty {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        self.add_member(Member {
            member_id: member_id.clone(),
            group_instance_id: req.group_instance_id.clone(),
            client_id: req.client_id.clone(),
            client_host: req.client_host.clone(),
            session_timeout_ms: req.session_timeout_ms,
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            protocol_type: req.protocol_type.clone(),
            protocols: req.protocols.clone(),
            assignment: Bytes::new(),
            last_heartbeat_ms: now,
            awaiting_join: true,
            awaiting_sync: false,
        });
        if self.state != GroupState::PreparingRebalance {
            if self.state == GroupState::Empty {
                self.initial_delay_until_ms = Some(now + self.limits.initial_rebalance_delay_ms);
            }
            self.prepare_rebalance(now, effects);
        }
        self.try_complete_join(now, effects);
    }

    fn update_member(&mut self, now: i64, req: &JoinRequest) {
        if let Some(m) = self.member_mut(&req.member_id) {
            m.protocols = req.protocols.clone();
            m.session_timeout_ms = req.session_timeout_ms;
            m.rebalance_timeout_ms = req.rebalance_timeout_ms;
            m.last_heartbeat_ms = now;
            m.awaiting_join = true;
        }
    }

    fn replace_static_member(
        &mut self,
        now: i64,
        old_id: &str,
        req: JoinRequest,
    ) -> (Reply<JoinResult>, Vec<Effect>) {
        let mut effects = Vec::new();
        let mut member = self
            .remove_member(old_id)
            .expect("static mapping points at a member");
        let was_leader = self.leader.is_none() || self.leader.as_deref() == Some(old_id);
        // Anyone still waiting under the old id is fenced.
        if member.awaiting_join {
            effects.push(Effect::Join(
                old_id.to_string(),
                JoinResult::error(ResponseError::FencedInstanceId, old_id),
            ));
        }
        if member.awaiting_sync {
            effects.push(Effect::Sync(
                old_id.to_string(),
                SyncResult::error(ResponseError::FencedInstanceId),
            ));
        }
        let new_id = format!("{}-{}", req.client_id, Uuid::new_v4());
        let unchanged = member.protocols == req.protocols;
        member.member_id = new_id.clone();
        member.protocols = req.protocols.clone();
        member.session_timeout_ms = req.session_timeout_ms;
        member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        member.last_heartbeat_ms = now;
        member.awaiting_join = true;
        member.awaiting_sync = false;
        self.add_member(member);
        if was_leader {
            self.leader = Some(new_id.clone());
        }
        match self.state {
            GroupState::Stable if unchanged => {
                // Restarted within its session: keep the assignment, no rebalance.
                if let Some(m) = self.member_mut(&new_id) {
                    m.awaiting_join = false;
                }
                let result = self.join_result_for(&new_id, was_leader);
                (Reply::Now(result), effects)
            }
            GroupState::PreparingRebalance => {
                self.try_complete_join(now, &mut effects);
                let reply = self.pending_join_reply(&new_id, &mut effects);
                (reply, effects)
            }
            _ => {
                self.prepare_rebalance(now, &mut effects);
                self.try_complete_join(now, &mut effects);
                let reply = self.pending_join_reply(&new_id, &mut effects);
                (reply, effects)
            }
        }
    }

    fn join_result_for(&self, member_id: &str, skip_assignment: bool) -> JoinResult {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        let is_leader = self.leader.as_deref() == Some(member_id);
        JoinResult {
            error: None,
            generation_id: self.generation_id,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members: if is_leader {
                self.members
                    .values()
                    .map(|m| JoinMember {
                        member_id: m.member_id.clone(),
                        group_instance_id: m.group_instance_id.clone(),
                        metadata: m.metadata_for(&protocol),
                    })
                    .collect()
            } else {
                Vec::new()
            },
            skip_assignment: skip_assignment && is_leader,
        }
    }

    fn prepare_rebalance(&mut self, now: i64, effects: &mut Vec<Effect>) {
        // Members waiting for an assignment must rejoin.
        for m in self.members.values_mut() {
            if m.awaiting_sync {
                m.awaiting_sync = false;
                effects.push(Effect::Sync(
                    m.member_id.clone(),
                    SyncResult::error(ResponseError::RebalanceInProgress),
                ));
            }
        }
        let timeout = self
            .members
            .values()
            .map(|m| m.rebalance_timeout_ms as i64)
            .max()
            .unwrap_or(0);
        self.rebalance_deadline_ms = now + timeout;
        self.state = GroupState::PreparingRebalance;
        tracing::debug!(group = %self.group_id, generation = self.generation_id, "preparing to rebalance");
    }

    fn try_complete_join(&mut self, now: i64, effects: &mut Vec<Effect>) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let delaying = self.initial_delay_until_ms.is_some_and(|until| now < until);
        let all_joined = self.members.values().all(|m| m.awaiting_join) && self.pending.is_empty();
        let timed_out = now >= self.rebalance_deadline_ms;
        if !(timed_out || (all_joined && !delaying)) {
            return;
        }
        self.initial_delay_until_ms = None;
        // Members that did not rejoin in time are dropped.
        let stragglers: Vec<String> = self
            .members
            .values()
            .filter(|m| !m.awaiting_join)
            .map(|m| m.member_id.clone())
            .collect();
        for id in stragglers {
            self.remove_member(&id);
        }
        self.generation_id += 1;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol_name = None;
            self.leader = None;
            tracing::debug!(group = %self.group_id, generation = self.generation_id, "group is empty");
            return;
        }
        self.protocol_name = Some(self.select_protocol());
        if self
            .leader
            .as_ref()
            .is_none_or(|l| !self.index.contains_key(l))
        {
            self.leader = self.members.values().next().map(|m| m.member_id.clone());
        }
        self.state = GroupState::CompletingRebalance;
        tracing::debug!(group = %self.group_id, generation = self.generation_id, members = self.members.len(), "rebalance: all members joined");
        let ids: Vec<String> = self.members.values().map(|m| m.member_id.clone()).collect();
        for id in ids {
            let result = self.join_result_for(&id, false);
            if let Some(m) = self.member_mut(&id) {
                m.awaiting_join = false;
                m.last_heartbeat_ms = now;
            }
            effects.push(Effect::Join(id, result));
        }
    }

    /// Kafka's vote: each member votes for its most preferred protocol among
    /// those every member supports; the most votes wins (ties: first candidate).
    fn select_protocol(&self) -> String {
        let first = self.members.values().next().expect("non-empty group");
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(n, _)| n)
            .filter(|n| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(p, _)| p == *n))
            })
            .collect();
        let mut votes: Vec<(usize, &String)> = candidates.iter().map(|c| (0, *c)).collect();
        for m in self.members.values() {
            if let Some((choice, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(&n)) {
                if let Some(v) = votes.iter_mut().find(|(_, c)| *c == choice) {
                    v.0 += 1;
                }
            }
        }
        let best = votes.iter().map(|(n, _)| *n).max().unwrap_or(0);
        votes
            .iter()
            .find(|(n, _)| *n == best)
            .map(|(_, c)| (*c).clone())
            .unwrap_or_default()
    }

    fn check_member(
        &self,
        member_id: &str,
        instance: &Option<String>,
        generation: i32,
    ) -> Result<(), ResponseError> {
        if let Some(instance) = instance {
            if let Some(id) = self.static_members.get(instance) {
                if id != member_id {
                    return Err(ResponseError::FencedInstanceId);
                }
            }
        }
        if self.member(member_id).is_none() {
            return Err(ResponseError::UnknownMemberId);
        }
        if generation != self.generation_id {
            return Err(ResponseError::IllegalGeneration);
        }
        Ok(())
    }

    pub fn sync(
        &mut self,
        member_id: &str,
        instance: &Option<String>,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
    ) -> (Reply<SyncResult>, Vec<Effect>) {
        let mut effects = Vec::new();
        if self.state == GroupState::Dead {
            return (
                Reply::Now(SyncResult::error(ResponseError::CoordinatorNotAvailable)),
                effects,
            );
        }
        if let Err(e) = self.check_member(member_id, instance, generation) {
            return (Reply::Now(SyncResult::error(e)), effects);
        }
        match self.state {
            GroupState::PreparingRebalance => (
                Reply::Now(SyncResult::error(ResponseError::RebalanceInProgress)),
                effects,
            ),
            GroupState::Stable => (Reply::Now(self.sync_result_for(member_id)), effects),
            GroupState::CompletingRebalance => {
                if let Some(m) = self.member_mut(member_id) {
                    m.awaiting_sync = true;
                }
                if self.leader.as_deref() == Some(member_id) {
                    let assigned: HashMap<String, Bytes> = assignments.into_iter().collect();
                    for m in self.members.values_mut() {
                        m.assignment = assigned.get(&m.member_id).cloned().unwrap_or_default();
                    }
                    self.state = GroupState::Stable;
                    tracing::debug!(group = %self.group_id, generation = self.generation_id, "group is stable");
                    let waiting: Vec<String> = self
                        .members
                        .values()
                        .filter(|m| m.awaiting_sync && m.member_id != member_id)
                        .map(|m| m.member_id.clone())
                        .collect();
                    for id in waiting {
                        effects.push(Effect::Sync(id.clone(), self.sync_result_for(&id)));
                    }
                    for m in self.members.values_mut() {
                        m.awaiting_sync = false;
                    }
                    (Reply::Now(self.sync_result_for(member_id)), effects)
                } else {
                    (Reply::Pending, effects)
                }
            }
            GroupState::Empty | GroupState::Dead => (
                Reply::Now(SyncResult::error(ResponseError::UnknownMemberId)),
                effects,
            ),
        }
    }

    fn sync_result_for(&self, member_id: &str) -> SyncResult {
        SyncResult {
            error: None,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            assignment: self
                .member(member_id)
                .map(|m| m.assignment.clone())
                .unwrap_or_default(),
        }
    }

    pub fn heartbeat(
        &mut self,
        now: i64,
        member_id: &str,
        instance: &Option<String>,
        generation: i32,
    ) -> Result<(), ResponseError> {
        match self.state {
            GroupState::Dead => return Err(ResponseError::CoordinatorNotAvailable),
            GroupState::Empty => return Err(ResponseError::UnknownMemberId),
            _ => {}
        }
        self.check_member(member_id, instance, generation)?;
        if let Some(m) = self.member_mut(member_id) {
            m.last_heartbeat_ms = now;
        }
        if self.state == GroupState::PreparingRebalance {
            return Err(ResponseError::RebalanceInProgress);
        }
        Ok(())
    }

    /// Removes members (by id, or by instance id for static members).
    /// Returns a per-member error and the answers released by the change.
    pub fn leave(
        &mut self,
        now: i64,
        leaving: &[(String, Option<String>)],
    ) -> (Vec<Option<ResponseError>>, Vec<Effect>) {
        let mut effects = Vec::new();
        let mut results = Vec::new();
        let mut removed_any = false;
        for (member_id, instance) in leaving {
            let id = match instance {
                Some(instance) => match self.static_members.get(instance) {
                    Some(id) if member_id.is_empty() || id == member_id => Some(id.clone()),
                    Some(_) => {
                        results.push(Some(ResponseError::FencedInstanceId));
                        continue;
                    }
                    None => None,
                },
                None => Some(member_id.clone()),
            };
            match id.and_then(|id| self.remove_member(&id)) {
                Some(m) => {
                    if m.awaiting_join {
                        effects.push(Effect::Join(
                            m.member_id.clone(),
                            JoinResult::error(ResponseError::UnknownMemberId, &m.member_id),
                        ));
                    }
                    removed_any = true;
                    results.push(None);
                }
                None if self.pending.remove(member_id).is_some() => results.push(None),
                None => results.push(Some(ResponseError::UnknownMemberId)),
            }
        }
        if removed_any {
            self.after_membership_loss(now, &mut effects);
        }
        (results, effects)
    }

    fn after_membership_loss(&mut self, now: i64, effects: &mut Vec<Effect>) {
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                if self.members.is_empty() {
                    self.generation_id += 1;
                    self.state = GroupState::Empty;
                    self.protocol_name = None;
                    self.leader = None;
                } else {
                    self.prepare_rebalance(now, effects);
                }
            }
            GroupState::PreparingRebalance => self.try_complete_join(now, effects),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    /// Expires members past their session timeout and completes a join
    /// whose deadline passed. Call periodically.
    pub fn tick(&mut self, now: i64) -> Vec<Effect> {
        let mut effects = Vec::new();
        self.pending.retain(|_, expiry| *expiry > now);
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| !(self.state == GroupState::PreparingRebalance && m.awaiting_join))
            .filter(|m| now - m.last_heartbeat_ms > m.session_timeout_ms as i64)
            .map(|m| m.member_id.clone())
            .collect();
        for id in &expired {
            tracing::info!(group = %self.group_id, member = %id, "member session expired");
            if let Some(m) = self.remove_member(id) {
                if m.awaiting_sync {
                    effects.push(Effect::Sync(
                        m.member_id.clone(),
                        SyncResult::error(ResponseError::UnknownMemberId),
                    ));
                }
            }
        }
        if !expired.is_empty() {
            self.after_membership_loss(now, &mut effects);
        }
        self.try_complete_join(now, &mut effects);
        effects
    }
}

impl Group {
    /// Checks an OffsetCommit against the group, as Kafka does: a commit
    /// naming no member and no generation is a "simple" commit, allowed only
    /// while the group has no members; any other must come from a current
    /// member of the current generation, and not while the group waits for
    /// its leader's assignment. A valid commit counts as a heartbeat.
    pub fn validate_commit(
        &mut self,
        now: i64,
        member_id: &str,
        instance: &Option<String>,
        generation: i32,
    ) -> Result<(), ResponseError> {
        if self.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if generation >= 0 || !member_id.is_empty() || instance.is_some() {
            self.check_member(member_id, instance, generation)?;
            if self.state == GroupState::CompletingRebalance {
                return Err(ResponseError::RebalanceInProgress);
            }
            if let Some(m) = self.member_mut(member_id) {
                m.last_heartbeat_ms = now;
            }
            Ok(())
        } else if self.members.is_empty() {
            Ok(())
        } else {
            Err(ResponseError::UnknownMemberId)
        }
    }

    /// TxnOffsetCommit's check (Kafka's `doTxnCommitOffsets`): a producer
    /// outside the group (no member id, generation -1) may commit; a
    /// member must be one, at the current generation.
    pub fn validate_txn_commit(
        &self,
        member_id: &str,
        instance: &Option<String>,
        generation: i32,
    ) -> Result<(), ResponseError> {
        if self.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if let Some(instance) = instance {
            if self
                .static_members
                .get(instance)
                .is_some_and(|id| id != member_id)
            {
                return Err(ResponseError::FencedInstanceId);
            }
        }
        if !member_id.is_empty() && self.member(member_id).is_none() {
            return Err(ResponseError::UnknownMemberId);
        }
        if generation >= 0 && generation != self.generation_id {
            return Err(ResponseError::IllegalGeneration);
        }
        Ok(())
    }

    /// The group as it is stored in the offsets topic.
    pub fn snapshot(&self, now: i64) -> GroupMetadataValue {
        GroupMetadataValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation_id,
            protocol: self.protocol_name.clone(),
            leader: self.leader.clone(),
            state_timestamp: now,
            members: self
                .members
                .values()
                .map(|m| MemberMetadata {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: self
                        .protocol_name
                        .as_deref()
                        .map(|p| m.metadata_for(p))
                        .unwrap_or_default(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    /// Rebuilds a group from its stored metadata when a coordinator loads
    /// the offsets partition. Members come back as they were, each with a
    /// fresh session, so consumers keep their partitions without a
    /// rebalance if they heartbeat in time; the ones that do not expire.
    pub fn restore(
        group_id: &str,
        limits: GroupLimits,
        value: &GroupMetadataValue,
        now: i64,
    ) -> Group {
        let mut group = Group::new(group_id, limits);
        group.generation_id = value.generation;
        group.protocol_type = Some(value.protocol_type.clone()).filter(|p| !p.is_empty());
        if value.members.is_empty() {
            return group;
        }
        group.protocol_name = value.protocol.clone();
        group.leader = value.leader.clone();
        let protocol = value.protocol.clone().unwrap_or_default();
        for m in &value.members {
            group.add_member(Member {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                session_timeout_ms: m.session_timeout_ms,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                protocol_type: value.protocol_type.clone(),
                protocols: vec![(protocol.clone(), m.subscription.clone())],
                assignment: m.assignment.clone(),
                last_heartbeat_ms: now,
                awaiting_join: false,
                awaiting_sync: false,
            });
        }
        group.state = GroupState::Stable;
        group
    }

    /// The topics the members of a consumer group subscribe to, read from
    /// their subscriptions (ConsumerProtocolSubscription: version, topics,
    /// ...). `None` if the group is not a consumer group or one cannot be read.
    pub fn subscribed_topics(&self) -> Option<std::collections::HashSet<String>> {
        if self.protocol_type.as_deref() != Some("consumer") {
            return None;
        }
        let protocol = self.protocol_name.as_deref()?;
        let mut topics = std::collections::HashSet::new();
        for m in self.members.values() {
            topics.extend(parse_subscription_topics(&m.metadata_for(protocol))?);
        }
        Some(topics)
    }

    /// Marks a deleted group; waiting members learn the coordinator moved.
    pub fn mark_dead(&mut self) {
        self.state = GroupState::Dead;
    }
}

/// The topic list at the start of a consumer protocol subscription.
fn parse_subscription_topics(metadata: &[u8]) -> Option<Vec<String>> {
    use bytes::Buf;
    let mut buf = metadata;
    if buf.remaining() < 6 {
        return None;
    }
    let _version = buf.get_i16();
    let count = buf.get_i32();
    let mut topics = Vec::new();
    for _ in 0..count.max(0) {
        if buf.remaining() < 2 {
            return None;
        }
        let len = buf.get_i16();
        if len < 0 || buf.remaining() < len as usize {
            return None;
        }
        topics.push(String::from_utf8(buf[..len as usize].to_vec()).ok()?);
        buf.advance(len as usize);
    }
    Some(topics)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> GroupLimits {
        GroupLimits {
            initial_rebalance_delay_ms: 0,
            ..GroupLimits::default()
        }
    }

    fn join_req(member_id: &str, instance: Option<&str>, protocols: &[&str]) -> JoinRequest {
        JoinRequest {
            member_id: member_id.to_string(),
            group_instance_id: instance.map(String::from),
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 30_000,
            protocol_type: "consumer".into(),
            protocols: protocols
                .iter()
                .map(|p| (p.to_string(), Bytes::from_static(b"meta")))
                .collect(),
            require_known_member_id: true,
        }
    }

    /// Joins with MEMBER_ID_REQUIRED handling; returns the member id.
    fn first_join(group: &mut Group, now: i64) -> String {
        match group.join(now, join_req("", None, &["range"])).0 {
            Reply::Now(r) => {
                assert_eq!(r.error, Some(ResponseError::MemberIdRequired));
                r.member_id
            }
            Reply::Pending => panic!("expected MEMBER_ID_REQUIRED"),
        }
    }

    #[test]
    fn two_members_join_sync_and_become_stable() {
        let mut group = Group::new("g", limits());
        let a = first_join(&mut group, 0);
        let b = first_join(&mut group, 0);
        let (reply, effects) = group.join(0, join_req(&a, None, &["range"]));
        assert_eq!(reply, Reply::Pending, "waits for b");
        assert!(effects.is_empty());
        let (reply, effects) = group.join(0, join_req(&b, None, &["range"]));
        let Reply::Now(b_result) = reply else {
            panic!("b completes the join")
        };
        assert_eq!(b_result.generation_id, 1);
        assert_eq!(effects.len(), 1, "a's join answer is released");
        let Effect::Join(id, a_result) = &effects[0] else {
            panic!()
        };
        assert_eq!(id, &a);
        assert_eq!(a_result.leader, a);
        assert_eq!(a_result.members.len(), 2, "the leader sees every member");
        assert!(b_result.members.is_empty());
        assert_eq!(group.state, GroupState::CompletingRebalance);

        let (reply, _) = group.sync(&b, &None, 1, vec![]);
        assert_eq!(reply, Reply::Pending);
        let assignments = vec![
            (a.clone(), Bytes::from_static(b"A")),
            (b.clone(), Bytes::from_static(b"B")),
        ];
        let (reply, effects) = group.sync(&a, &None, 1, assignments);
        let Reply::Now(mine) = reply else { panic!() };
        assert_eq!(mine.assignment, Bytes::from_static(b"A"));
        assert_eq!(
            effects,
            vec![Effect::Sync(b.clone(), group.sync_result_for(&b))]
        );
        assert_eq!(group.state, GroupState::Stable);
        assert_eq!(group.heartbeat(1, &b, &None, 1), Ok(()));
        assert_eq!(
            group.heartbeat(1, &b, &None, 0),
            Err(ResponseError::IllegalGeneration)
        );
        assert_eq!(
            group.heartbeat(1, "nobody", &None, 1),
            Err(ResponseError::UnknownMemberId)
        );
    }

    fn stable_pair(group: &mut Group) -> (String, String) {
        let a = first_join(group, 0);
        let b = first_join(group, 0);
        group.join(0, join_req(&a, None, &["range"]));
        group.join(0, join_req(&b, None, &["range"]));
        group.sync(&b, &None, 1, vec![]);
        group.sync(&a, &None, 1, vec![]);
        assert_eq!(group.state, GroupState::Stable);
        (a, b)
    }

    #[test]
    fn leaving_and_expiry_trigger_rebalances() {
        let mut group = Group::new("g", limits());
        let (a, b) = stable_pair(&mut group);
        let (results, _) = group.leave(5, &[(b.clone(), None)]);
        assert_eq!(results, vec![None]);
        assert_eq!(group.state, GroupState::PreparingRebalance);
        assert_eq!(
            group.heartbeat(6, &a, &None, 1),
            Err(ResponseError::RebalanceInProgress)
        );
        let (reply, _) = group.join(6, join_req(&a, None, &["range"]));
        let Reply::Now(r) = reply else {
            panic!("only member left: completes at once")
        };
        assert_eq!(r.generation_id, 2);
        group.sync(&a, &None, 2, vec![]);
        // a stops heartbeating: expired after its session timeout.
        assert!(group.tick(5_000).is_empty());
        group.tick(20_000);
        assert_eq!(group.state, GroupState::Empty);
        assert_eq!(group.member_count(), 0);
    }

    #[test]
    fn a_member_that_does_not_rejoin_is_dropped_at_the_deadline() {
        let mut group = Group::new("g", limits());
        let (a, b) = stable_pair(&mut group);
        let (reply, _) = group.join(100, join_req(&a, None, &["range", "roundrobin"]));
        assert_eq!(
            reply,
            Reply::Pending,
            "metadata changed: rebalance waits for b"
        );
        let effects = group.tick(100 + 30_000);
        assert!(matches!(&effects[0], Effect::Join(id, r) if id == &a && r.generation_id == 2));
        assert!(group.member(&b).is_none());
    }

    #[test]
    fn protocols_are_voted_and_checked() {
        let mut group = Group::new("g", limits());
        let a = first_join(&mut group, 0);
        group.join(0, join_req(&a, None, &["cooperative-sticky", "range"]));
        let b = first_join(&mut group, 0);
        assert_eq!(
            group.join(0, join_req("", None, &["roundrobin"])).0,
            Reply::Now(JoinResult::error(
                ResponseError::InconsistentGroupProtocol,
                ""
            ))
        );
        let (reply, _) = group.join(0, join_req(&b, None, &["range", "cooperative-sticky"]));
        assert_eq!(
            reply,
            Reply::Pending,
            "b's arrival starts a rebalance that waits for a"
        );
        let (reply, effects) = group.join(0, join_req(&a, None, &["cooperative-sticky", "range"]));
        let Reply::Now(r) = reply else {
            panic!("a completes the join")
        };
        // One vote each: the tie goes to the first candidate in the leader's order.
        assert_eq!(r.protocol_name.as_deref(), Some("cooperative-sticky"));
        assert!(
            matches!(&effects[0], Effect::Join(id, rb) if id == &b && rb.protocol_name == r.protocol_name)
        );
    }

    #[test]
    fn a_static_member_restarting_keeps_its_assignment_without_rebalance() {
        let mut group = Group::new("g", limits());
        let (reply, _) = group.join(0, join_req("", Some("i1"), &["range"]));
        let Reply::Now(r) = reply else {
            panic!("a lone static member completes at once")
        };
        let old = r.member_id.clone();
        group.sync(
            &old,
            &Some("i1".into()),
            1,
            vec![(old.clone(), Bytes::from_static(b"P"))],
        );
        assert_eq!(group.state, GroupState::Stable);
        // Restart: unknown member id, same instance id.
        let (reply, _) = group.join(10, join_req("", Some("i1"), &["range"]));
        let Reply::Now(r) = reply else { panic!() };
        assert_ne!(r.member_id, old);
        assert_eq!(r.generation_id, 1, "no new generation");
        assert_eq!(group.state, GroupState::Stable);
        let (reply, _) = group.sync(&r.member_id, &Some("i1".into()), 1, vec![]);
        assert_eq!(reply, Reply::Now(group.sync_result_for(&r.member_id)));
        assert_eq!(
            group.sync_result_for(&r.member_id).assignment,
            Bytes::from_static(b"P")
        );
        // The old incarnation is fenced.
        assert_eq!(
            group.heartbeat(11, &old, &Some("i1".into()), 1),
            Err(ResponseError::FencedInstanceId)
        );
    }

    #[test]
    fn max_size_and_session_timeout_bounds() {
        let mut group = Group::new(
            "g",
            GroupLimits {
                max_size: 1,
                ..limits()
            },
        );
        let a = first_join(&mut group, 0);
        group.join(0, join_req(&a, None, &["range"]));
        let (reply, _) = group.join(0, join_req("", None, &["range"]));
        assert_eq!(
            reply,
            Reply::Now(JoinResult::error(ResponseError::GroupMaxSizeReached, ""))
        );
        let mut req = join_req("", None, &["range"]);
        req.session_timeout_ms = 10;
        assert!(
            matches!(group.join(0, req).0, Reply::Now(r) if r.error == Some(ResponseError::InvalidSessionTimeout))
        );
    }
}
