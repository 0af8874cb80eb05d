//! `snapgate events`: follows `GET /v1/events` (Server-Sent Events), one line per event, and
//! reconnects after a dropped connection with `Last-Event-ID`, so no event is missed or
//! printed twice.

use std::time::Duration;

use snapgate_core::events::Event;
use uuid::Uuid;

use super::client::{Client, ClientError};
use super::OutputFormat;

/// Wait before reconnecting; doubled up to [`RECONNECT_MAX`] while the gateway is unreachable.
const RECONNECT_MIN: Duration = Duration::from_millis(500);
const RECONNECT_MAX: Duration = Duration::from_secs(10);

/// What to follow.
#[derive(Debug, Clone, Default)]
pub struct EventsCommand {
    pub kinds: Vec<String>,
    pub instance: Option<Uuid>,
    pub tenant: Option<String>,
    pub after: Option<i64>,
}

impl EventsCommand {
    fn path(&self) -> String {
        let mut query = Vec::new();
        if !self.kinds.is_empty() {
            query.push(format!("type={}", self.kinds.join(",")));
        }
        if let Some(i) = self.instance {
            query.push(format!("instance={i}"));
        }
        if let Some(t) = &self.tenant {
            query.push(format!("tenant={}", encode(t)));
        }
        if query.is_empty() {
            "/v1/events".into()
        } else {
            format!("/v1/events?{}", query.join("&"))
        }
    }
}

/// Percent-encodes what is not unreserved (tenant ids are plain, but a typo should not break
/// the query).
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The SSE wire format, as much of it as the gateway sends: `id`, `event`, `data` lines, a
/// blank line ends an event, `:` lines are comments (keep-alives).
#[derive(Default)]
pub struct SseParser {
    buffer: Vec<u8>,
    data: String,
}

impl SseParser {
    /// Feeds bytes; returns the `data` of every event completed by them.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<String> {
        self.buffer.extend_from_slice(bytes);
        let mut done = Vec::new();
        while let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buffer.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if !self.data.is_empty() {
                    done.push(std::mem::take(&mut self.data));
                }
            } else if let Some(value) = line.strip_prefix("data:") {
                if !self.data.is_empty() {
                    self.data.push('\n');
                }
                self.data.push_str(value.strip_prefix(' ').unwrap_or(value));
            }
            // `id:` and `event:` repeat what the data's JSON says; comments are ignored.
        }
        done
    }
}

/// Follows the stream until interrupted (or the gateway refuses the request).
pub async fn run(
    client: &Client,
    cmd: EventsCommand,
    format: OutputFormat,
) -> Result<(), ClientError> {
    let path = cmd.path();
    let mut last = cmd.after;
    let mut pause = RECONNECT_MIN;
    loop {
        let result = client
            .stream(&path, last, |data| {
                let event: Event = serde_json::from_str(&data)
                    .map_err(|e| ClientError::Decode(format!("{e}: {data}")))?;
                print_event(&event, format)?;
                last = Some(event.seq);
                Ok(())
            })
            .await;
        match result {
            // The gateway ended the stream (it is shutting down) or the connection dropped.
            Ok(true) => pause = RECONNECT_MIN,
            Ok(false) => {}
            Err(e @ ClientError::Api { status, .. }) if status < 500 && status != 429 => {
                return Err(e)
            }
            Err(e @ (ClientError::Decode(_) | ClientError::Render(_))) => return Err(e),
            Err(e) => eprintln!("{e}; reconnecting"),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(RECONNECT_MAX);
    }
}

fn print_event(event: &Event, format: OutputFormat) -> Result<(), ClientError> {
    match format {
        OutputFormat::Table => println!("{}", line(event)),
        OutputFormat::Json => println!(
            "{}",
            serde_json::to_string(event).map_err(|e| ClientError::Render(e.to_string()))?
        ),
        OutputFormat::Yaml => print!("---\n{}", format.render(event)?),
    }
    Ok(())
}

/// `42  2026-12-15T10:00:00Z  state.saved  acme  instance=… state=… state_name=nightly …`
fn line(e: &Event) -> String {
    let mut text = format!(
        "{:>6}  {}  {:<19}  {}",
        e.seq,
        e.occurred_at.format("%Y-%m-%dT%H:%M:%SZ"),
        e.kind.as_str(),
        e.tenant
    );
    if let Some(i) = e.instance_uuid {
        text.push_str(&format!("  instance={i}"));
    }
    if let Some(s) = e.state_uuid {
        text.push_str(&format!("  state={s}"));
    }
    if let Some(map) = e.data.as_object() {
        for (k, v) in map {
            match v {
                serde_json::Value::Null => {}
                serde_json::Value::String(s) => text.push_str(&format!("  {k}={s}")),
                other => text.push_str(&format!("  {k}={other}")),
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_events_split_anywhere_and_skips_comments() {
        let wire = b": keep-alive\n\nid: 1\nevent: state.saved\ndata: {\"a\":1}\n\nid: 2\r\ndata: x\r\n\r\n";
        for split in 0..wire.len() {
            let mut p = SseParser::default();
            let mut got = p.feed(&wire[..split]);
            got.extend(p.feed(&wire[split..]));
            assert_eq!(got, ["{\"a\":1}", "x"], "split at {split}");
        }
    }

    #[test]
    fn the_query_carries_the_filters() {
        let cmd = EventsCommand {
            kinds: vec!["state.saved".into(), "state.failed".into()],
            instance: Some(Uuid::nil()),
            tenant: Some("a b".into()),
            after: Some(3),
        };
        assert_eq!(
            cmd.path(),
            format!(
                "/v1/events?type=state.saved,state.failed&instance={}&tenant=a%20b",
                Uuid::nil()
            )
        );
    }
}
