//! Producer ids: the controller hands out blocks, and each broker serves
//! InitProducerId from its current block without a metadata write.

use super::Broker;
use crate::error::ApiError;

impl Broker {
    /// Hands out a new producer id, taking a new block from the controller
    /// when the current one is used up.
    pub async fn next_producer_id(&self) -> Result<i64, ApiError> {
        let mut block = self.producer_ids.lock().await;
        if block.0 >= block.1 {
            let (start, len) = self.controller.allocate_producer_ids().await?;
            *block = (start, start + len);
        }
        let id = block.0;
        block.0 += 1;
        Ok(id)
    }
}
