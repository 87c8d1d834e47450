//! The asynchronous face of the group state machine: requests that must
//! wait (a JoinGroup until the rebalance completes, a follower's SyncGroup
//! until the leader's assignment arrives) park on a oneshot channel, and
//! every change's [`Effect`]s wake the members they concern. A ticker
//! expires sessions and ends rebalances whose deadline passed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::oneshot;

use super::group::{Effect, Group, GroupLimits, JoinRequest, JoinResult, Reply, SyncResult};
use crate::error::ResponseError;
use crate::util::now_ms;

enum Waiter {
    Join(oneshot::Sender<JoinResult>),
    Sync(oneshot::Sender<SyncResult>),
}

#[derive(Default)]
struct State {
    groups: HashMap<String, Group>,
    waiters: HashMap<(String, String), Waiter>,
}

impl State {
    fn deliver(&mut self, group_id: &str, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Join(member, result) => {
                    if let Some(Waiter::Join(tx)) =
                        self.waiters.remove(&(group_id.to_string(), member))
                    {
                        let _ = tx.send(result);
                    }
                }
                Effect::Sync(member, result) => {
                    if let Some(Waiter::Sync(tx)) =
                        self.waiters.remove(&(group_id.to_string(), member))
                    {
                        let _ = tx.send(result);
                    }
                }
            }
        }
    }
}

pub struct GroupCoordinator {
    limits: GroupLimits,
    state: Mutex<State>,
}

impl GroupCoordinator {
    pub fn new(limits: GroupLimits) -> Arc<GroupCoordinator> {
        Arc::new(GroupCoordinator {
            limits,
            state: Mutex::new(State::default()),
        })
    }

    /// Handles a JoinGroup, waiting for the rebalance to complete if needed.
    pub async fn join(&self, group_id: &str, request: JoinRequest) -> JoinResult {
        let member_id = request.member_id.clone();
        let rx = {
            let mut state = self.state.lock();
            let limits = self.limits;
            let group = state
                .groups
                .entry(group_id.to_string())
                .or_insert_with(|| Group::new(group_id, limits));
            let (reply, effects) = group.join(now_ms(), request);
            // A member admitted now has its id only in the group; find it to park.
            let parked_id = match &reply {
                Reply::Pending if member_id.is_empty() => group
                    .members()
                    .last()
                    .map(|m| m.member_id.clone())
                    .unwrap_or_default(),
                _ => member_id.clone(),
            };
            state.deliver(group_id, effects);
            match reply {
                Reply::Now(result) => return result,
                Reply::Pending => {
                    let (tx, rx) = oneshot::channel();
                    state
                        .waiters
                        .insert((group_id.to_string(), parked_id), Waiter::Join(tx));
                    rx
                }
            }
        };
        rx.await
            .unwrap_or_else(|_| JoinResult::error(ResponseError::RebalanceInProgress, &member_id))
    }

    /// Handles a SyncGroup, waiting for the leader's assignment if needed.
    pub async fn sync(
        &self,
        group_id: &str,
        member_id: &str,
        instance: &Option<String>,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
    ) -> SyncResult {
        let rx = {
            let mut state = self.state.lock();
            let Some(group) = state.groups.get_mut(group_id) else {
                return SyncResult::error(ResponseError::UnknownMemberId);
            };
            let (reply, effects) = group.sync(member_id, instance, generation, assignments);
            state.deliver(group_id, effects);
            match reply {
                Reply::Now(result) => return result,
                Reply::Pending => {
                    let (tx, rx) = oneshot::channel();
                    state.waiters.insert(
                        (group_id.to_string(), member_id.to_string()),
                        Waiter::Sync(tx),
                    );
                    rx
                }
            }
        };
        rx.await
            .unwrap_or_else(|_| SyncResult::error(ResponseError::RebalanceInProgress))
    }

    pub fn heartbeat(
        &self,
        group_id: &str,
        member_id: &str,
        instance: &Option<String>,
        generation: i32,
    ) -> Result<(), ResponseError> {
        let mut state = self.state.lock();
        match state.groups.get_mut(group_id) {
            Some(group) => group.heartbeat(now_ms(), member_id, instance, generation),
            None => Err(ResponseError::UnknownMemberId),
        }
    }

    pub fn leave(
        &self,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> Result<Vec<Option<ResponseError>>, ResponseError> {
        let mut state = self.state.lock();
        let Some(group) = state.groups.get_mut(group_id) else {
            return Err(ResponseError::UnknownMemberId);
        };
        let (results, effects) = group.leave(now_ms(), members);
        state.deliver(group_id, effects);
        Ok(results)
    }

    /// Expires sessions and completes overdue rebalances in every group.
    pub fn tick(&self) {
        let now = now_ms();
        let mut state = self.state.lock();
        let ids: Vec<String> = state.groups.keys().cloned().collect();
        for id in ids {
            let effects = state
                .groups
                .get_mut(&id)
                .map(|g| g.tick(now))
                .unwrap_or_default();
            state.deliver(&id, effects);
        }
    }

    /// Runs [`tick`](Self::tick) on an interval until the coordinator is dropped.
    pub fn spawn_ticker(self: &Arc<Self>, period: Duration) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(period);
            loop {
                interval.tick().await;
                match weak.upgrade() {
                    Some(coordinator) => coordinator.tick(),
                    None => break,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(member_id: &str) -> JoinRequest {
        JoinRequest {
            member_id: member_id.to_string(),
            group_instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 10_000,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"m"))],
            require_known_member_id: true,
        }
    }

    #[tokio::test]
    async fn concurrent_joins_complete_together_and_sync_hands_out_assignments() {
        let coordinator = GroupCoordinator::new(GroupLimits {
            initial_rebalance_delay_ms: 0,
            ..GroupLimits::default()
        });
        let a = coordinator.join("g", request("")).await.member_id;
        let b = coordinator.join("g", request("")).await.member_id;
        let (ra, rb) = tokio::join!(
            coordinator.join("g", request(&a)),
            coordinator.join("g", request(&b))
        );
        assert_eq!(ra.error, None);
        assert_eq!(rb.error, None);
        assert_eq!(ra.generation_id, rb.generation_id);
        let (leader, follower) = if ra.leader == a {
            (a.clone(), b.clone())
        } else {
            (b.clone(), a.clone())
        };
        let assignments = vec![
            (leader.clone(), Bytes::from_static(b"L")),
            (follower.clone(), Bytes::from_static(b"F")),
        ];
        let generation = ra.generation_id;
        let (sf, sl) = tokio::join!(
            coordinator.sync("g", &follower, &None, generation, vec![]),
            async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                coordinator
                    .sync("g", &leader, &None, generation, assignments)
                    .await
            }
        );
        assert_eq!(sf.assignment, Bytes::from_static(b"F"));
        assert_eq!(sl.assignment, Bytes::from_static(b"L"));
        assert_eq!(
            coordinator.heartbeat("g", &follower, &None, generation),
            Ok(())
        );
    }
}
