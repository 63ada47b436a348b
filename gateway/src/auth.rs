//! Identity: JWT bearer tokens.
//!
//! Tokens come from the gateway's own Ed25519 key (`vre token issue`) or from an identity
//! provider whose keys are configured as a JWKS (a file or a URL). Each key is bound to its own
//! algorithm, taken from the key and never from the token, so `alg: none` and algorithm
//! confusion (an HS256 token "signed" with a public key) cannot verify. A token must name a
//! known `kid` (or there must be exactly one key), carry the configured `iss` and `aud`, and be
//! within `nbf`..`exp`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use policy::ids::Subject;
use policy::roles::{Role, RoleSet};
use serde::{Deserialize, Serialize};

use crate::config::AuthSettings;
use crate::keys::Ed25519Key;

pub const LOCAL_ISSUER: &str = "vre-gateway";
pub const LOCAL_AUDIENCE: &str = "vre-gateway";

/// The person behind a verified token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub sub: Subject,
    pub roles: RoleSet,
    /// The institution a steward speaks for (`auth.institution_claim`), as the identifier a
    /// DMP's data-providing institution carries; `None` when the token names none.
    pub institution: Option<String>,
}

/// Why a token was refused. All of them are a 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token: send `Authorization: Bearer <token>`")]
    Missing,
    #[error("the token is malformed")]
    Malformed,
    #[error("the token names a signing key this gateway does not know")]
    UnknownKey,
    #[error("the token's algorithm is not the one of its key")]
    WrongAlgorithm,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was issued for another audience")]
    WrongAudience,
    #[error("the token comes from an issuer this gateway does not trust")]
    WrongIssuer,
    #[error("the token's subject is not acceptable: {0}")]
    BadSubject(String),
}

/// The claims the gateway writes into its own tokens.
#[derive(Debug, Serialize, Deserialize)]
pub struct LocalClaims {
    pub sub: String,
    pub iss: String,
    pub aud: String,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
    pub roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub institution: Option<String>,
}

/// Mints a token with the gateway's own key.
pub fn issue(
    key: &Ed25519Key,
    settings: &AuthSettings,
    sub: &Subject,
    roles: RoleSet,
    ttl: Duration,
) -> anyhow::Result<String> {
    issue_for(key, settings, sub, roles, None, ttl)
}

/// Mints a token that also names the institution its holder speaks for (stewards).
pub fn issue_for(
    key: &Ed25519Key,
    settings: &AuthSettings,
    sub: &Subject,
    roles: RoleSet,
    institution: Option<&str>,
    ttl: Duration,
) -> anyhow::Result<String> {
    let now = jsonwebtoken::get_current_timestamp();
    let claims = LocalClaims {
        sub: sub.as_str().to_owned(),
        iss: settings.issuer.clone(),
        aud: settings.audience.clone(),
        iat: now,
        nbf: now,
        exp: now + ttl.as_secs(),
        roles: roles.iter().map(|r| r.as_str().to_owned()).collect(),
        institution: institution.map(str::to_owned),
    };
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(key.kid().to_owned());
    let encoding = EncodingKey::from_ed_der(&key.pkcs8_der()?);
    jsonwebtoken::encode(&header, &claims, &encoding).context("signing the token")
}

/// A key that verifies tokens, bound to its one algorithm.
#[derive(Clone)]
pub struct VerifyingKey {
    key: DecodingKey,
    alg: Algorithm,
}

impl VerifyingKey {
    /// The key and the one algorithm it verifies.
    pub(crate) fn parts(&self) -> (&DecodingKey, Algorithm) {
        (&self.key, self.alg)
    }
}

/// Verifies tokens. Shared by every request; the JWKS from a URL is swapped in place on refresh.
pub struct Verifier {
    /// Keys by `kid`. Behind a lock because the JWKS refresher replaces the provider's keys
    /// while requests read them; never held across an await.
    keys: RwLock<HashMap<String, VerifyingKey>>,
    /// The keys that do not come from the JWKS URL: the local key and a JWKS file's. A refresh
    /// keeps them, and they win over a fetched key of the same `kid`.
    fixed: HashMap<String, VerifyingKey>,
    issuer: String,
    audience: String,
    roles_claim: Vec<String>,
    institution_claim: Vec<String>,
    leeway: u64,
}

impl Verifier {
    pub fn new(
        settings: &AuthSettings,
        local: Option<&Ed25519Key>,
    ) -> anyhow::Result<Arc<Verifier>> {
        let mut keys = HashMap::new();
        if let (true, Some(k)) = (settings.local_tokens, local) {
            keys.insert(
                k.kid().to_owned(),
                VerifyingKey {
                    key: DecodingKey::from_ed_der(&k.public_bytes()),
                    alg: Algorithm::EdDSA,
                },
            );
        }
        if let Some(path) = &settings.jwks_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the JWKS {}", path.display()))?;
            keys.extend(
                parse_jwks(&text)
                    .with_context(|| format!("parsing the JWKS {}", path.display()))?,
            );
        }
        Ok(Arc::new(Verifier {
            fixed: keys.clone(),
            keys: RwLock::new(keys),
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            roles_claim: settings.roles_claim.split('.').map(str::to_owned).collect(),
            institution_claim: settings
                .institution_claim
                .split('.')
                .map(str::to_owned)
                .collect(),
            leeway: settings.leeway_secs,
        }))
    }

    /// Replaces the keys that came from the JWKS URL; the local key and a JWKS file's keys stay.
    pub fn replace_provider_keys(&self, provider: HashMap<String, VerifyingKey>) {
        let mut fresh = provider;
        fresh.extend(self.fixed.iter().map(|(kid, k)| (kid.clone(), k.clone())));
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = fresh;
    }

    pub fn key_count(&self) -> usize {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed)?;
        let key = {
            let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
            match &header.kid {
                Some(kid) => keys.get(kid).cloned(),
                None if keys.len() == 1 => keys.values().next().cloned(),
                None => None,
            }
        }
        .ok_or(AuthError::UnknownKey)?;
        if header.alg != key.alg {
            return Err(AuthError::WrongAlgorithm);
        }
        let mut validation = Validation::new(key.alg);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = self.leeway;
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &key.key, &validation)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind as K;
                match e.kind() {
                    K::ExpiredSignature => AuthError::Expired,
                    K::ImmatureSignature => AuthError::NotYetValid,
                    K::InvalidAudience => AuthError::WrongAudience,
                    K::InvalidIssuer => AuthError::WrongIssuer,
                    K::InvalidSignature => AuthError::BadSignature,
                    K::InvalidAlgorithm => AuthError::WrongAlgorithm,
                    _ => AuthError::Malformed,
                }
            })?;
        let claims = data.claims;
        let sub = claims
            .get("sub")
            .and_then(|v| v.as_str())
            .ok_or(AuthError::Malformed)?;
        let sub = Subject::parse(sub).map_err(|e| AuthError::BadSubject(e.to_string()))?;
        Ok(Caller {
            sub,
            roles: roles_from(&claims, &self.roles_claim),
            institution: institution_from(&claims, &self.institution_claim),
        })
    }
}

/// Roles from the configured claim: an array of names or one string of names separated by
/// spaces or commas. Names that are not our roles are ignored (providers carry many).
pub(crate) fn roles_from(claims: &serde_json::Value, path: &[String]) -> RoleSet {
    let mut v = claims;
    for p in path {
        match v.get(p) {
            Some(next) => v = next,
            None => return RoleSet::EMPTY,
        }
    }
    let names: Vec<&str> = match v {
        serde_json::Value::Array(a) => a.iter().filter_map(|x| x.as_str()).collect(),
        serde_json::Value::String(s) => s.split([' ', ',']).collect(),
        _ => Vec::new(),
    };
    names
        .into_iter()
        .filter_map(|n| n.trim().parse::<Role>().ok())
        .collect()
}

/// The institution from the configured claim: a string that is a valid identifier (what a
/// DMP's `providing_institution.id` holds); anything else counts as none.
pub(crate) fn institution_from(claims: &serde_json::Value, path: &[String]) -> Option<String> {
    let mut v = claims;
    for p in path {
        v = v.get(p)?;
    }
    let s = v.as_str()?;
    policy::ids::ProjectId::parse(s).ok().map(|_| s.to_owned())
}

/// Parses a JWKS into verifying keys. Keys for encryption and symmetric keys are skipped; a key
/// without a `kid` is refused, since tokens select keys by it.
pub fn parse_jwks(text: &str) -> anyhow::Result<HashMap<String, VerifyingKey>> {
    let set: JwkSet = serde_json::from_str(text).context("not a JWKS document")?;
    let mut out = HashMap::new();
    for jwk in &set.keys {
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        let kid = jwk.common.key_id.clone().context("a JWKS key has no kid")?;
        let alg = match (&jwk.algorithm, jwk.common.key_algorithm) {
            (AlgorithmParameters::OctetKey(_), _) => continue,
            (_, Some(a)) => match a {
                KeyAlgorithm::RS256 => Algorithm::RS256,
                KeyAlgorithm::RS384 => Algorithm::RS384,
                KeyAlgorithm::RS512 => Algorithm::RS512,
                KeyAlgorithm::PS256 => Algorithm::PS256,
                KeyAlgorithm::PS384 => Algorithm::PS384,
                KeyAlgorithm::PS512 => Algorithm::PS512,
                KeyAlgorithm::ES256 => Algorithm::ES256,
                KeyAlgorithm::ES384 => Algorithm::ES384,
                KeyAlgorithm::EdDSA => Algorithm::EdDSA,
                other => anyhow::bail!(
                    "JWKS key {kid} has an algorithm this gateway does not accept: {other:?}"
                ),
            },
            (AlgorithmParameters::RSA(_), None) => Algorithm::RS256,
            (AlgorithmParameters::EllipticCurve(p), None) => match p.curve {
                EllipticCurve::P256 => Algorithm::ES256,
                EllipticCurve::P384 => Algorithm::ES384,
                _ => anyhow::bail!("JWKS key {kid} uses an unsupported curve"),
            },
            (AlgorithmParameters::OctetKeyPair(_), None) => Algorithm::EdDSA,
        };
        let key =
            DecodingKey::from_jwk(jwk).with_context(|| format!("JWKS key {kid} is not usable"))?;
        out.insert(kid, VerifyingKey { key, alg });
    }
    Ok(out)
}

/// Fetches a JWKS URL once.
pub async fn fetch_jwks(
    client: &reqwest::Client,
    url: &str,
) -> anyhow::Result<HashMap<String, VerifyingKey>> {
    let text = client
        .get(url)
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .with_context(|| format!("fetching the JWKS from {url}"))?
        .text()
        .await?;
    parse_jwks(&text)
}

/// The JWKS of the local key, served at `/.well-known/jwks.json` so other services can verify
/// the gateway's tokens.
pub fn local_jwks(key: &Ed25519Key) -> serde_json::Value {
    use base64::Engine as _;
    serde_json::json!({
        "keys": [{
            "kty": "OKP",
            "crv": "Ed25519",
            "alg": "EdDSA",
            "use": "sig",
            "kid": key.kid(),
            "x": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.public_bytes()),
        }]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_claim_shapes() {
        let path = |s: &str| s.split('.').map(str::to_owned).collect::<Vec<_>>();
        let c = serde_json::json!({"roles": ["analyst", "unknown"], "realm_access": {"roles": "reviewer admin"}});
        assert_eq!(
            roles_from(&c, &path("roles")),
            RoleSet::EMPTY.with(Role::Analyst)
        );
        assert_eq!(
            roles_from(&c, &path("realm_access.roles")),
            RoleSet::EMPTY.with(Role::Reviewer).with(Role::Admin)
        );
        assert_eq!(roles_from(&c, &path("nope")), RoleSet::EMPTY);
    }
}
