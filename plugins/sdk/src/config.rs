//! The plugin's JSON configuration, written by the operator in the gateway config.

use serde::de::DeserializeOwned;

use crate::Request;

/// The configuration text is not valid JSON for the plugin's config type.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "bad plugin config: {}", self.0)
    }
}

/// Parses `req.config`. An empty text counts as `{}` so `#[serde(default)]` fields apply.
pub fn parse_config<T: DeserializeOwned>(req: &Request) -> Result<T, ConfigError> {
    let text = if req.config.trim().is_empty() {
        "{}"
    } else {
        req.config.as_str()
    };
    serde_json::from_str(text).map_err(|e| ConfigError(e.to_string()))
}
