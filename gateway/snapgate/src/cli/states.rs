//! The `state-*` commands, over the API's own records (`State`, `Operation`, the list and
//! accepted-save answers of `snapgate-api`).

use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Map};
use snapgate_api::routes::states::{OperationResponse, SavedStateResponse, StateList};
use snapgate_core::{OperationStatus, State};
use uuid::Uuid;

use super::client::{Client, ClientError};
use super::output::OutputFormat;
use super::progress::{view, OperationView, Waiting};
use super::render::{fields, human_bytes, or_dash, table, time};

#[derive(Debug, Clone)]
pub enum StateCommand {
    Save {
        instance: Uuid,
        name: String,
        description: Option<String>,
    },
    Load {
        instance: Uuid,
        state: Uuid,
    },
    List {
        instance: Uuid,
        limit: Option<u64>,
    },
    Show {
        instance: Uuid,
        state: Uuid,
    },
    Delete {
        instance: Uuid,
        states: Vec<Uuid>,
    },
    /// A merge-patch: `None` leaves a field, `Some(None)` clears it.
    Update {
        instance: Uuid,
        state: Uuid,
        name: Option<String>,
        description: Option<Option<String>>,
        expires_at: Option<Option<String>>,
    },
}

impl StateCommand {
    /// The instance the command is about (the hints name it).
    pub fn instance(&self) -> Uuid {
        match self {
            StateCommand::Save { instance, .. }
            | StateCommand::Load { instance, .. }
            | StateCommand::List { instance, .. }
            | StateCommand::Show { instance, .. }
            | StateCommand::Delete { instance, .. }
            | StateCommand::Update { instance, .. } => *instance,
        }
    }
}

/// A save waited for: the state as it ended, and its operation.
#[derive(Debug, Serialize)]
struct SaveOutcome {
    state: State,
    operation: OperationView,
}

/// The operations of a delete of several states.
#[derive(Debug, Serialize)]
struct DeleteOutcome {
    operations: Vec<OperationView>,
}

/// Runs a command; the error is what the CLI prints before exiting non-zero.
pub async fn run(
    client: &Client,
    cmd: StateCommand,
    wait: bool,
    out: OutputFormat,
) -> Result<(), ClientError> {
    let states = |instance: &Uuid| format!("/v1/instances/{instance}/states");
    match cmd {
        StateCommand::Save {
            instance,
            name,
            description,
        } => {
            let mut body = json!({ "name": name });
            if let Some(d) = description {
                body["description"] = json!(d);
            }
            let accepted: SavedStateResponse = client.post(&states(&instance), &body).await?;
            print_warnings(&accepted.warnings);
            let state = &accepted.state;
            let op = finish(client, accepted.operation, "saving", wait).await?;
            if wait && out.is_machine() {
                let fresh: State = client
                    .get(&format!("{}/{}", states(&instance), state.uuid))
                    .await?;
                out.print(
                    &SaveOutcome {
                        state: fresh,
                        operation: op.clone(),
                    },
                    String::new,
                )?;
            } else {
                out.print(&accepted, || {
                    format!(
                        "state {} ({}) {}",
                        state.uuid,
                        state.name,
                        outcome_word(&op, "saved")
                    )
                })?;
            }
            check(&op)
        }
        StateCommand::Load { instance, state } => {
            let accepted: OperationResponse = client
                .post(
                    &format!("{}/apply", states(&instance)),
                    &json!({ "uuid": state }),
                )
                .await?;
            print_warnings(&accepted.warnings);
            let id = accepted.operation.uuid;
            let op = finish(client, id, "applying", wait).await?;
            out.print(&op, || {
                format!("state {state} {}", outcome_word(&op, "applied"))
            })?;
            check(&op)
        }
        StateCommand::List { instance, limit } => {
            let list = list(client, instance, limit).await?;
            out.print(&list, || {
                table(
                    &["UUID", "NAME", "DATE", "STATUS", "SIZE", "KIND"],
                    list.values.iter().map(|s| {
                        vec![
                            s.uuid.to_string(),
                            s.name.clone(),
                            time(s.date),
                            s.status.to_string(),
                            human_bytes(s.size_bytes),
                            s.snapshot_kind.to_string(),
                        ]
                    }),
                )
            })
        }
        StateCommand::Show { instance, state } => {
            let state: State = client
                .get(&format!("{}/{state}", states(&instance)))
                .await?;
            out.print(&state, || show(&state))
        }
        StateCommand::Update {
            instance,
            state,
            name,
            description,
            expires_at,
        } => {
            let mut body = Map::new();
            if let Some(n) = name {
                body.insert("name".into(), json!(n));
            }
            if let Some(d) = description {
                body.insert("description".into(), json!(d));
            }
            if let Some(e) = expires_at {
                body.insert("expires_at".into(), json!(e));
            }
            let updated: State = client
                .patch(&format!("{}/{state}", states(&instance)), &body)
                .await?;
            out.print(&updated, || {
                format!(
                    "state {} ({}) updated; expires {}",
                    updated.uuid,
                    updated.name,
                    updated.expires_at.map_or_else(|| "never".into(), time)
                )
            })
        }
        StateCommand::Delete {
            instance,
            states: ids,
        } => {
            // Each state is deleted in turn (one operation per instance at a time); the first
            // failure stops the command.
            let mut operations = Vec::new();
            for state in ids {
                let accepted: OperationResponse = client
                    .delete(&format!("{}/{state}", states(&instance)))
                    .await?;
                print_warnings(&accepted.warnings);
                let id = accepted.operation.uuid;
                let op = finish(client, id, "deleting", wait).await?;
                if !out.is_machine() {
                    println!("state {state} {}", outcome_word(&op, "deleted"));
                }
                check(&op)?;
                operations.push(op);
            }
            if out.is_machine() {
                out.print(&DeleteOutcome { operations }, String::new)?;
            }
            Ok(())
        }
    }
}

/// Every page of the instance's states (or only the first `limit` ones).
async fn list(
    client: &Client,
    instance: Uuid,
    limit: Option<u64>,
) -> Result<StateList, ClientError> {
    let mut all = StateList {
        values: Vec::new(),
        states_links: Vec::new(),
    };
    let mut marker: Option<Uuid> = None;
    loop {
        let mut path = format!(
            "/v1/instances/{instance}/states?limit={}",
            limit.unwrap_or(200)
        );
        if let Some(m) = &marker {
            path.push_str(&format!("&marker={m}"));
        }
        let page: StateList = client.get(&path).await?;
        let more = page.states_links.iter().any(|l| l.rel == "next");
        marker = page.values.last().map(|s| s.uuid);
        all.values.extend(page.values);
        if limit.is_some() {
            // One page asked for: its link to the next one stays for the caller.
            all.states_links = page.states_links;
            return Ok(all);
        }
        if !more || marker.is_none() {
            return Ok(all);
        }
    }
}

fn show(s: &State) -> String {
    fields(vec![
        ("uuid", s.uuid.to_string()),
        ("name", s.name.clone()),
        ("instance", s.instance_uuid.to_string()),
        ("status", s.status.to_string()),
        ("date", time(s.date)),
        ("updated", time(s.updated_at)),
        ("description", or_dash(s.description.as_ref())),
        ("kind", s.snapshot_kind.to_string()),
        ("host", s.host.clone()),
        ("size", human_bytes(s.size_bytes)),
        ("memory", human_bytes(s.memory_bytes)),
        ("disk formats", s.disk_formats.join(", ")),
        (
            "cpu",
            or_dash(s.cpu.as_ref().and_then(|c| c.model.as_ref())),
        ),
        ("parent", or_dash(s.parent)),
        ("expires", s.expires_at.map_or_else(|| "never".into(), time)),
        ("schedule", or_dash(s.schedule_id)),
        (
            "error",
            or_dash(
                s.error
                    .as_ref()
                    .map(|e| format!("{} ({})", e.message, e.code)),
            ),
        ),
    ])
}

/// The policy's warnings of an accepted call, for the person at the terminal.
fn print_warnings(warnings: &[String]) {
    for w in warnings {
        eprintln!("warning: {w}");
    }
}

/// Waits for the operation (unless `--no-wait`), with a spinner or bar on a terminal.
pub(super) async fn finish(
    client: &Client,
    id: Uuid,
    label: &str,
    wait: bool,
) -> Result<OperationView, ClientError> {
    let mut op: OperationView = client.get(&format!("/v1/operations/{id}")).await?;
    if !wait {
        return Ok(op);
    }
    let mut waiting = Waiting::start();
    loop {
        if op.operation.status.is_finished() {
            waiting.finish();
            return Ok(op);
        }
        waiting.show(view(label, &op));
        // A short server-side wait keeps the display fresh without polling in a tight loop.
        op = client
            .get(&format!("/v1/operations/{id}/wait?timeout=0.25"))
            .await?;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn outcome_word(op: &OperationView, done: &str) -> String {
    let op = &op.operation;
    match (op.status, &op.error) {
        (OperationStatus::Succeeded, _) => done.to_owned(),
        (OperationStatus::Failed, Some(e)) => format!("failed: {}", e.message),
        (OperationStatus::Failed, None) => "failed".into(),
        (other, _) => format!("accepted (operation {} {other})", op.uuid),
    }
}

/// A failed operation makes the command fail.
fn check(op: &OperationView) -> Result<(), ClientError> {
    let op = &op.operation;
    if op.status != OperationStatus::Failed {
        return Ok(());
    }
    Err(ClientError::OperationFailed {
        operation: op.uuid,
        error: op.error.clone().unwrap_or_else(|| {
            snapgate_core::ErrorInfo::new("operation_failed", "the operation failed")
        }),
    })
}
