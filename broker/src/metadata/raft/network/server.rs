//! The voter's side: answers each peer's requests in order on its
//! connection.

use std::io;

use openraft::error::{ClientWriteError, RaftError};
use openraft::Raft;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::super::TypeConfig;
use super::frame::{read_frame, write_frame};
use super::messages::{PeerRequest, PeerResponse, ProposeFailure, Proposed, FETCH_IMAGE_LONG_POLL};
use crate::metadata::image::MetadataImage;
use crate::metadata::liveness::Liveness;

/// What a voter serves observers from: its applied image and index.
#[derive(Clone)]
pub struct Published {
    pub image: watch::Receiver<std::sync::Arc<MetadataImage>>,
    pub applied: watch::Receiver<u64>,
}

/// Serves peers on the controller listener until shutdown.
pub async fn serve(
    listener: TcpListener,
    raft: Raft<TypeConfig>,
    liveness: std::sync::Arc<Liveness>,
    published: Published,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (mut stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "controller listener accept failed");
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let raft = raft.clone();
        let liveness = liveness.clone();
        let published = published.clone();
        tokio::spawn(async move {
            loop {
                let request: PeerRequest = match read_frame(&mut stream).await {
                    Ok(request) => request,
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                    Err(e) => {
                        tracing::warn!(%peer, error = %e, "closing quorum connection");
                        break;
                    }
                };
                let response = answer(&raft, &liveness, &published, request).await;
                if write_frame(&mut stream, &response).await.is_err() {
                    break;
                }
            }
        });
    }
}

async fn answer(
    raft: &Raft<TypeConfig>,
    liveness: &Liveness,
    published: &Published,
    request: PeerRequest,
) -> PeerResponse {
    match request {
        PeerRequest::FetchImage { known_index } => {
            let mut applied = published.applied.clone();
            let _ = tokio::time::timeout(
                FETCH_IMAGE_LONG_POLL,
                applied.wait_for(|i| *i > known_index),
            )
            .await;
            // The index first: the state machine publishes the image before
            // the index, so the image read next is at least this new.
            let index = *published.applied.borrow();
            let image = (index > known_index).then(|| (**published.image.borrow()).clone());
            PeerResponse::Image {
                index,
                leader: raft.metrics().borrow().current_leader,
                image,
            }
        }
        PeerRequest::BrokerHeartbeat { broker_id } => {
            let metrics = raft.metrics().borrow().clone();
            let accepted = metrics.current_leader == Some(metrics.id);
            if accepted {
                liveness.heard_from(broker_id, std::time::Instant::now());
            }
            PeerResponse::BrokerHeartbeat { accepted }
        }
        PeerRequest::AppendEntries(rpc) => {
            PeerResponse::AppendEntries(raft.append_entries(rpc).await)
        }
        PeerRequest::InstallSnapshot(rpc) => {
            PeerResponse::InstallSnapshot(raft.install_snapshot(rpc).await)
        }
        PeerRequest::Vote(rpc) => PeerResponse::Vote(raft.vote(rpc).await),
        PeerRequest::Propose(batch) => {
            PeerResponse::Propose(match raft.client_write(batch).await {
                Ok(written) => Ok(Proposed {
                    outcome: written.data,
                    log_index: written.log_id.index,
                }),
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                    Err(ProposeFailure::NotLeader)
                }
                Err(e) => Err(ProposeFailure::Failed(e.to_string())),
            })
        }
    }
}
