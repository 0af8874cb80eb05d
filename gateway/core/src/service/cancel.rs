//! `DELETE /v1/operations/{id}`: a client cancels a running save.
//!
//! Whichever gateway receives the call records the request in the database (one conditional
//! write, only while the save is unfinished) and aborts libvirt's job on the instance's host
//! itself. The gateway running the save sees the abort (its libvirt call fails) or, when the
//! job had not begun, the recorded request (its sampler aborts the job once it begins, see
//! `progress.rs`), and ends the save as cancelled through `ending.rs`: the state row goes, the
//! reservation is released once, what libvirt left is removed through libvirt. Only saves can
//! be cancelled: an apply or a delete half done would leave an instance or a state broken.

use chrono::Utc;
use uuid::Uuid;

use super::access::require;
use super::Service;
use crate::auth::{Caller, Role};
use crate::ports::CancelRequest;
use crate::{Operation, OperationKind, ServiceError};

fn count(outcome: &'static str) {
    metrics::counter!("snapgate_operation_cancels_total", "outcome" => outcome).increment(1);
}

impl Service {
    /// Asks for the save `id` to be cancelled; returns the operation with the request
    /// recorded (`cancel_requested_at`). The save may still succeed when libvirt finished it
    /// before the gateway running it read the request.
    pub async fn cancel_operation(
        &self,
        caller: &Caller,
        id: Uuid,
    ) -> Result<Operation, ServiceError> {
        let op = self.get_operation(caller, id).await?;
        require(caller, Role::Member)?;
        if op.kind != OperationKind::Save {
            count("not_cancellable");
            return Err(ServiceError::OperationNotCancellable(op.kind.as_str()));
        }
        if op.status.is_finished() {
            count("finished");
            return Err(ServiceError::OperationFinished);
        }
        match self.repo.request_cancel(id, Utc::now()).await? {
            CancelRequest::Recorded => {}
            CancelRequest::Finished => {
                count("finished");
                return Err(ServiceError::OperationFinished);
            }
            CancelRequest::NotCancellable => {
                count("not_cancellable");
                return Err(ServiceError::OperationNotCancellable(op.kind.as_str()));
            }
        }
        count("requested");
        // The instance's lock is the save's while it is unfinished, so the job running there
        // is the save's. A failed abort is not the client's problem: the gateway running the
        // save reads the request and aborts the job itself.
        match self.compute.abort_job(&op.host, op.instance_uuid).await {
            Ok(true) => tracing::info!(operation = %id, "aborted the save's libvirt job"),
            Ok(false) => {
                tracing::info!(operation = %id, "no libvirt job to abort yet; the save's gateway will")
            }
            Err(e) => {
                tracing::warn!(operation = %id, error = %e, "cannot abort the save's libvirt job; the save's gateway will")
            }
        }
        self.get_operation(caller, id).await
    }
}
