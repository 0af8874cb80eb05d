//! A small Server-Sent Events client over reqwest's streaming body, for `GET /v1/events`.

use std::collections::VecDeque;
use std::time::Duration;

use serde_json::Value;

use crate::app::TestApp;

/// One message of the stream.
#[derive(Debug, Clone)]
pub struct Message {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

impl Message {
    /// The `data` as JSON (an Event).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("{e}: {}", self.data))
    }
}

/// An open stream.
pub struct SseStream {
    response: reqwest::Response,
    buffer: Vec<u8>,
    current: Message,
    ready: VecDeque<Message>,
    /// Comment lines seen (keep-alives).
    pub comments: usize,
}

/// The answer to opening a stream: the stream, or the refusal's status and body.
pub enum Opened {
    Stream(Box<SseStream>),
    Refused {
        status: u16,
        retry_after: Option<String>,
        body: Value,
    },
}

impl Opened {
    pub fn stream(self) -> SseStream {
        match self {
            Opened::Stream(s) => *s,
            Opened::Refused { status, body, .. } => panic!("stream refused: {status} {body}"),
        }
    }
}

/// Opens `GET /v1/events{query}` on `app` as `token` (with `Last-Event-ID` when given). No
/// overall timeout: the stream lives as long as the test reads it.
pub async fn open(app: &TestApp, query: &str, token: &str, last_event_id: Option<i64>) -> Opened {
    open_at(&app.url, query, token, last_event_id).await
}

pub async fn open_at(base: &str, query: &str, token: &str, last_event_id: Option<i64>) -> Opened {
    let client = reqwest::Client::new();
    let mut req = client
        .get(format!("{base}/v1/events{query}"))
        .bearer_auth(token)
        .header("accept", "text/event-stream");
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id.to_string());
    }
    let response = req.send().await.expect("the gateway answers");
    let status = response.status().as_u16();
    if status != 200 {
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = response.text().await.unwrap_or_default();
        return Opened::Refused {
            status,
            retry_after,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
        };
    }
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    Opened::Stream(Box::new(SseStream {
        response,
        buffer: Vec::new(),
        current: Message {
            id: None,
            event: None,
            data: String::new(),
        },
        ready: VecDeque::new(),
        comments: 0,
    }))
}

impl SseStream {
    /// The next message, `None` when the server ended the stream.
    pub async fn next(&mut self) -> Option<Message> {
        loop {
            if let Some(m) = self.ready.pop_front() {
                return Some(m);
            }
            let chunk = self.response.chunk().await.ok().flatten()?;
            self.feed(&chunk);
        }
    }

    /// The next message within `within`; `None` when none came (or the stream ended).
    pub async fn next_within(&mut self, within: Duration) -> Option<Message> {
        tokio::time::timeout(within, self.next())
            .await
            .ok()
            .flatten()
    }

    /// The next event's JSON; panics when the stream ends, or after a minute (a hang guard).
    pub async fn next_event(&mut self) -> Value {
        let m = tokio::time::timeout(Duration::from_secs(60), self.next())
            .await
            .expect("an event within a minute (hang guard)")
            .expect("the stream is still open");
        let event = m.json();
        assert_eq!(m.id.as_deref(), Some(event["seq"].to_string().as_str()));
        assert_eq!(m.event.as_deref(), event["kind"].as_str());
        event
    }

    /// Events until one satisfies `last` (included).
    pub async fn until(&mut self, last: impl Fn(&Value) -> bool) -> Vec<Value> {
        let mut seen = Vec::new();
        loop {
            let e = self.next_event().await;
            let done = last(&e);
            seen.push(e);
            if done {
                return seen;
            }
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
        while let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
            let raw: Vec<u8> = self.buffer.drain(..=end).collect();
            let line = String::from_utf8_lossy(&raw);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if !self.current.data.is_empty() || self.current.id.is_some() {
                    let m = std::mem::replace(
                        &mut self.current,
                        Message {
                            id: None,
                            event: None,
                            data: String::new(),
                        },
                    );
                    self.ready.push_back(m);
                }
                continue;
            }
            if line.starts_with(':') {
                self.comments += 1;
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
            match field {
                "id" => self.current.id = Some(value),
                "event" => self.current.event = Some(value),
                "data" => {
                    if !self.current.data.is_empty() {
                        self.current.data.push('\n');
                    }
                    self.current.data.push_str(&value);
                }
                _ => {}
            }
        }
    }
}

/// Asserts the events' `seq`s follow each other with no gap or repeat.
pub fn assert_dense(events: &[Value]) {
    for pair in events.windows(2) {
        assert_eq!(
            pair[1]["seq"].as_i64().unwrap(),
            pair[0]["seq"].as_i64().unwrap() + 1,
            "{} then {}",
            pair[0],
            pair[1]
        );
    }
}
