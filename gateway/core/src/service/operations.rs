//! Reading and waiting on operations.

use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use super::access::require;
use super::Service;
use crate::auth::{Caller, Role};
use crate::{Operation, ServiceError};

/// How a wait ended.
#[derive(Debug, Clone)]
pub struct WaitOutcome {
    pub operation: Operation,
    /// False when the timeout passed before the operation ended.
    pub finished: bool,
}

/// Waiters on one gateway learn of operations another replica ends by reading the database
/// at this interval.
const POLL_EVERY: Duration = Duration::from_millis(200);

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

    /// Returns when the operation ends or `timeout` passes, whichever is first.
    pub async fn wait_operation(
        &self,
        caller: &Caller,
        id: Uuid,
        timeout: Duration,
    ) -> Result<WaitOutcome, ServiceError> {
        // Subscribe before the first read so an end between the read and the wait is not missed.
        let mut finished = self.finished.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let op = self.get_operation(caller, id).await?;
            if op.status.is_finished() {
                return Ok(WaitOutcome {
                    operation: op,
                    finished: true,
                });
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(WaitOutcome {
                    operation: op,
                    finished: false,
                });
            }
            let wake = (now + POLL_EVERY).min(deadline);
            loop {
                match tokio::time::timeout_at(wake, finished.recv()).await {
                    Ok(Ok(done)) if done != id => continue,
                    Ok(Ok(_)) | Ok(Err(RecvError::Lagged(_))) | Err(_) => break,
                    Ok(Err(RecvError::Closed)) => {
                        tokio::time::sleep_until(wake).await;
                        break;
                    }
                }
            }
        }
    }
}
