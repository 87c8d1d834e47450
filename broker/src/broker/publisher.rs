//! The metadata publisher: keeps this broker's partition logs, replicas
//! and coordinators in step with the metadata image (open what the image
//! assigns here, delete what it no longer does, apply config changes).

use super::Broker;
use crate::error::{ApiError, ResponseError};
use crate::log::TopicPartition;
use crate::metadata::controller::NewTopic;

impl Broker {
    /// Opens logs for partitions the image assigns to this broker, applies
    /// config changes to open logs, and deletes logs of deleted topics.
    pub async fn sync_logs(&self) {
        let _guard = self.sync_lock.lock().await;
        let image = self.image();
        let me = self.node_id();
        tokio::task::block_in_place(|| {
            for topic in image.topics.values() {
                let config = self.log_config(&image, topic);
                for (index, partition) in topic.partitions.iter().enumerate() {
                    if !partition.replicas.contains(&me) {
                        continue;
                    }
                    let tp = TopicPartition::new(topic.name.clone(), index as i32);
                    match self.logs.get(&tp) {
                        Some(existing) if existing.topic_id == topic.topic_id => {
                            existing.set_config(&config);
                        }
                        _ => {
                            if let Err(e) =
                                self.logs
                                    .open_partition(&tp, topic.topic_id, config.clone())
                            {
                                tracing::error!(partition = %tp, error = %e, "cannot open partition log");
                            }
                        }
                    }
                }
            }
            let known = |tp: &TopicPartition| {
                image
                    .topics
                    .get(&tp.topic)
                    .and_then(|t| t.partitions.get(tp.partition as usize))
                    .is_some_and(|p| p.replicas.contains(&me))
            };
            for partition in self.logs.all() {
                let current = image.topics.get(&partition.tp.topic).map(|t| t.topic_id);
                if !known(&partition.tp) || current != Some(partition.topic_id) {
                    tracing::info!(partition = %partition.tp, "deleting the log of a removed partition");
                    if let Err(e) = self.logs.remove_partition(&partition.tp) {
                        tracing::error!(partition = %partition.tp, error = %e, "cannot delete partition log");
                    }
                }
            }
            match self.logs.stray_dirs(&known) {
                Ok(dirs) => {
                    for dir in dirs {
                        tracing::info!(dir = %dir.display(), "removing a partition directory the metadata does not know");
                        if let Err(e) = std::fs::remove_dir_all(&dir) {
                            tracing::error!(dir = %dir.display(), error = %e, "cannot remove directory");
                        }
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot list the log directory"),
            }
        });
        self.metrics.partitions.set(self.logs.all().len() as i64);
        // Lead, follow or stand by, as the image says.
        tokio::task::block_in_place(|| self.replicas.apply_metadata(&image));
        // Offsets partitions this broker now leads make it their groups' coordinator.
        tokio::task::block_in_place(|| self.groups.on_metadata(&image));
        // And __transaction_state partitions make it their ids' coordinator.
        tokio::task::block_in_place(|| self.transactions.on_metadata(&image));
    }

    /// Creates a topic with the broker defaults, for Metadata and Produce
    /// requests naming a missing topic when `auto.create.topics.enable` is on.
    pub async fn auto_create_topic(&self, name: &str) -> Result<(), ApiError> {
        let request = NewTopic {
            name: name.to_string(),
            num_partitions: -1,
            replication_factor: -1,
            assignments: Vec::new(),
            configs: Default::default(),
        };
        match self.controller.create_topic(request, false).await {
            Ok(_) => {
                tracing::info!(topic = name, "auto-created topic");
                self.sync_logs().await;
                Ok(())
            }
            Err(e) if e.kind == ResponseError::TopicAlreadyExists => Ok(()),
            Err(e) => Err(e),
        }
    }
}
