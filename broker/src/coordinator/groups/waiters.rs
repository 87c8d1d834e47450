//! Requests that cannot be answered yet: a JoinGroup until the rebalance
//! completes, a follower's SyncGroup until the leader's assignment arrives.
//! Each parks on a oneshot channel that the group's [`Effect`]s answer; a
//! dropped waiter makes its request answer NOT_COORDINATOR, so clients look
//! for the coordinator again.

use std::collections::HashMap;

use tokio::sync::oneshot;

use crate::coordinator::group::{Effect, JoinResult, SyncResult};

enum Waiter {
    Join(oneshot::Sender<JoinResult>),
    Sync(oneshot::Sender<SyncResult>),
}

/// The parked requests, by group and member id.
#[derive(Default)]
pub(super) struct Waiters(HashMap<(String, String), Waiter>);

impl Waiters {
    /// Parks a member's JoinGroup until an effect answers it.
    pub(super) fn park_join(
        &mut self,
        group_id: &str,
        member_id: String,
    ) -> oneshot::Receiver<JoinResult> {
        let (tx, rx) = oneshot::channel();
        self.0
            .insert((group_id.to_string(), member_id), Waiter::Join(tx));
        rx
    }

    /// Parks a member's SyncGroup until an effect answers it.
    pub(super) fn park_sync(
        &mut self,
        group_id: &str,
        member_id: &str,
    ) -> oneshot::Receiver<SyncResult> {
        let (tx, rx) = oneshot::channel();
        self.0.insert(
            (group_id.to_string(), member_id.to_string()),
            Waiter::Sync(tx),
        );
        rx
    }

    /// Answers the parked requests a group change concerns.
    pub(super) fn deliver(&mut self, group_id: &str, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Join(member, result) => {
                    if let Some(Waiter::Join(tx)) = self.0.remove(&(group_id.to_string(), member)) {
                        let _ = tx.send(result);
                    }
                }
                Effect::Sync(member, result) => {
                    if let Some(Waiter::Sync(tx)) = self.0.remove(&(group_id.to_string(), member)) {
                        let _ = tx.send(result);
                    }
                }
            }
        }
    }

    /// Drops the requests parked in a group.
    pub(super) fn drop_group(&mut self, group_id: &str) {
        self.0.retain(|(g, _), _| g != group_id);
    }

    /// Drops every parked request.
    pub(super) fn clear(&mut self) {
        self.0.clear();
    }
}
