//! `snapgate operation-cancel ID`: cancels a running save (`DELETE /v1/operations/{id}`) and,
//! unless `--no-wait`, waits for it to end (with the save's progress bar on a terminal).

use snapgate_core::OperationStatus;
use uuid::Uuid;

use super::client::{Client, ClientError};
use super::progress::OperationView;
use super::states::finish;
use super::OutputFormat;

/// The code a cancelled save's operation carries.
const CANCELLED: &str = "cancelled";

pub async fn cancel(
    client: &Client,
    id: Uuid,
    wait: bool,
    out: OutputFormat,
) -> Result<(), ClientError> {
    let accepted: OperationView = client.delete(&format!("/v1/operations/{id}")).await?;
    let op = if wait {
        finish(client, accepted.operation.uuid, "cancelling", true).await?
    } else {
        accepted
    };
    out.print(&op, || outcome(&op))
}

fn outcome(op: &OperationView) -> String {
    let o = &op.operation;
    let cancelled = o.error.as_ref().is_some_and(|e| e.code == CANCELLED);
    match o.status {
        OperationStatus::Failed if cancelled => {
            format!(
                "operation {} cancelled: the save's state was removed",
                o.uuid
            )
        }
        OperationStatus::Failed => format!(
            "operation {} failed before the cancel took effect: {}",
            o.uuid,
            o.error.as_ref().map_or("", |e| e.message.as_str())
        ),
        OperationStatus::Succeeded => format!(
            "operation {}: too late to cancel, the save had finished; its state is kept",
            o.uuid
        ),
        other => format!("operation {} ({other}): cancel requested", o.uuid),
    }
}
