//! `snapgate webhook create|list|show|delete`: a tenant's event receivers.

use clap::Subcommand;
use serde::Serialize;
use serde_json::{json, Value};
use snapgate_api::routes::webhooks::WebhookList;
use snapgate_core::service::{CreatedWebhook, WebhookDetail};
use snapgate_core::webhook::Webhook;
use uuid::Uuid;

use super::client::{Client, ClientError};
use super::output::OutputFormat;
use super::render::{fields, or_dash, table, time};

#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Create a webhook; its secret is printed this once.
    Create {
        /// Where events are POSTed (http or https). Not named `url`: that is the gateway's
        /// (`--url`, `SNAPGATE_URL`), beside it in the same command.
        #[arg(value_name = "URL")]
        target: String,
        /// An event kind to deliver (repeat it); none: every kind.
        #[arg(long = "event")]
        events: Vec<String>,
        #[arg(long)]
        description: Option<String>,
        /// The operator's: the tenant it is for.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// List the webhooks (the operator's: every tenant's, or --tenant's).
    List {
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Show a webhook with its newest deliveries.
    Show { webhook: Uuid },
    /// Delete a webhook (its pending deliveries are not sent).
    Delete { webhook: Uuid },
}

/// What `delete` prints for a script.
#[derive(Debug, Serialize)]
struct Deleted {
    deleted: Uuid,
}

fn with_tenant(path: &str, tenant: Option<&str>) -> String {
    match tenant {
        // Tenant ids are of a small alphabet (validated by the gateway), but escape anyway.
        Some(t) => format!(
            "{path}?tenant={}",
            t.bytes()
                .map(|b| if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                })
                .collect::<String>()
        ),
        None => path.to_owned(),
    }
}

pub async fn run(
    client: &Client,
    cmd: WebhookCommand,
    out: OutputFormat,
) -> Result<(), ClientError> {
    match cmd {
        WebhookCommand::Create {
            target,
            events,
            description,
            tenant,
        } => {
            let mut body = json!({"url": target});
            if !events.is_empty() {
                body["events"] = json!(events);
            }
            if let Some(d) = description {
                body["description"] = json!(d);
            }
            let created: CreatedWebhook = client
                .post(&with_tenant("/v1/webhooks", tenant.as_deref()), &body)
                .await?;
            out.print(&created, || {
                format!(
                    "{}\nsecret: {} (shown this once: keep it to verify the signatures)",
                    show(&created.webhook),
                    created.secret
                )
            })
        }
        WebhookCommand::List { tenant } => {
            let list: WebhookList = client
                .get(&with_tenant("/v1/webhooks", tenant.as_deref()))
                .await?;
            out.print(&list, || {
                table(
                    &["UUID", "TENANT", "URL", "EVENTS", "ENABLED", "FAILURES"],
                    list.values.iter().map(|w| {
                        vec![
                            w.uuid.to_string(),
                            w.tenant_id.clone(),
                            w.url.clone(),
                            kinds(w),
                            w.enabled.to_string(),
                            w.consecutive_failures.to_string(),
                        ]
                    }),
                )
            })
        }
        WebhookCommand::Show { webhook } => {
            let detail: WebhookDetail = client.get(&format!("/v1/webhooks/{webhook}")).await?;
            out.print(&detail, || {
                let deliveries = table(
                    &[
                        "EVENT",
                        "STATUS",
                        "ATTEMPTS",
                        "LAST ATTEMPT",
                        "HTTP",
                        "ERROR",
                    ],
                    detail.deliveries.iter().map(|d| {
                        vec![
                            d.event_id.to_string(),
                            d.status.as_str().to_owned(),
                            d.attempts.to_string(),
                            or_dash(d.last_attempt_at.map(time)),
                            or_dash(d.last_status_code.map(|c| c.to_string())),
                            or_dash(d.last_error.clone()),
                        ]
                    }),
                );
                format!("{}\n\n{deliveries}", show(&detail.webhook))
            })
        }
        WebhookCommand::Delete { webhook } => {
            let _: Value = client.delete(&format!("/v1/webhooks/{webhook}")).await?;
            out.print(&Deleted { deleted: webhook }, || {
                format!("webhook {webhook} deleted")
            })
        }
    }
}

fn kinds(w: &Webhook) -> String {
    if w.events.is_empty() {
        "all".into()
    } else {
        w.events
            .iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn show(w: &Webhook) -> String {
    fields(vec![
        ("uuid", w.uuid.to_string()),
        ("tenant", w.tenant_id.clone()),
        ("url", w.url.clone()),
        ("events", kinds(w)),
        ("description", or_dash(w.description.clone())),
        ("enabled", w.enabled.to_string()),
        ("disabled because", or_dash(w.disabled_reason.clone())),
        ("failures in a row", w.consecutive_failures.to_string()),
        ("created", time(w.created_at)),
    ])
}
