//! Reading and waiting on operations.

use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use super::access::require;
use super::{waits, Service};
use crate::auth::{Caller, Role};
use crate::{Operation, ServiceError};

/// How a wait ended.
#[derive(Debug, Clone)]
pub struct WaitOutcome {
    pub operation: Operation,
    /// False when the timeout passed before the operation ended.
    pub finished: bool,
}

impl Service {
    pub async fn get_operation(
        &self,
        caller: &Caller,
        id: Uuid,
    ) -> Result<Operation, ServiceError> {
        require(caller, Role::Reader)?;
        match self.repo.get_operation(id).await? {
            Some(op) if caller.can_see(&op.tenant_id) => Ok(op),
            _ => Err(ServiceError::not_found("operation", id)),
        }
    }

    /// Returns when the operation ends or `timeout` passes, whichever is first. Woken by
    /// notification (see `waits.rs`): the operation is read at the start, when its end is
    /// announced, and at the deadline — never on a timer.
    pub async fn wait_operation(
        &self,
        caller: &Caller,
        id: Uuid,
        timeout: Duration,
    ) -> Result<WaitOutcome, ServiceError> {
        require(caller, Role::Reader)?;
        let _slot = self.waits.enter(&caller.tenant, id)?;
        // Subscribe before the first read so an end between the read and the wait is not missed.
        let mut ended = self.waits.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        waits::count_read("start");
        let op = self.get_operation(caller, id).await?;
        if op.status.is_finished() {
            return Ok(WaitOutcome {
                operation: op,
                finished: true,
            });
        }
        loop {
            let reason = match tokio::time::timeout_at(deadline, ended.recv()).await {
                Ok(Ok(done)) if done != id => continue,
                Ok(Ok(_)) => "woken",
                // Too many ends at once to tell: ours may be among them.
                Ok(Err(RecvError::Lagged(_))) => "lagged",
                Ok(Err(RecvError::Closed)) => {
                    tokio::time::sleep_until(deadline).await;
                    "deadline"
                }
                Err(_) => "deadline",
            };
            waits::count_read(reason);
            let op = self.get_operation(caller, id).await?;
            let finished = op.status.is_finished();
            if finished || reason == "deadline" {
                return Ok(WaitOutcome {
                    operation: op,
                    finished,
                });
            }
        }
    }
}
