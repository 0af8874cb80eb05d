//! Authentication: bearer tokens become a [`Caller`]. Signed JWTs (HS256 secret, or RS256/ES256
//! public keys from PEM or JWKS files) with issuer, audience and expiry checked, and a static
//! token file for small setups.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use axum::extract::FromRequestParts;
use http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use snapgate_core::auth::{Caller, Role};

use crate::error::ApiError;
use crate::AppState;

/// How tokens are checked.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// A static token file: TOML `[tokens."<token>"] tenant = "…" role = "member"`.
    pub token_file: Option<PathBuf>,
    pub jwt: Option<JwtConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// HS256 shared secret.
    pub hs256_secret: Option<String>,
    /// A PEM file with an RSA or EC public key (RS256 / ES256).
    pub public_key_pem: Option<PathBuf>,
    /// A JWKS file with RSA or EC keys, chosen by the token's `kid`.
    pub jwks_file: Option<PathBuf>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// Claim holding the tenant (project) id.
    #[serde(default = "default_tenant_claim")]
    pub tenant_claim: String,
    /// Claim holding the roles (a list of strings, or one space-separated string).
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
    /// Clock skew allowed on `exp`/`nbf`, in seconds.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
}

fn default_tenant_claim() -> String {
    "project_id".into()
}
fn default_roles_claim() -> String {
    "roles".into()
}
fn default_leeway() -> u64 {
    30
}

#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("auth.jwt needs one of hs256_secret, public_key_pem or jwks_file")]
    NoJwtKey,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    #[serde(default)]
    tokens: HashMap<String, StaticToken>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct StaticToken {
    tenant: String,
    role: Role,
    #[serde(default)]
    subject: Option<String>,
}

struct JwtVerifier {
    keys: Vec<(Option<String>, Algorithm, DecodingKey)>,
    validation_base: Validation,
    tenant_claim: String,
    roles_claim: String,
}

/// Checks bearer tokens.
pub struct Authenticator {
    static_tokens: HashMap<String, StaticToken>,
    jwt: Option<JwtVerifier>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("static_tokens", &self.static_tokens.len())
            .field("jwt", &self.jwt.is_some())
            .finish()
    }
}

impl Authenticator {
    pub fn from_config(cfg: &AuthConfig) -> Result<Self, AuthSetupError> {
        let static_tokens = match &cfg.token_file {
            Some(path) => read_token_file(path)?,
            None => HashMap::new(),
        };
        let jwt = cfg.jwt.as_ref().map(build_jwt).transpose()?;
        Ok(Self { static_tokens, jwt })
    }

    /// Checks a bearer token. The error text is for logs; clients get a generic 401.
    pub fn verify(&self, token: &str) -> Result<Caller, String> {
        if let Some(t) = self.static_tokens.get(token) {
            let mut caller = Caller::new(t.tenant.clone(), t.role);
            if let Some(s) = &t.subject {
                caller.subject = s.clone();
            }
            return Ok(caller);
        }
        let Some(jwt) = &self.jwt else {
            return Err("unknown token".into());
        };
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| format!("malformed token: {e}"))?;
        let mut last_error = String::from("no key matches the token");
        for (kid, alg, key) in &jwt.keys {
            if *alg != header.alg || (kid.is_some() && header.kid.is_some() && *kid != header.kid) {
                continue;
            }
            let mut validation = jwt.validation_base.clone();
            validation.algorithms = vec![*alg];
            match jsonwebtoken::decode::<serde_json::Value>(token, key, &validation) {
                Ok(data) => {
                    return caller_from_claims(&data.claims, &jwt.tenant_claim, &jwt.roles_claim)
                }
                Err(e) => last_error = e.to_string(),
            }
        }
        Err(last_error)
    }
}

fn caller_from_claims(
    claims: &serde_json::Value,
    tenant_claim: &str,
    roles_claim: &str,
) -> Result<Caller, String> {
    let tenant = claims
        .get(tenant_claim)
        .and_then(|v| v.as_str())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| format!("token has no {tenant_claim} claim"))?;
    let roles: Vec<String> = match claims.get(roles_claim) {
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        Some(serde_json::Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
        _ => Vec::new(),
    };
    let role = roles
        .iter()
        .filter_map(|r| Role::parse(r))
        .max()
        .ok_or_else(|| "token grants no snapgate role".to_owned())?;
    let mut caller = Caller::new(tenant, role);
    if let Some(sub) = claims.get("sub").and_then(|v| v.as_str()) {
        caller.subject = sub.to_owned();
    }
    Ok(caller)
}

fn read_token_file(path: &Path) -> Result<HashMap<String, StaticToken>, AuthSetupError> {
    let text = std::fs::read_to_string(path).map_err(|source| AuthSetupError::Read {
        path: path.into(),
        source,
    })?;
    let file: TokenFile = toml::from_str(&text).map_err(|e| AuthSetupError::Invalid {
        path: path.into(),
        message: e.to_string(),
    })?;
    Ok(file.tokens)
}

fn build_jwt(cfg: &JwtConfig) -> Result<JwtVerifier, AuthSetupError> {
    let mut keys = Vec::new();
    if let Some(secret) = &cfg.hs256_secret {
        keys.push((
            None,
            Algorithm::HS256,
            DecodingKey::from_secret(secret.as_bytes()),
        ));
    }
    if let Some(path) = &cfg.public_key_pem {
        let pem = std::fs::read(path).map_err(|source| AuthSetupError::Read {
            path: path.clone(),
            source,
        })?;
        let invalid = |e: jsonwebtoken::errors::Error| AuthSetupError::Invalid {
            path: path.clone(),
            message: e.to_string(),
        };
        match DecodingKey::from_rsa_pem(&pem) {
            Ok(k) => keys.push((None, Algorithm::RS256, k)),
            Err(_) => keys.push((
                None,
                Algorithm::ES256,
                DecodingKey::from_ec_pem(&pem).map_err(invalid)?,
            )),
        }
    }
    if let Some(path) = &cfg.jwks_file {
        let text = std::fs::read_to_string(path).map_err(|source| AuthSetupError::Read {
            path: path.clone(),
            source,
        })?;
        let invalid = |message: String| AuthSetupError::Invalid {
            path: path.clone(),
            message,
        };
        let set: jsonwebtoken::jwk::JwkSet =
            serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        for jwk in &set.keys {
            let alg = match &jwk.algorithm {
                jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => Algorithm::RS256,
                jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_) => Algorithm::ES256,
                _ => continue,
            };
            let key = DecodingKey::from_jwk(jwk).map_err(|e| invalid(e.to_string()))?;
            keys.push((jwk.common.key_id.clone(), alg, key));
        }
    }
    if keys.is_empty() {
        return Err(AuthSetupError::NoJwtKey);
    }
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = cfg.leeway_secs;
    validation.validate_exp = true;
    validation.set_required_spec_claims(&["exp"]);
    match &cfg.issuer {
        Some(iss) => validation.set_issuer(&[iss]),
        None => validation.iss = None,
    }
    match &cfg.audience {
        Some(aud) => validation.set_audience(&[aud]),
        None => validation.validate_aud = false,
    }
    Ok(JwtVerifier {
        keys,
        validation_base: validation,
        tenant_claim: cfg.tenant_claim.clone(),
        roles_claim: cfg.roles_claim.clone(),
    })
}

/// The authenticated caller of a `/v1` request.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Caller);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ApiError::unauthenticated("missing bearer token"))?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::unauthenticated("the Authorization header must be `Bearer <token>`")
            })?;
        match state.auth.verify(token) {
            Ok(caller) => {
                tracing::Span::current().record("tenant", caller.tenant.as_str());
                Ok(Authenticated(caller))
            }
            Err(reason) => {
                tracing::info!(%reason, "token refused");
                metrics::counter!("snapgate_auth_failures_total").increment(1);
                Err(ApiError::unauthenticated("invalid or expired token"))
            }
        }
    }
}
