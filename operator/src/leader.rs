//! Leader election over a `coordination.k8s.io/v1` Lease (through the
//! `kube-lease-manager` crate), so two operator replicas can run and only
//! one reconciles. A replica that loses the Lease exits: Kubernetes
//! restarts it as a standby, and no two replicas ever act on one cluster.

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseParams};
use tokio::sync::watch;

/// Seconds a Lease stays valid without renewal, and how early the holder
/// renews it.
const LEASE_SECONDS: u64 = 15;
const RENEW_GRACE_SECONDS: u64 = 5;

/// Starts competing for `lease_name` in `namespace` as `identity`; the
/// channel says whether this replica holds the Lease.
pub async fn elect(
    client: Client,
    namespace: &str,
    lease_name: &str,
    identity: &str,
) -> kube_lease_manager::Result<watch::Receiver<bool>> {
    let manager = LeaseManagerBuilder::new(client, lease_name)
        .with_namespace(namespace)
        .with_parameters(
            LeaseParams::new(identity, LEASE_SECONDS, RENEW_GRACE_SECONDS)
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
