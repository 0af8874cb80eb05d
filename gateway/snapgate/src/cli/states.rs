//! The `state-*` commands.

use std::time::Duration;

use serde_json::{json, Value};
use uuid::Uuid;

use super::client::{Client, ClientError};
use super::render::{field, human_bytes, table, Spinner};

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

/// Output options shared by the commands.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub wait: bool,
    pub json: bool,
}

/// Runs a command; the error is what the CLI prints before exiting non-zero.
pub async fn run(
    client: &Client,
    cmd: StateCommand,
    wait: bool,
    json_out: bool,
) -> Result<(), ClientError> {
    let out = Output {
        wait,
        json: json_out,
    };
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
            let state: Value = client
                .post(&format!("/v1/instances/{instance}/states"), &body)
                .await?;
            let op = state
                .get("operation")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let op = finish(client, &op, "saving", out).await?;
            if out.wait && out.json {
                let uuid = field(&state, "uuid");
                let fresh: Value = client
                    .get(&format!("/v1/instances/{instance}/states/{uuid}"))
                    .await?;
                print_json(&json!({ "state": fresh, "operation": op }));
            } else if out.json {
                print_json(&state);
            } else {
                println!(
                    "state {} ({}) {}",
                    field(&state, "uuid"),
                    field(&state, "name"),
                    outcome_word(&op, "saved")
                );
            }
            check(&op)
        }
        StateCommand::Load { instance, state } => {
            let op: Value = client
                .post(
                    &format!("/v1/instances/{instance}/states/apply"),
                    &json!({ "uuid": state }),
                )
                .await?;
            let op = finish(client, &field(&op, "uuid"), "applying", out).await?;
            if out.json {
                print_json(&op);
            } else {
                println!("state {state} {}", outcome_word(&op, "applied"));
            }
            check(&op)
        }
        StateCommand::List { instance, limit } => {
            let mut all = Vec::new();
            let mut marker: Option<String> = None;
            loop {
                let mut path = format!(
                    "/v1/instances/{instance}/states?limit={}",
                    limit.unwrap_or(200)
                );
                if let Some(m) = &marker {
                    path.push_str(&format!("&marker={m}"));
                }
                let page: Value = client.get(&path).await?;
                let values = page
                    .get("values")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let next = page.pointer("/states_links/0/href").is_some();
                marker = values.last().map(|v| field(v, "uuid"));
                all.extend(values);
                if !next || limit.is_some() {
                    break;
                }
            }
            if out.json {
                print_json(&json!({ "values": all }));
            } else {
                let rows: Vec<Vec<String>> = all
                    .iter()
                    .map(|s| {
                        vec![
                            field(s, "uuid"),
                            field(s, "name"),
                            field(s, "date"),
                            field(s, "status"),
                            human_bytes(s.get("size_bytes").unwrap_or(&Value::Null)),
                            field(s, "snapshot_kind"),
                        ]
                    })
                    .collect();
                println!(
                    "{}",
                    table(&["UUID", "NAME", "DATE", "STATUS", "SIZE", "KIND"], &rows)
                );
            }
            Ok(())
        }
        StateCommand::Update {
            instance,
            state,
            name,
            description,
            expires_at,
        } => {
            let mut body = json!({});
            if let Some(n) = name {
                body["name"] = json!(n);
            }
            if let Some(d) = description {
                body["description"] = json!(d);
            }
            if let Some(e) = expires_at {
                body["expires_at"] = json!(e);
            }
            let updated: Value = client
                .patch(&format!("/v1/instances/{instance}/states/{state}"), &body)
                .await?;
            if out.json {
                print_json(&updated);
            } else {
                println!(
                    "state {} ({}) updated; expires {}",
                    field(&updated, "uuid"),
                    field(&updated, "name"),
                    updated
                        .get("expires_at")
                        .and_then(Value::as_str)
                        .unwrap_or("never")
                );
            }
            Ok(())
        }
        StateCommand::Delete { instance, states } => {
            // Each state is deleted in turn (one operation per instance at a time); the first
            // failure stops the command.
            let mut results = Vec::new();
            for state in states {
                let op: Value = client
                    .delete(&format!("/v1/instances/{instance}/states/{state}"))
                    .await?;
                let op = finish(client, &field(&op, "uuid"), "deleting", out).await?;
                if !out.json {
                    println!("state {state} {}", outcome_word(&op, "deleted"));
                }
                check(&op)?;
                results.push(op);
            }
            if out.json {
                print_json(&json!({ "operations": results }));
            }
            Ok(())
        }
    }
}

/// Waits for the operation (unless `--no-wait`), with a spinner on a terminal.
async fn finish(
    client: &Client,
    op_id: &str,
    label: &str,
    out: Output,
) -> Result<Value, ClientError> {
    let mut op: Value = client.get(&format!("/v1/operations/{op_id}")).await?;
    if !out.wait {
        return Ok(op);
    }
    let mut spinner = Spinner::new(format!("{label} (operation {op_id})"));
    loop {
        let status = field(&op, "status");
        if status == "succeeded" || status == "failed" {
            spinner.finish();
            return Ok(op);
        }
        spinner.tick(&status);
        // A short server-side wait keeps the spinner moving without polling in a tight loop.
        op = client
            .get(&format!("/v1/operations/{op_id}/wait?timeout=0.25"))
            .await?;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn outcome_word(op: &Value, done: &str) -> String {
    match field(op, "status").as_str() {
        "succeeded" => done.to_owned(),
        "failed" => format!(
            "failed: {}",
            op.pointer("/error/message")
                .and_then(Value::as_str)
                .unwrap_or("unknown error")
        ),
        other => format!("accepted (operation {} {other})", field(op, "uuid")),
    }
}

/// A failed operation makes the command fail.
fn check(op: &Value) -> Result<(), ClientError> {
    if field(op, "status") == "failed" {
        let code = op
            .pointer("/error/code")
            .and_then(Value::as_str)
            .unwrap_or("operation_failed")
            .to_owned();
        let message = op
            .pointer("/error/message")
            .and_then(Value::as_str)
            .unwrap_or("the operation failed")
            .to_owned();
        return Err(ClientError::Api {
            status: 200,
            code,
            message,
            body: op.clone(),
        });
    }
    Ok(())
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}
