//! `snapgate schedule create|list|show|update|delete`: an instance's schedules of saves.

use clap::{Args, Subcommand};
use serde::Serialize;
use serde_json::{json, Map, Value};
use snapgate_api::routes::schedules::ScheduleList;
use snapgate_core::Schedule;
use uuid::Uuid;

use super::client::{Client, ClientError};
use super::output::OutputFormat;
use super::render::{fields, or_dash, table, time};

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Create a schedule of saves of instance <instance-uuid>.
    Create {
        instance: Uuid,
        /// Cron expression: 5 fields (minute first), 6 (seconds first), or @hourly/@daily….
        #[arg(long)]
        cron: String,
        /// The name of each state, with %Y %m %d %H %M %S, e.g. nightly-%Y-%m-%d-%H%M.
        #[arg(long)]
        name_pattern: String,
        /// IANA time zone of the timetable and the name's fields (default UTC).
        #[arg(long)]
        time_zone: Option<String>,
        /// internal | external | auto (default: the gateway's mode).
        #[arg(long)]
        mode: Option<String>,
        /// Create it disabled.
        #[arg(long)]
        disabled: bool,
        #[command(flatten)]
        retention: RetentionArgs,
    },
    /// List the schedules of instance <instance-uuid>.
    List { instance: Uuid },
    /// Show one schedule, with its next and last run.
    Show { instance: Uuid, schedule: Uuid },
    /// Change a schedule (only the options given).
    Update {
        instance: Uuid,
        schedule: Uuid,
        #[arg(long)]
        cron: Option<String>,
        #[arg(long)]
        name_pattern: Option<String>,
        #[arg(long)]
        time_zone: Option<String>,
        #[arg(long)]
        mode: Option<String>,
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        #[arg(long)]
        disable: bool,
        #[command(flatten)]
        retention: RetentionArgs,
        /// Remove every retention rule.
        #[arg(long)]
        no_retention: bool,
    },
    /// Delete a schedule (the states it made stay).
    Delete { instance: Uuid, schedule: Uuid },
}

#[derive(Debug, Args)]
pub struct RetentionArgs {
    /// Keep the N newest states of the schedule.
    #[arg(long)]
    keep_last: Option<u32>,
    /// Keep the newest state of each of the N newest hours that have one.
    #[arg(long)]
    keep_hourly: Option<u32>,
    #[arg(long)]
    keep_daily: Option<u32>,
    #[arg(long)]
    keep_weekly: Option<u32>,
    #[arg(long)]
    keep_monthly: Option<u32>,
}

impl RetentionArgs {
    fn to_json(&self) -> Option<Value> {
        let mut rules = Map::new();
        for (name, n) in [
            ("keep_last", self.keep_last),
            ("keep_hourly", self.keep_hourly),
            ("keep_daily", self.keep_daily),
            ("keep_weekly", self.keep_weekly),
            ("keep_monthly", self.keep_monthly),
        ] {
            if let Some(n) = n {
                rules.insert(name.into(), json!(n));
            }
        }
        (!rules.is_empty()).then_some(Value::Object(rules))
    }
}

impl ScheduleCommand {
    /// The instance the command is about (the hints name it).
    pub fn instance(&self) -> Uuid {
        match self {
            ScheduleCommand::Create { instance, .. }
            | ScheduleCommand::List { instance }
            | ScheduleCommand::Show { instance, .. }
            | ScheduleCommand::Update { instance, .. }
            | ScheduleCommand::Delete { instance, .. } => *instance,
        }
    }
}

/// What `delete` prints for a script.
#[derive(Debug, Serialize)]
struct Deleted {
    deleted: Uuid,
}

pub async fn run(
    client: &Client,
    cmd: ScheduleCommand,
    out: OutputFormat,
) -> Result<(), ClientError> {
    let path = |instance: &Uuid| format!("/v1/instances/{instance}/schedules");
    let one: Schedule = match cmd {
        ScheduleCommand::Create {
            instance,
            cron,
            name_pattern,
            time_zone,
            mode,
            disabled,
            retention,
        } => {
            let mut body =
                json!({"cron": cron, "name_pattern": name_pattern, "enabled": !disabled});
            if let Some(z) = time_zone {
                body["time_zone"] = json!(z);
            }
            if let Some(m) = mode {
                body["mode"] = json!(m);
            }
            if let Some(r) = retention.to_json() {
                body["retention"] = r;
            }
            client.post(&path(&instance), &body).await?
        }
        ScheduleCommand::List { instance } => {
            let list: ScheduleList = client.get(&path(&instance)).await?;
            return out.print(&list, || {
                table(
                    &[
                        "UUID",
                        "CRON",
                        "ZONE",
                        "NAME PATTERN",
                        "ENABLED",
                        "NEXT RUN",
                        "LAST RUN",
                    ],
                    list.values.iter().map(|s| {
                        vec![
                            s.uuid.to_string(),
                            s.cron.clone(),
                            s.time_zone.clone(),
                            s.name_pattern.clone(),
                            s.enabled.to_string(),
                            or_dash(s.next_run_at.map(time)),
                            or_dash(s.last_run.as_ref().map(|r| r.outcome.as_str())),
                        ]
                    }),
                )
            });
        }
        ScheduleCommand::Show { instance, schedule } => {
            client
                .get(&format!("{}/{schedule}", path(&instance)))
                .await?
        }
        ScheduleCommand::Update {
            instance,
            schedule,
            cron,
            name_pattern,
            time_zone,
            mode,
            enable,
            disable,
            retention,
            no_retention,
        } => {
            let mut body = json!({});
            for (key, v) in [
                ("cron", cron),
                ("name_pattern", name_pattern),
                ("time_zone", time_zone),
                ("mode", mode),
            ] {
                if let Some(v) = v {
                    body[key] = json!(v);
                }
            }
            if enable || disable {
                body["enabled"] = json!(enable);
            }
            if no_retention {
                body["retention"] = Value::Null;
            } else if let Some(r) = retention.to_json() {
                body["retention"] = r;
            }
            client
                .patch(&format!("{}/{schedule}", path(&instance)), &body)
                .await?
        }
        ScheduleCommand::Delete { instance, schedule } => {
            let _: Value = client
                .delete(&format!("{}/{schedule}", path(&instance)))
                .await?;
            return out.print(&Deleted { deleted: schedule }, || {
                format!("schedule {schedule} deleted")
            });
        }
    };
    out.print(&one, || show(&one))
}

fn show(s: &Schedule) -> String {
    let rules: Vec<String> = s
        .retention
        .rules()
        .iter()
        .filter_map(|(name, n)| n.map(|n| format!("{name}={n}")))
        .collect();
    let last_run = match &s.last_run {
        Some(r) => {
            let why = r
                .error
                .as_ref()
                .map(|e| format!(" ({}: {})", e.code, e.message))
                .unwrap_or_default();
            format!("{} for {}{why}", r.outcome.as_str(), time(r.scheduled_for))
        }
        None => "none yet".into(),
    };
    fields(vec![
        ("uuid", s.uuid.to_string()),
        ("instance", s.instance_uuid.to_string()),
        ("cron", s.cron.clone()),
        ("time zone", s.time_zone.clone()),
        ("name pattern", s.name_pattern.clone()),
        (
            "mode",
            or_dash(s.mode.map(|m| format!("{m:?}").to_lowercase())),
        ),
        ("enabled", s.enabled.to_string()),
        ("next run", or_dash(s.next_run_at.map(time))),
        (
            "retention",
            if rules.is_empty() {
                "none (keeps every state)".into()
            } else {
                rules.join(", ")
            },
        ),
        ("last run", last_run),
    ])
}
