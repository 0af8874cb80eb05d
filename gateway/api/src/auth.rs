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
        }
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
        let mut cfg = jwt_config();
        cfg.hs256_secret = Some("s3cret".into());
        let a = auth(cfg);
        let key = EncodingKey::from_secret(b"s3cret");
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
                    &EncodingKey::from_secret(b"other")
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
        cfg.hs256_secret = Some("k".into());
        cfg.tenant_claim = "tenant".into();
        cfg.roles_claim = "scope".into();
        let a = auth(cfg);
        let now = chrono::Utc::now().timestamp();
        let c = json!({"tenant": "t9", "scope": "openid admin", "iss": "iss", "aud": "aud", "exp": now + 60});
        let caller = a
            .verify(&encode(&Header::default(), &c, &EncodingKey::from_secret(b"k")).unwrap())
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
}
