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
    #[error("cannot reach the gateway at {url}: {source}")]
    Transport { url: String, source: reqwest::Error },
    #[error("unexpected answer from the gateway: {0}")]
    Decode(String),
}

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

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.send(self.http.get(self.url(path))).await
    }

    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &Value,
    ) -> Result<T, ClientError> {
        self.send(self.http.post(self.url(path)).json(body)).await
    }

    pub async fn patch<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &Value,
    ) -> Result<T, ClientError> {
        self.send(self.http.patch(self.url(path)).json(body)).await
    }

    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.send(self.http.delete(self.url(path))).await
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
