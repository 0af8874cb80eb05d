//! A small HTTP client for the gateway's API, used by the `state-*` commands.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};
use snapgate_core::error::ErrorDetail;
use snapgate_core::{ErrorBody, ErrorInfo};

use uuid::Uuid;

/// An error as the CLI reports it: the API's error record, a failed operation, or a transport
/// failure.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The gateway refused the call: its status and error record (`{"error": {code, …}}`).
    #[error("{} ({}, HTTP {status})", super::hints::message(&body.error), body.error.code)]
    Api {
        status: u16,
        body: ErrorBody,
        /// The gateway's `X-Request-Id`, which names the call in its logs.
        request_id: Option<String>,
    },
    /// The call was accepted, but the operation doing the work failed.
    #[error("operation {operation} failed: {} ({})", error.message, error.code)]
    OperationFailed { operation: Uuid, error: ErrorInfo },
    #[error("cannot reach the gateway at {url}: {}", causes(source))]
    Transport { url: String, source: reqwest::Error },
    #[error("unexpected answer from the gateway: {0}")]
    Decode(String),
    #[error("cannot print the answer: {0}")]
    Render(String),
}

impl ClientError {
    /// The stable code of the API's error or of the failed operation.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { body, .. } => Some(&body.error.code),
            ClientError::OperationFailed { error, .. } => Some(&error.code),
            _ => None,
        }
    }

    /// What the user can do about it, when the CLI knows.
    pub fn hint(&self, instance: Option<&Uuid>) -> Option<String> {
        match self {
            ClientError::Api {
                status,
                body,
                request_id,
            } => super::hints::for_api_error(*status, &body.error, request_id.as_deref(), instance),
            ClientError::OperationFailed { error, .. } => {
                super::hints::for_code(&error.code, instance)
            }
            ClientError::Transport { .. } => Some(
                "check --url (or SNAPGATE_URL) and that the gateway runs: `systemctl status snapgate` on its node".into(),
            ),
            _ => None,
        }
    }

    /// The record a script reads on failure: the API's error body as it came.
    pub fn body(&self) -> Option<&ErrorBody> {
        match self {
            ClientError::Api { body, .. } => Some(body),
            _ => None,
        }
    }
}

/// An answer that is not the API's error record (a proxy's page, an empty body): kept as a
/// message under the code `http_error`.
fn foreign_error(text: &str) -> ErrorBody {
    let mut message: String = text.trim().chars().take(200).collect();
    if message.is_empty() {
        message = "the gateway answered with an error and no body".into();
    }
    ErrorBody {
        error: ErrorDetail {
            code: "http_error".into(),
            message,
            details: Map::new(),
        },
    }
}

/// The error and every cause under it (`error sending request: connection refused`): reqwest's
/// own message alone does not say whether the gateway refused, reset or timed out.
fn causes(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}

const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// How many times a retry waits for the first call of its key to be answered.
const MAX_IN_USE_WAITS: u32 = 30;

pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    pub fn new(base: &str, token: Option<String>) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        Self {
            base: base.trim_end_matches('/').to_owned(),
            token,
            http,
        }
    }

    /// A read. Sent once more when the connection fails: a kept-alive connection the gateway
    /// closed at the moment it was reused fails the request without the gateway having seen
    /// it, and a read is safe to repeat.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        match self.send(self.http.get(self.url(path))).await {
            Err(ClientError::Transport { .. }) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                self.send(self.http.get(self.url(path))).await
            }
            other => other,
        }
    }

    /// A state-changing POST, made safe to retry (see [`Client::send_keyed`]).
    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &(impl Serialize + Sync),
    ) -> Result<T, ClientError> {
        self.send_keyed(|| self.http.post(self.url(path)).json(body))
            .await
    }

    /// A change of fields (a merge-patch): sending it twice changes nothing more.
    pub async fn patch<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &(impl Serialize + Sync),
    ) -> Result<T, ClientError> {
        self.send(self.http.patch(self.url(path)).json(body)).await
    }

    /// A state-changing DELETE, made safe to retry (see [`Client::send_keyed`]).
    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.send_keyed(|| self.http.delete(self.url(path))).await
    }

    /// Sends a state-changing call with a fresh `Idempotency-Key` and, when the connection
    /// fails before the answer is read (the call may or may not have been done), sends it once
    /// more with the same key: the gateway then answers what it answered the first time, from
    /// whichever gateway gets the retry, so a lost answer never makes a second state. A retry
    /// that finds the first call still being processed (409 `idempotency_key_in_use`) waits
    /// the `Retry-After` it is given and asks again, a bounded number of times.
    async fn send_keyed<T: DeserializeOwned>(
        &self,
        request: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let key = uuid::Uuid::new_v4().to_string();
        let keyed = || request().header(IDEMPOTENCY_KEY, &key);
        match self.send(keyed()).await {
            Err(ClientError::Transport { source, .. }) => {
                eprintln!(
                    "the connection failed ({source}); retrying with the same Idempotency-Key"
                );
            }
            other => return other,
        }
        let mut waits = 0;
        loop {
            match self.send(keyed()).await {
                Err(ClientError::Api {
                    status: 409, body, ..
                }) if body.error.code == "idempotency_key_in_use" && waits < MAX_IN_USE_WAITS => {
                    waits += 1;
                    let secs = body
                        .error
                        .details
                        .get("retry_after")
                        .and_then(Value::as_u64)
                        .unwrap_or(1)
                        .clamp(1, 10);
                    tokio::time::sleep(Duration::from_secs(secs)).await;
                }
                other => return other,
            }
        }
    }

    /// Opens a Server-Sent Events stream (`Last-Event-ID: after` when given) and hands each
    /// event's `data` to `on_data` until the stream ends. `Ok(true)` when the stream was
    /// opened (then ended: the gateway shut down or the connection dropped).
    pub async fn stream(
        &self,
        path: &str,
        after: Option<i64>,
        mut on_data: impl FnMut(String) -> Result<(), ClientError>,
    ) -> Result<bool, ClientError> {
        let mut req = self
            .http
            .get(self.url(path))
            .header("accept", "text/event-stream");
        if let Some(seq) = after {
            req = req.header("last-event-id", seq.to_string());
        }
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let transport = |source| ClientError::Transport {
            url: self.base.clone(),
            source,
        };
        let mut response = req.send().await.map_err(transport)?;
        let status = response.status().as_u16();
        if status >= 400 {
            let request_id = response
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let text = response.text().await.map_err(transport)?;
            let body =
                serde_json::from_str::<ErrorBody>(&text).unwrap_or_else(|_| foreign_error(&text));
            return Err(ClientError::Api {
                status,
                body,
                request_id,
            });
        }
        let mut parser = super::events::SseParser::default();
        loop {
            match response.chunk().await {
                Ok(Some(bytes)) => {
                    for data in parser.feed(&bytes) {
                        on_data(data)?;
                    }
                }
                Ok(None) => return Ok(true),
                Err(e) => {
                    eprintln!("the event stream was cut ({}); reconnecting", causes(&e));
                    return Ok(true);
                }
            }
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send<T: DeserializeOwned>(
        &self,
        mut req: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let response = req.send().await.map_err(|source| ClientError::Transport {
            url: self.base.clone(),
            source,
        })?;
        let status = response.status().as_u16();
        let request_id = response
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = response
            .text()
            .await
            .map_err(|source| ClientError::Transport {
                url: self.base.clone(),
                source,
            })?;
        if status >= 400 {
            let body =
                serde_json::from_str::<ErrorBody>(&text).unwrap_or_else(|_| foreign_error(&text));
            return Err(ClientError::Api {
                status,
                body,
                request_id,
            });
        }
        // A 204 has no body: read as `null`.
        let text = if text.is_empty() {
            "null"
        } else {
            text.as_str()
        };
        serde_json::from_str(text).map_err(|e| ClientError::Decode(format!("{e}: {text}")))
    }
}
