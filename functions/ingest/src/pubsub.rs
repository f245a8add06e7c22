//! Pub/Sub push authentication: a push subscription with `--push-auth-service-account` sends
//! `Authorization: Bearer <JWT>`, an OpenID Connect token Google signs (RS256) for the
//! subscription's service account. It is checked as Google documents: the signature against
//! Google's published keys (a JWKS, fetched and cached, or a file), `aud` the configured
//! audience (the push endpoint's URL unless set), `iss` `https://accounts.google.com` or
//! `accounts.google.com`, `email` the push service account with `email_verified`, and `exp` and
//! `iat` within a small skew.
//!
//! An unknown `kid` makes the keys be read again, at most once a minute (Google rotates them).

use std::time::Duration;

use ferry_config::{JwksSource, PubSubPush};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::time::Instant;

/// The clock skew tolerated on `exp` and `iat`.
pub const SKEW: Duration = Duration::from_secs(60);
/// How often an unknown `kid` may make the keys be fetched again.
pub const REFETCH: Duration = Duration::from_secs(60);

const ISSUERS: [&str; 2] = ["https://accounts.google.com", "accounts.google.com"];

/// The claims of a push token that matter.
#[derive(Debug, Deserialize)]
pub struct Claims {
    pub email: String,
    #[serde(default)]
    pub email_verified: bool,
    pub iat: i64,
}

/// The keys that sign push tokens, read when needed.
#[derive(Debug)]
pub struct Jwks {
    source: JwksSource,
    http: reqwest::Client,
    cache: tokio::sync::Mutex<Cached>,
}

#[derive(Debug, Default)]
struct Cached {
    keys: Option<JwkSet>,
    read: Option<Instant>,
}

impl Jwks {
    pub fn new(source: JwksSource) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            // Only a broken TLS backend fails here.
            .unwrap_or_default();
        Self { source, http, cache: tokio::sync::Mutex::new(Cached::default()) }
    }

    /// The key `kid` names: from the cache, else after reading the keys again (at most once
    /// per [`REFETCH`]).
    async fn key(&self, kid: &str) -> Result<DecodingKey, String> {
        let mut cache = self.cache.lock().await;
        if let Some(key) = cache.keys.as_ref().and_then(|keys| keys.find(kid)) {
            return DecodingKey::from_jwk(key).map_err(|e| format!("the key {kid:?} cannot verify: {e}"));
        }
        let may_read = cache.read.is_none_or(|at| at.elapsed() >= REFETCH);
        if may_read {
            cache.read = Some(Instant::now());
            match self.read().await {
                Ok(keys) => cache.keys = Some(keys),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the Pub/Sub push keys (pipeline.pubsub-push.jwks)");
                    if cache.keys.is_none() {
                        return Err(format!("the push keys cannot be read: {e}"));
                    }
                }
            }
        }
        let key = cache
            .keys
            .as_ref()
            .and_then(|keys| keys.find(kid))
            .ok_or_else(|| format!("no key \"{}\" among the push keys", ferry_model::Shown(kid)))?;
        DecodingKey::from_jwk(key).map_err(|e| format!("the key {kid:?} cannot verify: {e}"))
    }

    async fn read(&self) -> Result<JwkSet, String> {
        let bytes = match &self.source {
            JwksSource::File(path) => std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?,
            JwksSource::Url(url) => {
                let response = self.http.get(url).send().await.map_err(|e| format!("{url}: {e}"))?;
                if !response.status().is_success() {
                    return Err(format!("{url}: HTTP {}", response.status().as_u16()));
                }
                response.bytes().await.map_err(|e| format!("{url}: {e}"))?.to_vec()
            }
        };
        serde_json::from_slice(&bytes).map_err(|e| format!("not a JWKS: {e}"))
    }
}

/// What a push's token must be, and the keys to check it with.
#[derive(Debug)]
pub struct PushAuth {
    pub expected: PubSubPush,
    pub jwks: Jwks,
}

impl PushAuth {
    pub fn new(expected: PubSubPush) -> Self {
        Self { jwks: Jwks::new(expected.jwks.clone()), expected }
    }

    /// Checks `Authorization: Bearer <token>`; the reason when it fails (never the token).
    pub async fn verify(&self, authorization: Option<&str>) -> Result<Claims, String> {
        let token = authorization
            .and_then(|a| a.strip_prefix("Bearer "))
            .ok_or("no `Authorization: Bearer` token (is the subscription's push authentication on?)")?;
        // `alg: none` and unknown algorithms fail here: jsonwebtoken knows neither.
        let header = jsonwebtoken::decode_header(token).map_err(|e| format!("not a JWT: {e}"))?;
        if header.alg != Algorithm::RS256 {
            return Err(format!("the token is signed with {:?}, not RS256", header.alg));
        }
        let kid = header.kid.ok_or("the token names no key (`kid`)")?;
        let key = self.jwks.key(&kid).await?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[&self.expected.audience]);
        validation.set_issuer(&ISSUERS);
        validation.set_required_spec_claims(&["exp", "iat", "aud", "iss"]);
        validation.leeway = SKEW.as_secs();
        let data = jsonwebtoken::decode::<Claims>(token, &key, &validation).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidAudience => {
                format!("the token is for another audience (want {:?})", self.expected.audience)
            }
            jsonwebtoken::errors::ErrorKind::InvalidIssuer => "the token is not issued by Google".to_owned(),
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => "the token has expired".to_owned(),
            jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                "the token's signature does not verify".to_owned()
            }
            _ => format!("the token is not valid: {e}"),
        })?;
        let claims = data.claims;
        if claims.email != self.expected.service_account {
            return Err(format!(
                "the token is for \"{}\", not the push service account",
                ferry_model::Shown(&claims.email)
            ));
        }
        if !claims.email_verified {
            return Err("the token's email is not verified".into());
        }
        let now = chrono_now();
        if claims.iat > now + SKEW.as_secs() as i64 {
            return Err("the token is issued in the future".into());
        }
        Ok(claims)
    }
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_unknown_kid_rereads_the_keys_once_a_minute() {
        let (first, rotated) = (
            ferry_testkit::clouds::PushSigner::new("key-1"),
            ferry_testkit::clouds::PushSigner::new("key-2"),
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("certs.json");
        std::fs::write(&path, first.jwks().to_string()).unwrap();
        let jwks = Jwks::new(JwksSource::File(path.clone()));
        assert!(jwks.key("key-1").await.is_ok());
        let mut both = first.jwks();
        both["keys"].as_array_mut().unwrap().push(rotated.jwks()["keys"][0].clone());
        std::fs::write(&path, both.to_string()).unwrap();
        let refused = jwks.key("key-2").await.unwrap_err();
        assert!(refused.contains("no key \"key-2\""), "{refused}");
        tokio::time::advance(REFETCH).await;
        assert!(jwks.key("key-2").await.is_ok(), "read again after a minute");
        assert!(jwks.key("key-3").await.is_err());
    }

    #[tokio::test]
    async fn unreadable_keys_are_named() {
        let jwks = Jwks::new(JwksSource::File("/nonexistent/certs.json".into()));
        let error = jwks.key("k").await.unwrap_err();
        assert!(error.contains("/nonexistent/certs.json"), "{error}");
    }
}
