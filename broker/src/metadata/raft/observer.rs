//! A broker that is not a voter (`process.roles=broker`) follows the
//! metadata as an observer: it long-polls the voters for the latest image
//! (`FetchImage`), publishes each new one locally, and learns who the
//! active controller is from the answers. It keeps no Raft log of its own.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::network::{self, PeerRequest, PeerResponse, FETCH_IMAGE_LONG_POLL};
use super::NodeId;
use crate::metadata::image::MetadataImage;

pub struct Observer {
    /// (id, controller address) of every voter.
    voters: Vec<(NodeId, String)>,
    leader: watch::Sender<Option<NodeId>>,
}

impl Observer {
    pub fn new(voters: Vec<(NodeId, String)>) -> Arc<Observer> {
        Arc::new(Observer {
            voters,
            leader: watch::channel(None).0,
        })
    }

    /// The active controller as the voters last reported it.
    pub fn leader(&self) -> Option<NodeId> {
        *self.leader.borrow()
    }

    /// The controller address of voter `id`.
    pub fn address_of(&self, id: NodeId) -> Option<&str> {
        self.voters
            .iter()
            .find(|(voter, _)| *voter == id)
            .map(|(_, addr)| addr.as_str())
    }

    pub fn leader_changes(&self) -> watch::Receiver<Option<NodeId>> {
        self.leader.subscribe()
    }

    /// Fetches images until shutdown, asking the voters in turn.
    pub async fn follow(
        self: Arc<Self>,
        publish: watch::Sender<Arc<MetadataImage>>,
        applied: watch::Sender<u64>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut next_voter = 0;
        loop {
            let known = *applied.borrow();
            let (_, addr) = &self.voters[next_voter % self.voters.len()];
            let request = PeerRequest::FetchImage { known_index: known };
            let answer = tokio::select! {
                answer = network::call_once(addr, &request, FETCH_IMAGE_LONG_POLL + Duration::from_secs(5)) => answer,
                _ = shutdown.changed() => return,
            };
            match answer {
                Ok(PeerResponse::Image {
                    index,
                    leader,
                    image,
                }) => {
                    if let Some(image) = image {
                        publish.send_replace(Arc::new(image));
                        applied.send_replace(index);
                    }
                    self.leader.send_if_modified(|current| {
                        let changed = *current != leader;
                        *current = leader;
                        changed
                    });
                }
                other => {
                    if let Err(e) = other {
                        tracing::debug!(voter = addr, error = %e, "metadata fetch failed");
                    }
                    next_voter += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}
