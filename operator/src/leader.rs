//! Leader election over a `coordination.k8s.io/v1` Lease (through the
//! `kube-lease-manager` crate), so two operator replicas can run and only
//! one reconciles. A replica that loses the Lease exits: Kubernetes
//! restarts it as a standby, and no two replicas ever act on one cluster.

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseParams};
use tokio::sync::watch;

/// Seconds a Lease stays valid without renewal by default; the holder
/// renews it a third of that before it expires.
pub const DEFAULT_LEASE_SECONDS: u64 = 15;

/// Starts competing for `lease_name` in `namespace` as `identity`; the
/// channel says whether this replica holds the Lease.
pub async fn elect(
    client: Client,
    namespace: &str,
    lease_name: &str,
    identity: &str,
    lease_seconds: u64,
) -> kube_lease_manager::Result<watch::Receiver<bool>> {
    let lease_seconds = lease_seconds.max(3);
    let manager = LeaseManagerBuilder::new(client, lease_name)
        .with_namespace(namespace)
        .with_parameters(
            LeaseParams::new(identity, lease_seconds, lease_seconds / 3)
                .with_field_manager(format!("tideline-operator-{identity}")),
        )
        .build()
        .await?;
    let (channel, task) = manager.watch().await;
    tokio::spawn(async move {
        match task.await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "leader election stopped"),
            Err(e) => tracing::error!(error = %e, "leader election task failed"),
        }
    });
    Ok(channel)
}
