//! A small HTTP client for the gateway's API, used by the `state-*` commands.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;

/// An error as the CLI reports it: the API's code and message, or a transport failure.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{message} ({code}, HTTP {status})")]
    Api {
        status: u16,
        code: String,
        message: String,
        body: Value,
    },
    #[error("cannot reach the gateway at {url}: {}", causes(source))]
    Transport { url: String, source: reqwest::Error },
    #[error("unexpected answer from the gateway: {0}")]
    Decode(String),
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
        body: &Value,
    ) -> Result<T, ClientError> {
        self.send_keyed(|| self.http.post(self.url(path)).json(body))
            .await
    }

    /// A state-changing DELETE, made safe to retry (see [`Client::send_keyed`]).
    pub async fn patch<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &Value,
    ) -> Result<T, ClientError> {
        self.send(self.http.patch(self.url(path)).json(body)).await
    }

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
                    status: 409,
                    code,
                    body,
                    ..
                }) if code == "idempotency_key_in_use" && waits < MAX_IN_USE_WAITS => {
                    waits += 1;
                    let secs = body
                        .pointer("/error/retry_after")
                        .and_then(Value::as_u64)
                        .unwrap_or(1)
                        .clamp(1, 10);
                    tokio::time::sleep(Duration::from_secs(secs)).await;
                }
                other => return other,
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
        let text = response
            .text()
            .await
            .map_err(|source| ClientError::Transport {
                url: self.base.clone(),
                source,
            })?;
        if status >= 400 {
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text.clone()));
            let code = body
                .pointer("/error/code")
                .and_then(Value::as_str)
                .unwrap_or("http_error")
                .to_owned();
            let message = body
                .pointer("/error/message")
                .and_then(Value::as_str)
                .unwrap_or(text.as_str())
                .to_owned();
            return Err(ClientError::Api {
                status,
                code,
                message,
                body,
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
