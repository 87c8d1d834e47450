//! Broker liveness as the active controller sees it: every broker sends a
//! heartbeat every `broker.heartbeat.interval.ms`; a registered broker not
//! heard from for `broker.session.timeout.ms` is fenced, and unfenced when
//! its heartbeats resume. A node that has just become controller gives
//! every broker a full session before fencing anyone.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::image::MetadataImage;
use super::records::MetadataRecord;

#[derive(Default)]
pub struct Liveness {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    last_heard: HashMap<i32, Instant>,
    /// Whether this node was the active controller at the last decision.
    was_controller: bool,
}

impl Liveness {
    /// A heartbeat from `broker_id` reached this (controller) node at `at`.
    pub fn heard_from(&self, broker_id: i32, at: Instant) {
        self.state.lock().last_heard.insert(broker_id, at);
    }

    /// The fence and unfence records due now; empty unless this node is
    /// the active controller.
    pub fn changes_due(
        &self,
        image: &MetadataImage,
        is_controller: bool,
        session_timeout: Duration,
        now: Instant,
    ) -> Vec<MetadataRecord> {
        let mut state = self.state.lock();
        if !is_controller {
            state.was_controller = false;
            return Vec::new();
        }
        if !state.was_controller {
            // New in office: heartbeats went to the previous controller.
            for id in image.brokers.keys() {
                state.last_heard.insert(*id, now);
            }
            state.was_controller = true;
        }
        let mut changes = Vec::new();
        for &broker_id in image.brokers.keys() {
            let last = *state.last_heard.entry(broker_id).or_insert(now);
            let alive = now.duration_since(last) < session_timeout;
            let fenced = image.fenced_brokers.contains(&broker_id);
            let shut_down = image.shut_down_brokers.contains(&broker_id);
            if fenced && alive && !shut_down {
                changes.push(MetadataRecord::UnfenceBroker { broker_id });
            } else if !fenced && !alive {
                changes.push(MetadataRecord::FenceBroker { broker_id });
            }
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::records::{BrokerRegistration, RecordBatch};

    #[test]
    fn a_silent_broker_is_fenced_after_its_session_and_unfenced_when_heard_again() {
        let mut image = MetadataImage::default();
        for id in [1, 2] {
            image.apply(&RecordBatch(vec![MetadataRecord::RegisterBroker(
                BrokerRegistration {
                    broker_id: id,
                    incarnation_id: uuid::Uuid::new_v4(),
                    host: "h".into(),
                    port: 1,
                    rack: None,
                },
            )]));
        }
        let liveness = Liveness::default();
        let session = Duration::from_secs(9);
        let t0 = Instant::now();
        assert!(liveness.changes_due(&image, false, session, t0).is_empty());
        // Just elected: everyone gets a full session.
        assert!(liveness.changes_due(&image, true, session, t0).is_empty());
        let later = t0 + Duration::from_secs(10);
        liveness.heard_from(1, later);
        let changes = liveness.changes_due(&image, true, session, later);
        assert_eq!(changes, vec![MetadataRecord::FenceBroker { broker_id: 2 }]);
        image.apply(&RecordBatch(changes));
        liveness.heard_from(2, later);
        let changes = liveness.changes_due(&image, true, session, later);
        assert_eq!(
            changes,
            vec![MetadataRecord::UnfenceBroker { broker_id: 2 }]
        );
    }
}
