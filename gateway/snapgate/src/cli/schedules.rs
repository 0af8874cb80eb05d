//! `snapgate schedule create|list|show|update|delete`: an instance's schedules of saves.

use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::client::{Client, ClientError};
use super::render::{field, table};

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

pub async fn run(client: &Client, cmd: ScheduleCommand, json_out: bool) -> Result<(), ClientError> {
    let path = |instance: &Uuid| format!("/v1/instances/{instance}/schedules");
    let one = match cmd {
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
            let list: Value = client.get(&path(&instance)).await?;
            if json_out {
                print_json(&list);
            } else {
                let rows: Vec<Vec<String>> = list["values"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|s| {
                        vec![
                            field(s, "uuid"),
                            field(s, "cron"),
                            field(s, "time_zone"),
                            field(s, "name_pattern"),
                            field(s, "enabled"),
                            field(s, "next_run_at"),
                            s.pointer("/last_run/outcome")
                                .and_then(Value::as_str)
                                .unwrap_or("-")
                                .to_owned(),
                        ]
                    })
                    .collect();
                println!(
                    "{}",
                    table(
                        &[
                            "UUID",
                            "CRON",
                            "ZONE",
                            "NAME PATTERN",
                            "ENABLED",
                            "NEXT RUN",
                            "LAST RUN"
                        ],
                        &rows
                    )
                );
            }
            return Ok(());
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
            if json_out {
                print_json(&json!({"deleted": schedule}));
            } else {
                println!("schedule {schedule} deleted");
            }
            return Ok(());
        }
    };
    if json_out {
        print_json(&one);
    } else {
        print_schedule(&one);
    }
    Ok(())
}

fn print_schedule(s: &Value) {
    println!("schedule {}", field(s, "uuid"));
    for key in [
        "cron",
        "time_zone",
        "name_pattern",
        "enabled",
        "next_run_at",
    ] {
        println!("  {key}: {}", field(s, key));
    }
    println!("  retention: {}", s["retention"]);
    match s.get("last_run").filter(|r| !r.is_null()) {
        Some(r) => {
            let why = r
                .pointer("/error/code")
                .and_then(Value::as_str)
                .map(|c| format!(" ({c})"))
                .unwrap_or_default();
            println!(
                "  last run: {} for {}{why}",
                field(r, "outcome"),
                field(r, "scheduled_for")
            );
        }
        None => println!("  last run: none yet"),
    }
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}
