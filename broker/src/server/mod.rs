//! The Kafka listener: accepts connections and hands each to
//! [`connection::serve_connection`].

pub mod connection;
mod response_buf;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::broker::Broker;

/// Accepts connections until `shutdown` turns true.
pub async fn run_listener(
    listener: TcpListener,
    broker: Arc<Broker>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let broker = broker.clone();
                    let shutdown = shutdown.clone();
                    tokio::spawn(async move {
                        connection::serve_connection(stream, peer, broker, shutdown).await;
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => break,
        }
    }
}
