//! Waiting for an operation on a terminal (indicatif): a spinner with the operation's status
//! and the seconds waited, which becomes a bar with the percent once the operation reports its
//! progress. Nothing is drawn when standard error is not a terminal (pipes, logs, CI).

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use serde::{Deserialize, Serialize};
use snapgate_core::Operation;

/// An operation as `GET /v1/operations/{id}` answers it, with the progress the gateway may
/// report while it works. Every progress member may be absent (gateways before it have none),
/// so the display reads its own lenient copy; the record printed is the operation as decoded
/// (with the progress when it was complete).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "serde_json::Value")]
pub struct OperationView {
    pub operation: Operation,
    pub progress: Option<OperationProgress>,
}

impl Serialize for OperationView {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.operation.serialize(s)
    }
}

impl TryFrom<serde_json::Value> for OperationView {
    type Error = serde_json::Error;

    fn try_from(value: serde_json::Value) -> Result<Self, Self::Error> {
        let progress = match value.get("progress") {
            Some(p) if !p.is_null() => Some(serde_json::from_value(p.clone())?),
            _ => None,
        };
        Ok(OperationView {
            operation: serde_json::from_value(value)?,
            progress,
        })
    }
}

/// How far a running operation is: its phase, and bytes done of a total when it knows one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OperationProgress {
    #[serde(default)]
    pub phase: Option<String>,
    #[serde(default)]
    pub bytes_processed: Option<u64>,
    #[serde(default)]
    pub bytes_total: Option<u64>,
    #[serde(default)]
    pub percent: Option<f64>,
}

impl OperationProgress {
    /// The percent done: as the gateway says, else from the bytes when their total is known.
    pub fn percent(&self) -> Option<f64> {
        let from_bytes = || match (self.bytes_processed, self.bytes_total) {
            (Some(done), Some(total)) if total > 0 => Some(done as f64 * 100.0 / total as f64),
            _ => None,
        };
        self.percent
            .filter(|p| p.is_finite())
            .or_else(from_bytes)
            .map(|p| p.clamp(0.0, 100.0))
    }
}

/// What to show for the operation as it is now.
#[derive(Debug, Clone, PartialEq)]
pub enum View {
    /// No percent known: a spinner and this message.
    Spinner(String),
    /// A bar at this percent, with this message.
    Bar(f64, String),
}

/// `label` is what the command does, e.g. `saving`. The spinner names the operation; the bar
/// leaves it out, so that a bar line fits an 80-column terminal.
pub fn view(label: &str, op: &OperationView) -> View {
    let status = op.operation.status.as_str();
    let spinner = |words: &str| {
        View::Spinner(format!(
            "{label} (operation {}) ({words})",
            op.operation.uuid
        ))
    };
    let Some(progress) = &op.progress else {
        return spinner(status);
    };
    let mut words = vec![status.to_owned()];
    words.extend(progress.phase.clone());
    if let Some(done) = progress.bytes_processed {
        words.push(super::render::human_bytes(i64::try_from(done).ok()));
    }
    let words = words.join(", ");
    match progress.percent() {
        Some(p) => View::Bar(p, format!("{label} ({words})")),
        None => spinner(&words),
    }
}

/// The braille frames the CLI has always shown (the last one is shown once finished).
const TICKS: &str = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏ ";
/// The lines drawn; `{secs}` (the seconds waited, e.g. `1.3s`) always comes last.
const SPINNER: &str = "{spinner} {msg} {secs}";
const BAR: &str = "{spinner} {msg} [{bar:24}] {percent}% {secs}";
/// The bar's resolution: hundredths of a percent.
const BAR_LENGTH: u64 = 10_000;

/// The spinner or bar of one wait, on standard error.
pub struct Waiting {
    bar: ProgressBar,
    as_bar: bool,
}

impl Waiting {
    pub fn start() -> Self {
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(BAR_LENGTH), target);
        bar.set_style(style(SPINNER));
        bar.enable_steady_tick(Duration::from_millis(100));
        Self { bar, as_bar: false }
    }

    pub fn show(&mut self, view: View) {
        match view {
            View::Spinner(message) => self.bar.set_message(message),
            View::Bar(percent, message) => {
                if !self.as_bar {
                    self.as_bar = true;
                    self.bar.set_style(style(BAR));
                }
                self.bar.set_position((percent * 100.0).round() as u64);
                self.bar.set_message(message);
            }
        }
    }

    /// Clears the line, so the outcome is printed on a clean one.
    pub fn finish(self) {
        self.bar.finish_and_clear();
    }
}

/// A template with `{secs}`: the seconds waited with one decimal, e.g. `1.3s`, always last.
fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
        .tick_chars(TICKS)
        .progress_chars("=> ")
        .with_key(
            "secs",
            |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.1}s", state.elapsed().as_secs_f64());
            },
        )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const OP: &str = "7d0f6a3e-0d4b-4a57-9d55-0b0e3b1f8a11";

    fn operation(progress: serde_json::Value) -> OperationView {
        let mut op = json!({
            "uuid": OP, "kind": "save", "status": "running",
            "instance_uuid": "7d0f6a3e-0d4b-4a57-9d55-0b0e3b1f8a12",
            "state_uuid": "7d0f6a3e-0d4b-4a57-9d55-0b0e3b1f8a13", "host": "h0", "error": null,
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:01Z",
            "started_at": "2026-01-01T00:00:00Z", "finished_at": null,
        });
        if !progress.is_null() {
            op["progress"] = progress;
        }
        serde_json::from_value(op).expect("an operation")
    }

    #[test]
    fn a_spinner_until_the_operation_reports_a_percent() {
        assert_eq!(
            view("saving", &operation(serde_json::Value::Null)),
            View::Spinner(format!("saving (operation {OP}) (running)"))
        );
        // A phase and bytes, but no total: still a spinner, with what is known.
        assert_eq!(
            view(
                "saving",
                &operation(
                    json!({"phase": "memory", "bytes_processed": 2048, "bytes_total": null, "percent": null})
                )
            ),
            View::Spinner(format!(
                "saving (operation {OP}) (running, memory, 2.0 KiB)"
            ))
        );
    }

    #[test]
    fn a_bar_with_the_percent_once_reported() {
        assert_eq!(
            view(
                "saving",
                &operation(json!({"phase": "memory", "percent": 42.5}))
            ),
            View::Bar(42.5, "saving (running, memory)".into())
        );
        // No percent, but bytes of a known total.
        assert_eq!(
            view(
                "saving",
                &operation(json!({"bytes_processed": 1024, "bytes_total": 4096}))
            ),
            View::Bar(25.0, "saving (running, 1.0 KiB)".into())
        );
    }

    #[test]
    fn the_templates_are_valid() {
        for t in [SPINNER, BAR] {
            assert!(ProgressStyle::with_template(t).is_ok(), "{t}");
        }
    }

    #[test]
    fn an_operation_with_members_this_client_does_not_know_still_decodes() {
        let op = operation(json!({"percent": 1.0, "eta_secs": 3, "phase": "disk"}));
        assert_eq!(op.progress.unwrap().phase.as_deref(), Some("disk"));
    }
}
