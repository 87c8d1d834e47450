//! The elections the active controller runs on its own: unclean elections
//! of offline partitions, and preferred-leader elections for balance.

use super::Broker;
use crate::metadata::elections;
use crate::metadata::records::PartitionChange;
use crate::metadata::MetadataImage;

impl Broker {
    /// The active controller's periodic elections: unclean elections of
    /// offline partitions whose topic allows them and, when `rebalance` is
    /// set, preferred elections for imbalanced brokers.
    pub async fn run_elections(&self, rebalance: bool) {
        if !self.quorum.is_active_controller() {
            return;
        }
        let image = self.image();
        let unclean = elections::unclean_elections(&image, |topic| {
            self.log_config(&image, topic).unclean_leader_election
        });
        for change in unclean {
            self.commit_election(&image, change, "unclean leader election: no in-sync replica is live, so an out-of-sync replica leads; records it did not have are lost").await;
        }
        let balance = &self.config.settings.leader_balance;
        if rebalance && balance.enable {
            let percentage = balance.imbalance_percentage;
            for change in elections::rebalance_elections(&image, percentage) {
                self.commit_election(&image, change, "preferred leader election (auto rebalance)")
                    .await;
            }
        }
    }

    async fn commit_election(&self, image: &MetadataImage, change: PartitionChange, what: &str) {
        let leader = change.leader.unwrap_or(-1);
        let partition = change.partition;
        let topic = image
            .topic_names
            .get(&change.topic_id)
            .cloned()
            .unwrap_or_default();
        let unclean = change.unclean;
        match self.controller.change_partitions(vec![change]).await {
            Ok(()) if unclean => tracing::warn!(topic, partition, leader, "{what}"),
            Ok(()) => tracing::info!(topic, partition, leader, "{what}"),
            Err(e) => tracing::warn!(topic, partition, error = %e, "{what} failed"),
        }
    }
}
