//! Membership requests (JoinGroup, SyncGroup, Heartbeat, LeaveGroup) and
//! the ticker that expires sessions and ends overdue rebalances. Each
//! change to a group wakes the waiters it concerns and is stored once the
//! group is stable or empty: that is what a new coordinator needs to carry
//! on without a rebalance.

use bytes::Bytes;

use super::{GroupCoordinator, GroupEntry, State};
use crate::coordinator::group::{Group, GroupState, JoinRequest, JoinResult, Reply, SyncResult};
use crate::coordinator::offset_store::group_record;
use crate::error::ResponseError;
use crate::util::now_ms;

impl State {
    /// Logs a state change and stores the group when it became stable or
    /// empty (what a new coordinator needs to carry on).
    fn after_change(&mut self, group_id: &str, before: GroupState) {
        let Some(entry) = self.groups.get_mut(group_id) else {
            return;
        };
        let after = entry.group.state;
        if after == before {
            return;
        }
        let now = now_ms();
        entry.state_since_ms = now;
        tracing::info!(
            group = group_id,
            from = before.name(),
            to = after.name(),
            generation = entry.group.generation_id,
            members = entry.group.member_count(),
            "group state changed"
        );
        if matches!(after, GroupState::Stable | GroupState::Empty) {
            let snapshot = entry.group.snapshot(now);
            if let Ok(partition) = self.route(group_id) {
                // A failed write is logged by `append`; the group carries on
                // in memory and is stored again on its next change.
                let _ = self.append(partition, &[group_record(group_id, Some(&snapshot))]);
            }
        }
    }
}

impl GroupCoordinator {
    /// Handles a JoinGroup, waiting for the rebalance to complete if needed.
    pub async fn join(&self, group_id: &str, request: JoinRequest) -> JoinResult {
        let member_id = request.member_id.clone();
        let rx = {
            let mut state = self.state.lock();
            if let Err(e) = state.route(group_id) {
                return JoinResult::error(e, &member_id);
            }
            // A member id means an earlier join; without the group it is stale.
            if !member_id.is_empty() && !state.groups.contains_key(group_id) {
                return JoinResult::error(ResponseError::UnknownMemberId, &member_id);
            }
            let limits = self.config.limits;
            let entry = state
                .groups
                .entry(group_id.to_string())
                .or_insert_with(|| GroupEntry {
                    group: Group::new(group_id, limits),
                    state_since_ms: now_ms(),
                });
            let before = entry.group.state;
            let (reply, effects) = entry.group.join(now_ms(), request);
            // A member admitted now has its id only in the group: members
            // are kept in join order, so it is the last one.
            let parked_id = match &reply {
                Reply::Pending if member_id.is_empty() => entry
                    .group
                    .members()
                    .last()
                    .map(|m| m.member_id.clone())
                    .unwrap_or_default(),
                _ => member_id.clone(),
            };
            state.waiters.deliver(group_id, effects);
            state.after_change(group_id, before);
            match reply {
                Reply::Now(result) => return result,
                Reply::Pending => state.waiters.park_join(group_id, parked_id),
            }
        };
        rx.await
            .unwrap_or_else(|_| JoinResult::error(ResponseError::NotCoordinator, &member_id))
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
            if let Err(e) = state.route(group_id) {
                return SyncResult::error(e);
            }
            let Some(entry) = state.groups.get_mut(group_id) else {
                return SyncResult::error(ResponseError::UnknownMemberId);
            };
            let before = entry.group.state;
            let (reply, effects) = entry
                .group
                .sync(member_id, instance, generation, assignments);
            state.waiters.deliver(group_id, effects);
            state.after_change(group_id, before);
            match reply {
                Reply::Now(result) => return result,
                Reply::Pending => state.waiters.park_sync(group_id, member_id),
            }
        };
        rx.await
            .unwrap_or_else(|_| SyncResult::error(ResponseError::NotCoordinator))
    }

    pub fn heartbeat(
        &self,
        group_id: &str,
        member_id: &str,
        instance: &Option<String>,
        generation: i32,
    ) -> Result<(), ResponseError> {
        let mut state = self.state.lock();
        state.route(group_id)?;
        match state.groups.get_mut(group_id) {
            Some(entry) => entry
                .group
                .heartbeat(now_ms(), member_id, instance, generation),
            None => Err(ResponseError::UnknownMemberId),
        }
    }

    /// Removes members; one result per member, in order.
    pub fn leave(
        &self,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> Result<Vec<Option<ResponseError>>, ResponseError> {
        let mut state = self.state.lock();
        state.route(group_id)?;
        let Some(entry) = state.groups.get_mut(group_id) else {
            return Err(ResponseError::UnknownMemberId);
        };
        let before = entry.group.state;
        let (results, effects) = entry.group.leave(now_ms(), members);
        state.waiters.deliver(group_id, effects);
        state.after_change(group_id, before);
        Ok(results)
    }

    /// Expires sessions and completes overdue rebalances in every group.
    pub fn tick(&self) {
        let now = now_ms();
        let mut state = self.state.lock();
        let ids: Vec<String> = state.groups.keys().cloned().collect();
        for id in ids {
            let Some(entry) = state.groups.get_mut(&id) else {
                continue;
            };
            let before = entry.group.state;
            let effects = entry.group.tick(now);
            state.waiters.deliver(&id, effects);
            state.after_change(&id, before);
        }
    }

    /// Answers every parked JoinGroup/SyncGroup with NOT_COORDINATOR (at
    /// shutdown), so clients look for the coordinator again.
    pub fn release_waiters(&self) {
        self.state.lock().waiters.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use crate::coordinator::groups::testing::{coordinator, request};

    #[tokio::test]
    async fn concurrent_joins_complete_together_and_sync_hands_out_assignments() {
        let dir = tempfile::tempdir().unwrap();
        let (coordinator, _) = coordinator(dir.path());
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
