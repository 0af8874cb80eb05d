//! Authentication: bearer tokens become a [`Caller`]. Signed JWTs (HS256 secret, or RS256/ES256
//! public keys from PEM or JWKS files) and a static token file for small setups.
//!
//! Everything fails closed: `exp` is always required, `iss` and `aud` are required whenever
//! they are configured (a token that lacks them is refused, not waved through), `nbf` is
//! enforced, an HS256 secret shorter than 32 bytes is refused at start, the tenant claim must
//! pass the one tenant-id rule, and operator scope comes only from the configured operator
//! claim — never from a role name.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use axum::extract::FromRequestParts;
use http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use snapgate_core::auth::{Caller, Role};
use snapgate_core::service::validate;

use crate::error::ApiError;
use crate::AppState;

/// The shortest HS256 secret accepted: 256 bits, the size of the HMAC-SHA-256 output (RFC 7518
/// §3.2). Anyone who guesses the secret signs tokens of any tenant, the operator's included.
pub const MIN_HS256_SECRET_BYTES: usize = 32;

/// How tokens are checked.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// A static token file: TOML `[tokens."<token>"] tenant = "…" role = "member"`, the key
    /// being the token itself or `sha256:<hex of its SHA-256>`; `operator = true` grants
    /// operator scope.
    pub token_file: Option<PathBuf>,
    pub jwt: Option<JwtConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// HS256 shared secret, at least 32 bytes.
    pub hs256_secret: Option<String>,
    /// A PEM file with an RSA or EC public key (RS256 / ES256).
    pub public_key_pem: Option<PathBuf>,
    /// A JWKS file with RSA or EC keys, chosen by the token's `kid`.
    pub jwks_file: Option<PathBuf>,
    /// When set, the `iss` claim is required and must equal it.
    pub issuer: Option<String>,
    /// When set, the `aud` claim is required and must contain it.
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
    /// The claim that marks the cloud operator. Absent: no JWT is ever the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<OperatorClaim>,
}

/// Operator scope for tokens whose `claim` holds `value`, e.g. Keystone's system scope
/// (`claim = "/system/all"`, `value = "true"`) or an IdP group (`claim = "groups"`,
/// `value = "cloud-operators"`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OperatorClaim {
    /// A top-level claim name, or a JSON pointer into the claims (`/system/all`).
    pub claim: String,
    /// Matches a string claim equal to it, a list of strings holding it, or a boolean or number
    /// written the same way (`"true"`).
    pub value: String,
    /// The tenant an operator token without a tenant claim acts as (system-scoped tokens carry
    /// no project). Absent: operator tokens need the tenant claim like any other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

impl OperatorClaim {
    fn matches(&self, claims: &serde_json::Value) -> bool {
        let found = if self.claim.starts_with('/') {
            claims.pointer(&self.claim)
        } else {
            claims.get(&self.claim)
        };
        match found {
            Some(serde_json::Value::String(s)) => *s == self.value,
            Some(serde_json::Value::Array(items)) => {
                items.iter().any(|v| v.as_str() == Some(&self.value))
            }
            Some(v @ (serde_json::Value::Bool(_) | serde_json::Value::Number(_))) => {
                serde_json::from_str::<serde_json::Value>(&self.value).is_ok_and(|want| want == *v)
            }
            _ => false,
        }
    }
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
    /// `key` is the configuration key in full (`auth.jwt.hs256_secret`).
    #[error("{key}: {message}")]
    InvalidJwt { key: &'static str, message: String },
}

/// Checks what can be checked without reading files: the HS256 secret's length, the operator
/// claim. Run by the configuration's validation too, so `snapgate config` refuses the same.
pub fn check_jwt_config(cfg: &JwtConfig) -> Result<(), AuthSetupError> {
    if let Some(secret) = &cfg.hs256_secret {
        if secret.len() < MIN_HS256_SECRET_BYTES {
            return Err(AuthSetupError::InvalidJwt {
                key: "auth.jwt.hs256_secret",
                message: format!(
                    "is {} bytes long; at least {MIN_HS256_SECRET_BYTES} are needed \
                     (e.g. `openssl rand -base64 48`)",
                    secret.len()
                ),
            });
        }
    }
    if let Some(op) = &cfg.operator {
        if op.claim.is_empty() || op.value.is_empty() {
            return Err(AuthSetupError::InvalidJwt {
                key: "auth.jwt.operator",
                message: "claim and value must both be non-empty".into(),
            });
        }
        if let Some(t) = &op.tenant {
            validate::tenant_id(t).map_err(|e| AuthSetupError::InvalidJwt {
                key: "auth.jwt.operator.tenant",
                message: e.to_string(),
            })?;
        }
    }
    Ok(())
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
    /// Cloud operator scope; only ever granted explicitly.
    #[serde(default)]
    operator: bool,
}

/// SHA-256 of a token: static tokens are kept and looked up by digest only, so neither the
/// process's memory nor the comparison's timing reveals a token.
type TokenDigest = [u8; 32];

fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

struct JwtVerifier {
    keys: Vec<(Option<String>, Algorithm, DecodingKey)>,
    validation_base: Validation,
    tenant_claim: String,
    roles_claim: String,
    operator: Option<OperatorClaim>,
}

/// Checks bearer tokens.
pub struct Authenticator {
    static_tokens: HashMap<TokenDigest, StaticToken>,
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
        if let Some(t) = self.static_tokens.get(&digest(token)) {
            let mut caller = Caller::new(t.tenant.clone(), t.role);
            if t.operator {
                caller = caller.with_operator_scope();
            }
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
                Ok(data) => return jwt.caller_from_claims(&data.claims),
                Err(e) => last_error = e.to_string(),
            }
        }
        Err(last_error)
    }
}

impl JwtVerifier {
    fn caller_from_claims(&self, claims: &serde_json::Value) -> Result<Caller, String> {
        let operator = self.operator.as_ref().filter(|op| op.matches(claims));
        let tenant = match claims.get(&self.tenant_claim) {
            Some(serde_json::Value::String(t)) => t.as_str(),
            Some(_) => return Err(format!("claim {} is not a string", self.tenant_claim)),
            None => operator
                .and_then(|op| op.tenant.as_deref())
                .ok_or_else(|| format!("token has no {} claim", self.tenant_claim))?,
        };
        validate::tenant_id(tenant).map_err(|e| format!("claim {}: {e}", self.tenant_claim))?;
        let roles: Vec<String> = match claims.get(&self.roles_claim) {
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
        if operator.is_some() {
            caller = caller.with_operator_scope();
        }
        if let Some(sub) = claims.get("sub").and_then(|v| v.as_str()) {
            caller.subject = sub.to_owned();
        }
        Ok(caller)
    }
}

fn read_token_file(path: &Path) -> Result<HashMap<TokenDigest, StaticToken>, AuthSetupError> {
    let text = std::fs::read_to_string(path).map_err(|source| AuthSetupError::Read {
        path: path.into(),
        source,
    })?;
    let invalid = |message: String| AuthSetupError::Invalid {
        path: path.into(),
        message,
    };
    let file: TokenFile = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
    let mut tokens = HashMap::with_capacity(file.tokens.len());
    for (key, entry) in file.tokens {
        validate::tenant_id(&entry.tenant)
            .map_err(|e| invalid(format!("tenant {:?}: {e}", entry.tenant)))?;
        // The key is never echoed: it may be a live token.
        let token_digest = match key.strip_prefix("sha256:") {
            Some(hex_digest) => parse_digest(hex_digest).ok_or_else(|| {
                invalid("a `sha256:` key must be followed by 64 hexadecimal digits".into())
            })?,
            None if key.is_empty() => return Err(invalid("a token must not be empty".into())),
            None => digest(&key),
        };
        if tokens.insert(token_digest, entry).is_some() {
            return Err(invalid(
                "a token is listed twice (once plain, once as sha256:)".into(),
            ));
        }
    }
    Ok(tokens)
}

fn parse_digest(hex_digest: &str) -> Option<TokenDigest> {
    let mut out = [0u8; 32];
    if hex_digest.len() != 64 || !hex_digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    for (byte, pair) in out.iter_mut().zip(hex_digest.as_bytes().chunks(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

fn build_jwt(cfg: &JwtConfig) -> Result<JwtVerifier, AuthSetupError> {
    check_jwt_config(cfg)?;
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
    validation.validate_nbf = true;
    // jsonwebtoken checks `iss` and `aud` only when the token carries them, unless they are
    // required claims: require every one that is configured.
    let mut required = vec!["exp"];
    match &cfg.issuer {
        Some(iss) => {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        None => validation.iss = None,
    }
    match &cfg.audience {
        Some(aud) => {
            validation.set_audience(&[aud]);
            required.push("aud");
        }
        None => validation.validate_aud = false,
    }
    validation.set_required_spec_claims(&required);
    Ok(JwtVerifier {
        keys,
        validation_base: validation,
        tenant_claim: cfg.tenant_claim.clone(),
        roles_claim: cfg.roles_claim.clone(),
        operator: cfg.operator.clone(),
    })
}

/// The authenticated caller of a `/v1` request.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Caller);

/// The token of an `Authorization` header. The scheme is case-insensitive (RFC 9110 §11.1):
/// `Bearer`, `bearer` and `BEARER` are the same.
fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim_start().split_once([' ', '\t'])?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

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
        let token = bearer_token(header).ok_or_else(|| {
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

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    fn claims(exp_in: i64) -> serde_json::Value {
        let now = chrono::Utc::now().timestamp();
        json!({"sub": "alice", "project_id": "p1", "roles": ["member"], "iss": "iss", "aud": "aud", "exp": now + exp_in})
    }

    fn jwt_config() -> JwtConfig {
        JwtConfig {
            hs256_secret: None,
            public_key_pem: None,
            jwks_file: None,
            issuer: Some("iss".into()),
            audience: Some("aud".into()),
            tenant_claim: default_tenant_claim(),
            roles_claim: default_roles_claim(),
            leeway_secs: 0,
            operator: None,
        }
    }

    /// An HS256 secret of the shortest accepted length.
    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn hs256() -> (Authenticator, EncodingKey) {
        let mut cfg = jwt_config();
        cfg.hs256_secret = Some(SECRET.into());
        (auth(cfg), EncodingKey::from_secret(SECRET.as_bytes()))
    }

    fn sign(claims: &serde_json::Value, key: &EncodingKey) -> String {
        encode(&Header::default(), claims, key).unwrap()
    }

    fn auth(jwt: JwtConfig) -> Authenticator {
        Authenticator::from_config(&AuthConfig {
            token_file: None,
            jwt: Some(jwt),
        })
        .unwrap()
    }

    /// Runs the system's openssl (present on every Debian machine); returns its stdout.
    fn openssl(args: &[&str]) -> String {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Generates a key pair with openssl.
    fn openssl_keys(dir: &Path, kind: &str) -> (Vec<u8>, PathBuf) {
        let private = dir.join(format!("{kind}.key"));
        let public = dir.join(format!("{kind}.pub.pem"));
        let p = private.to_str().unwrap();
        let (algorithm, option) = match kind {
            "rsa" => ("RSA", "rsa_keygen_bits:2048"),
            _ => ("EC", "ec_paramgen_curve:P-256"),
        };
        openssl(&[
            "genpkey",
            "-algorithm",
            algorithm,
            "-pkeyopt",
            option,
            "-out",
            p,
        ]);
        openssl(&[
            "pkey",
            "-in",
            p,
            "-pubout",
            "-out",
            public.to_str().unwrap(),
        ]);
        (std::fs::read(&private).unwrap(), public)
    }

    #[test]
    fn hs256_checks_signature_expiry_issuer_audience_and_claims() {
        let (a, key) = hs256();
        let ok = encode(&Header::default(), &claims(60), &key).unwrap();
        let caller = a.verify(&ok).unwrap();
        assert_eq!(
            (caller.tenant.as_str(), caller.role, caller.subject.as_str()),
            ("p1", Role::Member, "alice")
        );

        assert!(
            a.verify(&encode(&Header::default(), &claims(-60), &key).unwrap())
                .is_err(),
            "expired"
        );
        assert!(
            a.verify(
                &encode(
                    &Header::default(),
                    &claims(60),
                    &EncodingKey::from_secret(b"another secret of thirty-two bytes")
                )
                .unwrap()
            )
            .is_err(),
            "bad signature"
        );
        let mut c = claims(60);
        c["iss"] = json!("someone-else");
        assert!(
            a.verify(&encode(&Header::default(), &c, &key).unwrap())
                .is_err(),
            "issuer"
        );
        let mut c = claims(60);
        c["aud"] = json!("another-service");
        assert!(
            a.verify(&encode(&Header::default(), &c, &key).unwrap())
                .is_err(),
            "audience"
        );
        let mut c = claims(60);
        c["roles"] = json!(["viewer"]);
        assert!(
            a.verify(&encode(&Header::default(), &c, &key).unwrap())
                .is_err(),
            "no snapgate role"
        );
        let mut c = claims(60);
        c.as_object_mut().unwrap().remove("project_id");
        assert!(
            a.verify(&encode(&Header::default(), &c, &key).unwrap())
                .is_err(),
            "no tenant"
        );
        assert!(a.verify("not-a-jwt").is_err());
        // An unsigned token ("alg": "none") is never accepted.
        let none = format!(
            "{}.{}.",
            b64(r#"{"alg":"none","typ":"JWT"}"#),
            b64(&claims(60).to_string())
        );
        assert!(a.verify(&none).is_err());
    }

    fn b64(s: &str) -> String {
        b64_bytes(s.as_bytes())
    }

    #[test]
    fn configurable_claim_names_and_space_separated_roles() {
        let mut cfg = jwt_config();
        cfg.hs256_secret = Some(SECRET.into());
        cfg.tenant_claim = "tenant".into();
        cfg.roles_claim = "scope".into();
        let a = auth(cfg);
        let now = chrono::Utc::now().timestamp();
        let c = json!({"tenant": "t9", "scope": "openid admin", "iss": "iss", "aud": "aud", "exp": now + 60});
        let caller = a
            .verify(&sign(&c, &EncodingKey::from_secret(SECRET.as_bytes())))
            .unwrap();
        assert_eq!((caller.tenant.as_str(), caller.role), ("t9", Role::Admin));
    }

    #[test]
    fn rs256_and_es256_public_keys_from_pem() {
        let dir = std::env::temp_dir().join(format!("snapgate-auth-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        for (kind, alg) in [("rsa", Algorithm::RS256), ("ec", Algorithm::ES256)] {
            let (private, public) = openssl_keys(&dir, kind);
            let mut cfg = jwt_config();
            cfg.public_key_pem = Some(public);
            let a = auth(cfg);
            let key = match alg {
                Algorithm::RS256 => EncodingKey::from_rsa_pem(&private).unwrap(),
                _ => EncodingKey::from_ec_pem(&private).unwrap(),
            };
            let token = encode(&Header::new(alg), &claims(60), &key).unwrap();
            assert_eq!(a.verify(&token).unwrap().tenant, "p1", "{kind}");
            // An HS256 token made with the public key as secret (key confusion) is refused.
            let pem = std::fs::read(dir.join(format!("{kind}.pub.pem"))).unwrap();
            let confused = encode(
                &Header::default(),
                &claims(60),
                &EncodingKey::from_secret(&pem),
            )
            .unwrap();
            assert!(a.verify(&confused).is_err(), "{kind}: key confusion");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// The public half of an openssl key as a JWK (`n`/`e` for RSA, `x`/`y` for P-256).
    fn jwk_of(public_pem: &Path, kind: &str, kid: &str) -> serde_json::Value {
        let pem = public_pem.to_str().unwrap();
        let hex_bytes = |hex: &str| -> Vec<u8> {
            let digits: Vec<u8> = hex.bytes().filter(u8::is_ascii_hexdigit).collect();
            digits
                .chunks(2)
                .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
                .collect()
        };
        match kind {
            "rsa" => {
                let modulus = openssl(&["rsa", "-pubin", "-in", pem, "-noout", "-modulus"]);
                let n = hex_bytes(modulus.trim().trim_start_matches("Modulus="));
                json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
                       "n": b64_bytes(&n), "e": b64_bytes(&[1, 0, 1])})
            }
            _ => {
                // `pub:` is followed by the uncompressed point 04 || x || y, in hex lines.
                let dump = openssl(&["pkey", "-pubin", "-in", pem, "-noout", "-text"]);
                let hex: String = dump
                    .split("pub:")
                    .nth(1)
                    .unwrap()
                    .lines()
                    .skip(1)
                    .take_while(|line| line.starts_with(' '))
                    .collect();
                let point = hex_bytes(&hex);
                assert_eq!((point.len(), point[0]), (65, 4), "uncompressed P-256 point");
                json!({"kty": "EC", "kid": kid, "use": "sig", "alg": "ES256", "crv": "P-256",
                       "x": b64_bytes(&point[1..33]), "y": b64_bytes(&point[33..])})
            }
        }
    }

    /// URL-safe base64 without padding, enough for a test.
    fn b64_bytes(bytes: &[u8]) -> String {
        const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, &x)| acc | (u32::from(x) << (16 - 8 * i)));
            for i in 0..=chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }

    #[test]
    fn rs256_and_es256_keys_from_a_jwks_file_chosen_by_kid() {
        let dir = std::env::temp_dir().join(format!("snapgate-jwks-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let (rsa_private, rsa_public) = openssl_keys(&dir, "rsa");
        let (ec_private, ec_public) = openssl_keys(&dir, "ec");
        let jwks = dir.join("jwks.json");
        std::fs::write(
            &jwks,
            json!({"keys": [jwk_of(&rsa_public, "rsa", "rsa-1"), jwk_of(&ec_public, "ec", "ec-1")]})
                .to_string(),
        )
        .unwrap();
        let mut cfg = jwt_config();
        cfg.jwks_file = Some(jwks.clone());
        let a = auth(cfg);
        let rsa_key = EncodingKey::from_rsa_pem(&rsa_private).unwrap();
        let ec_key = EncodingKey::from_ec_pem(&ec_private).unwrap();
        let header = |alg: Algorithm, kid: Option<&str>| {
            let mut h = Header::new(alg);
            h.kid = kid.map(str::to_owned);
            h
        };

        let rsa = encode(
            &header(Algorithm::RS256, Some("rsa-1")),
            &claims(60),
            &rsa_key,
        )
        .unwrap();
        assert_eq!(a.verify(&rsa).unwrap().tenant, "p1", "RS256 with its kid");
        let ec = encode(
            &header(Algorithm::ES256, Some("ec-1")),
            &claims(60),
            &ec_key,
        )
        .unwrap();
        assert_eq!(
            a.verify(&ec).unwrap().role,
            Role::Member,
            "ES256 with its kid"
        );
        let no_kid = encode(&header(Algorithm::ES256, None), &claims(60), &ec_key).unwrap();
        assert!(
            a.verify(&no_kid).is_ok(),
            "no kid: every key of the algorithm is tried"
        );

        let unknown_kid = encode(
            &header(Algorithm::RS256, Some("rsa-2")),
            &claims(60),
            &rsa_key,
        )
        .unwrap();
        assert!(
            a.verify(&unknown_kid).is_err(),
            "a kid the set does not hold"
        );
        let expired = encode(
            &header(Algorithm::RS256, Some("rsa-1")),
            &claims(-60),
            &rsa_key,
        )
        .unwrap();
        assert!(a.verify(&expired).is_err(), "expired");
        let (stranger, _) = openssl_keys(&dir, "rsa");
        let forged = encode(
            &header(Algorithm::RS256, Some("rsa-1")),
            &claims(60),
            &EncodingKey::from_rsa_pem(&stranger).unwrap(),
        )
        .unwrap();
        assert!(a.verify(&forged).is_err(), "signed by a key not in the set");

        std::fs::write(&jwks, "{\"keys\": [{\"kty\": \"RSA\"}]}").unwrap();
        let mut cfg = jwt_config();
        cfg.jwks_file = Some(jwks);
        let error = Authenticator::from_config(&AuthConfig {
            token_file: None,
            jwt: Some(cfg),
        })
        .unwrap_err();
        assert!(
            matches!(error, AuthSetupError::Invalid { .. }),
            "a malformed JWKS is refused at start: {error}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn static_token_file() {
        let dir = std::env::temp_dir().join(format!("snapgate-tokens-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("tokens.toml");
        std::fs::write(&f, "[tokens.\"abc\"]\ntenant = \"t1\"\nrole = \"reader\"\n").unwrap();
        let a = Authenticator::from_config(&AuthConfig {
            token_file: Some(f.clone()),
            jwt: None,
        })
        .unwrap();
        assert_eq!(a.verify("abc").unwrap().role, Role::Reader);
        assert!(a.verify("abd").is_err());
        std::fs::write(
            &f,
            "[tokens.\"abc\"]\ntenant = \"t1\"\nrole = \"superuser\"\n",
        )
        .unwrap();
        assert!(Authenticator::from_config(&AuthConfig {
            token_file: Some(f),
            jwt: None
        })
        .is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_configured_audience_is_required() {
        let (a, key) = hs256();
        let mut c = claims(60);
        c.as_object_mut().unwrap().remove("aud");
        assert!(a.verify(&sign(&c, &key)).is_err(), "no aud");
        c["aud"] = json!(["other", "aud"]);
        assert!(a.verify(&sign(&c, &key)).is_ok(), "aud list holding ours");
    }

    #[test]
    fn a_configured_issuer_is_required() {
        let (a, key) = hs256();
        let mut c = claims(60);
        c.as_object_mut().unwrap().remove("iss");
        assert!(a.verify(&sign(&c, &key)).is_err(), "no iss");
    }

    #[test]
    fn exp_is_always_required_and_unconfigured_iss_aud_are_not() {
        let mut cfg = jwt_config();
        cfg.hs256_secret = Some(SECRET.into());
        cfg.issuer = None;
        cfg.audience = None;
        let a = auth(cfg);
        let key = EncodingKey::from_secret(SECRET.as_bytes());
        let mut c = claims(60);
        c.as_object_mut().unwrap().remove("iss");
        c.as_object_mut().unwrap().remove("aud");
        assert!(a.verify(&sign(&c, &key)).is_ok());
        c.as_object_mut().unwrap().remove("exp");
        assert!(a.verify(&sign(&c, &key)).is_err(), "no exp");
        c["exp"] = json!("tomorrow");
        assert!(a.verify(&sign(&c, &key)).is_err(), "exp not a number");
    }

    #[test]
    fn a_future_nbf_is_refused() {
        let (a, key) = hs256();
        let now = chrono::Utc::now().timestamp();
        let mut c = claims(3600);
        c["nbf"] = json!(now + 600);
        assert!(a.verify(&sign(&c, &key)).is_err(), "not valid yet");
        c["nbf"] = json!(now - 600);
        assert!(a.verify(&sign(&c, &key)).is_ok(), "valid since");
    }

    #[test]
    fn short_and_empty_hs256_secrets_are_refused_at_start() {
        for secret in ["", "s3cret", &SECRET[1..]] {
            let mut cfg = jwt_config();
            cfg.hs256_secret = Some(secret.into());
            let error = Authenticator::from_config(&AuthConfig {
                token_file: None,
                jwt: Some(cfg),
            })
            .unwrap_err()
            .to_string();
            assert!(
                error.contains("auth.jwt.hs256_secret"),
                "{secret:?}: {error}"
            );
        }
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for header in [
            "Bearer abc",
            "bearer abc",
            "BEARER abc",
            "bEaReR  abc ",
            "Bearer\tabc",
        ] {
            assert_eq!(bearer_token(header), Some("abc"), "{header:?}");
        }
        for header in ["Basic abc", "Bearer", "Bearer   ", "Bearerabc", "abc", ""] {
            assert_eq!(bearer_token(header), None, "{header:?}");
        }
    }

    fn token_file(body: &str) -> Result<Authenticator, AuthSetupError> {
        let dir = std::env::temp_dir().join(format!("snapgate-tokens-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("tokens.toml");
        std::fs::write(&f, body).unwrap();
        let a = Authenticator::from_config(&AuthConfig {
            token_file: Some(f),
            jwt: None,
        });
        std::fs::remove_dir_all(dir).unwrap();
        a
    }

    #[test]
    fn static_tokens_are_kept_as_sha256_digests() {
        let hashed = format!("sha256:{}", hex_of(&digest("hashed-token")));
        let a = token_file(&format!(
            "[tokens.\"plain-token\"]\ntenant = \"t1\"\nrole = \"member\"\n\
             [tokens.\"{}\"]\ntenant = \"t2\"\nrole = \"reader\"\n",
            hashed.to_uppercase().replacen("SHA256", "sha256", 1)
        ))
        .unwrap();
        assert_eq!(a.verify("plain-token").unwrap().tenant, "t1");
        assert_eq!(a.verify("hashed-token").unwrap().tenant, "t2");
        assert!(a.verify(&hashed).is_err(), "the digest is no token");
        assert!(a.verify("plain-toke").is_err());
        // Only digests are kept: nothing in the authenticator holds a token's text.
        assert!(a.static_tokens.contains_key(&digest("plain-token")));
        assert!(!format!("{a:?}").contains("plain-token"));

        for bad in [
            "[tokens.\"sha256:abc\"]\ntenant = \"t\"\nrole = \"member\"\n",
            &format!("[tokens.\"sha256:{}\"]\ntenant = \"t\"\nrole = \"member\"\n", "g".repeat(64)),
            "[tokens.\"\"]\ntenant = \"t\"\nrole = \"member\"\n",
            &format!(
                "[tokens.\"x\"]\ntenant = \"t\"\nrole = \"member\"\n[tokens.\"sha256:{}\"]\ntenant = \"t\"\nrole = \"member\"\n",
                hex_of(&digest("x"))
            ),
        ] {
            assert!(token_file(bad).is_err(), "{bad}");
        }
    }

    fn hex_of(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn static_tokens_hold_valid_tenants_and_explicit_operators() {
        let a = token_file(
            "[tokens.\"op\"]\ntenant = \"ops\"\nrole = \"admin\"\noperator = true\n\
             [tokens.\"adm\"]\ntenant = \"t1\"\nrole = \"admin\"\n",
        )
        .unwrap();
        assert!(a.verify("op").unwrap().is_cloud_admin());
        let admin = a.verify("adm").unwrap();
        assert!(
            !admin.is_operator() && !admin.can_see("ops"),
            "a role is no scope"
        );
        for tenant in ["", "a b", "t\u{200b}", &"t".repeat(256)] {
            let error = token_file(&format!(
                "[tokens.\"x\"]\ntenant = \"{tenant}\"\nrole = \"member\"\n"
            ))
            .unwrap_err()
            .to_string();
            assert!(error.contains("tenant"), "{tenant:?}: {error}");
        }
    }

    #[test]
    fn a_tenant_claim_that_breaks_the_tenant_rule_is_refused() {
        let (a, key) = hs256();
        for tenant in [
            json!(""),
            json!("x".repeat(300)),
            json!("p\u{200b}1"),
            json!("p\u{202e}1"),
            json!("p 1"),
            json!(42),
        ] {
            let mut c = claims(60);
            c["project_id"] = tenant.clone();
            assert!(a.verify(&sign(&c, &key)).is_err(), "{tenant}");
        }
        let mut c = claims(60);
        c["project_id"] = json!("x".repeat(255));
        assert!(
            a.verify(&sign(&c, &key)).is_ok(),
            "255 characters fit the column"
        );
    }

    #[test]
    fn operator_scope_comes_only_from_the_configured_claim() {
        let admin_claims = || {
            let mut c = claims(60);
            c["roles"] = json!(["admin", "member", "reader"]);
            c
        };
        let key = EncodingKey::from_secret(SECRET.as_bytes());
        // No operator claim configured: an admin is its tenant's admin, whatever it carries.
        let (a, _) = hs256();
        let mut c = admin_claims();
        c["system"] = json!({"all": true});
        let caller = a.verify(&sign(&c, &key)).unwrap();
        assert_eq!(caller.role, Role::Admin);
        assert!(!caller.is_operator() && !caller.can_see("another-tenant"));

        // Keystone's system scope, as `{"system": {"all": true}}`.
        let mut cfg = jwt_config();
        cfg.hs256_secret = Some(SECRET.into());
        cfg.operator = Some(OperatorClaim {
            claim: "/system/all".into(),
            value: "true".into(),
            tenant: Some("cloud-admin".into()),
        });
        let a = auth(cfg);
        let caller = a.verify(&sign(&c, &key)).unwrap();
        assert!(caller.is_cloud_admin() && caller.can_see("another-tenant"));
        assert!(
            !a.verify(&sign(&admin_claims(), &key))
                .unwrap()
                .is_operator(),
            "the bare admin role"
        );
        c["system"] = json!({"all": false});
        assert!(!a.verify(&sign(&c, &key)).unwrap().is_operator());
        // A system-scoped token carries no project: it acts as the configured tenant.
        let mut c = admin_claims();
        c["system"] = json!({"all": true});
        c.as_object_mut().unwrap().remove("project_id");
        assert_eq!(a.verify(&sign(&c, &key)).unwrap().tenant, "cloud-admin");
        c["system"] = json!({});
        assert!(
            a.verify(&sign(&c, &key)).is_err(),
            "no project, no operator"
        );

        // A top-level claim: a string, or a list holding the value.
        let mut cfg = jwt_config();
        cfg.hs256_secret = Some(SECRET.into());
        cfg.operator = Some(OperatorClaim {
            claim: "groups".into(),
            value: "cloud-operators".into(),
            tenant: None,
        });
        let a = auth(cfg);
        for (groups, operator) in [
            (json!("cloud-operators"), true),
            (json!(["staff", "cloud-operators"]), true),
            (json!(["cloud-operators-2"]), false),
            (json!("admin"), false),
        ] {
            let mut c = admin_claims();
            c["groups"] = groups.clone();
            assert_eq!(
                a.verify(&sign(&c, &key)).unwrap().is_operator(),
                operator,
                "{groups}"
            );
        }
    }
}
