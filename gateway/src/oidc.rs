//! The gateway as an OpenID Connect client: the authorization code flow with PKCE (`S256`),
//! for the web pages' sign-in (`[auth.oidc]`).
//!
//! The provider's configuration is read from `<issuer>/.well-known/openid-configuration` when
//! first needed (so the gateway starts while the provider is down) and kept for
//! [`DISCOVERY_TTL`]; its `issuer` must be the configured one and every endpoint `https://`.
//! Its keys come from its `jwks_uri`, each bound to its own algorithm as
//! [`crate::auth`] binds them; an ID token naming a key not known is checked once more against
//! a fresh key set (the provider rotated its keys). The code is exchanged at the token
//! endpoint with the client's secret (`client_secret_basic`, or `client_secret_post` where the
//! provider takes only that) and the PKCE verifier. The ID token must verify with the named
//! key, come from the issuer, be for the client id (and, naming several audiences, be
//! authorized for it), carry the sign-in's nonce, and be within its `exp`. Roles and
//! institution come from its claims through `auth.roles_claim` and `auth.institution_claim`.
//! A sign-in under way is kept by the browser, sealed by the gateway ([`pending`]).

pub mod pending;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine as _;
use jsonwebtoken::Validation;
use policy::ids::Subject;
use serde::Deserialize;
use sha2::Digest;

use crate::auth::{Caller, VerifyingKey};
use crate::config::{AuthSettings, Secret, oidc::OidcSettings};
use crate::keys::Ed25519Key;
pub use pending::{Pending, SIGN_IN_WITHIN, Unsealed};

/// How long the provider's configuration and keys are kept before they are read again.
pub const DISCOVERY_TTL: Duration = Duration::from_secs(600);
/// The longest any call to the provider may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a sign-in through the provider failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The provider could not be reached, or its configuration is not usable.
    #[error("the identity provider is not available: {0}")]
    Unavailable(String),
    /// The provider refused the code, or its ID token does not verify.
    #[error("{0}")]
    Refused(String),
}

/// What the provider's configuration says that the gateway uses.
struct Discovered {
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    /// Send the client's secret in the form rather than with HTTP basic authentication.
    secret_in_form: bool,
    keys: HashMap<String, VerifyingKey>,
    at: Instant,
}

#[derive(Deserialize)]
struct Configuration {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    #[serde(default)]
    token_endpoint_auth_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    code_challenge_methods_supported: Option<Vec<String>>,
}

/// A sign-in that verified: who it is, and until when (the ID token's `exp`).
#[derive(Debug)]
pub struct SignedIn {
    pub caller: Caller,
    pub exp: u64,
}

/// The configured provider, with what was read of it.
pub struct Provider {
    settings: OidcSettings,
    secret: Secret,
    http: reqwest::Client,
    roles_claim: Vec<String>,
    institution_claim: Vec<String>,
    leeway: u64,
    discovered: tokio::sync::Mutex<Option<Arc<Discovered>>>,
    sign_ins: pending::SealKey,
}

/// A random value of 32 bytes, base64url: a PKCE verifier, a state, a nonce.
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("the OS has randomness");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// The PKCE `S256` challenge of a verifier.
pub fn challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier))
}

fn https(what: &str, url: &str) -> Result<(), Error> {
    let ok = url
        .get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
        && url.len() > 8;
    if ok {
        Ok(())
    } else {
        Err(Error::Unavailable(format!(
            "its {what} is not an https:// URL: {url}"
        )))
    }
}

impl Provider {
    /// The provider of `auth.oidc`, or `None` when none is configured. Its sign-ins under way
    /// are sealed with a secret derived from `token_key` (the data dir's, lasting and shared).
    pub fn new(
        auth: &AuthSettings,
        token_key: &Ed25519Key,
    ) -> anyhow::Result<Option<Arc<Provider>>> {
        let settings = &auth.oidc;
        if !settings.enabled() {
            return Ok(None);
        }
        // No redirects: the provider's endpoints answer themselves (and none leads to http).
        let http = crate::client::http_client_with(
            settings.ca_file.as_deref(),
            reqwest::redirect::Policy::none(),
        )
        .context("the identity provider's HTTP client")?;
        Ok(Some(Arc::new(Provider {
            secret: settings.secret()?,
            settings: settings.clone(),
            http,
            roles_claim: auth.roles_claim.split('.').map(str::to_owned).collect(),
            institution_claim: auth
                .institution_claim
                .split('.')
                .map(str::to_owned)
                .collect(),
            leeway: auth.leeway_secs,
            discovered: tokio::sync::Mutex::new(None),
            sign_ins: pending::SealKey::new(
                token_key.derive("oidc sign-in cookie"),
                &settings.issuer,
            ),
        })))
    }

    /// The cookie value that keeps the sign-in `p` in the browser.
    pub fn seal(&self, p: &Pending) -> String {
        self.sign_ins.seal(p)
    }

    /// The sign-in a cookie value keeps, if this gateway made it for this provider and it has
    /// not expired by `now` (Unix seconds).
    pub fn unseal(&self, value: &str, now: u64) -> Result<Pending, Unsealed> {
        self.sign_ins.open(value, now)
    }

    /// The configured issuer.
    pub fn issuer(&self) -> &str {
        &self.settings.issuer
    }

    /// The name the sign-in page shows.
    pub fn name(&self) -> String {
        self.settings.name()
    }

    /// The provider's configuration and keys: those known, unless older than
    /// [`DISCOVERY_TTL`] or `fresh` is asked.
    async fn discovered(&self, fresh: bool) -> Result<Arc<Discovered>, Error> {
        let mut known = self.discovered.lock().await;
        if let Some(d) = known.as_ref() {
            if !fresh && d.at.elapsed() < DISCOVERY_TTL {
                return Ok(d.clone());
            }
        }
        let d = Arc::new(self.discover().await?);
        *known = Some(d.clone());
        Ok(d)
    }

    async fn get_text(&self, url: &str) -> Result<String, Error> {
        let resp = self
            .http
            .get(url)
            .timeout(CALL_TIMEOUT)
            .send()
            .await
            .map_err(|e| Error::Unavailable(format!("{url}: {}", causes(e))))?;
        if !resp.status().is_success() {
            return Err(Error::Unavailable(format!(
                "{url} answered {}",
                resp.status()
            )));
        }
        resp.text()
            .await
            .map_err(|e| Error::Unavailable(format!("{url}: {e}")))
    }

    async fn discover(&self) -> Result<Discovered, Error> {
        let issuer = &self.settings.issuer;
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let c: Configuration = serde_json::from_str(&self.get_text(&url).await?)
            .map_err(|e| Error::Unavailable(format!("its configuration at {url}: {e}")))?;
        if c.issuer != *issuer {
            return Err(Error::Unavailable(format!(
                "its configuration names the issuer {}, not {issuer}",
                c.issuer
            )));
        }
        https("authorization endpoint", &c.authorization_endpoint)?;
        https("token endpoint", &c.token_endpoint)?;
        https("JWKS URI", &c.jwks_uri)?;
        if let Some(methods) = &c.code_challenge_methods_supported {
            if !methods.iter().any(|m| m == "S256") {
                return Err(Error::Unavailable("it does not take PKCE with S256".into()));
            }
        }
        let secret_in_form = match &c.token_endpoint_auth_methods_supported {
            None => false,
            Some(m) if m.iter().any(|x| x == "client_secret_basic") => false,
            Some(m) if m.iter().any(|x| x == "client_secret_post") => true,
            Some(m) => {
                return Err(Error::Unavailable(format!(
                    "its token endpoint takes neither client_secret_basic nor client_secret_post ({})",
                    m.join(", ")
                )));
            }
        };
        let keys = crate::auth::parse_jwks(&self.get_text(&c.jwks_uri).await?)
            .map_err(|e| Error::Unavailable(format!("its keys at {}: {e:#}", c.jwks_uri)))?;
        Ok(Discovered {
            authorization_endpoint: c.authorization_endpoint,
            token_endpoint: c.token_endpoint,
            jwks_uri: c.jwks_uri,
            secret_in_form,
            keys,
            at: Instant::now(),
        })
    }

    /// Where to send the browser: the provider's authorization endpoint with the code flow's
    /// parameters.
    pub async fn authorization_url(
        &self,
        state: &str,
        nonce: &str,
        verifier: &str,
    ) -> Result<String, Error> {
        let d = self.discovered(false).await?;
        let scope = self.settings.scopes.join(" ");
        let redirect = self.settings.redirect_uri();
        let challenge = challenge(verifier);
        let query = serde_urlencoded::to_string([
            ("response_type", "code"),
            ("client_id", self.settings.client_id.as_str()),
            ("redirect_uri", redirect.as_str()),
            ("scope", scope.as_str()),
            ("state", state),
            ("nonce", nonce),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ])
        .map_err(|e| Error::Unavailable(e.to_string()))?;
        let sep = if d.authorization_endpoint.contains('?') {
            '&'
        } else {
            '?'
        };
        Ok(format!("{}{sep}{query}", d.authorization_endpoint))
    }

    /// Exchanges `code` (with the PKCE `verifier`) for an ID token and verifies it, expecting
    /// `nonce`.
    pub async fn exchange(
        &self,
        code: &str,
        verifier: &str,
        nonce: &str,
    ) -> Result<SignedIn, Error> {
        let d = self.discovered(false).await?;
        let redirect = self.settings.redirect_uri();
        let id = self.settings.client_id.as_str();
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect.as_str()),
            ("code_verifier", verifier),
        ];
        let mut req = self.http.post(&d.token_endpoint).timeout(CALL_TIMEOUT);
        if d.secret_in_form {
            form.push(("client_id", id));
            form.push(("client_secret", self.secret.expose()));
        } else {
            // Each part form-encoded first (RFC 6749, 2.3.1).
            let enc = |s: &str| {
                let pair = serde_urlencoded::to_string([("", s)]).unwrap_or_default();
                pair.get(1..).unwrap_or("").to_owned()
            };
            req = req.basic_auth(enc(id), Some(enc(self.secret.expose())));
        }
        let resp = req
            .form(&form)
            .send()
            .await
            .map_err(|e| Error::Unavailable(format!("its token endpoint: {}", causes(e))))?;
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.map_err(|e| {
            Error::Refused(format!(
                "its token endpoint answered {status}, not JSON: {e}"
            ))
        })?;
        if !status.is_success() {
            return Err(Error::Refused(format!(
                "the identity provider refused the code: {} {}",
                body["error"].as_str().unwrap_or("(no error code)"),
                body["error_description"].as_str().unwrap_or("")
            )));
        }
        let token = body["id_token"]
            .as_str()
            .ok_or_else(|| Error::Refused("the identity provider sent no ID token".into()))?;
        self.verify(&d, token, nonce).await
    }

    /// Verifies an ID token against the provider's keys.
    async fn verify(&self, d: &Discovered, token: &str, nonce: &str) -> Result<SignedIn, Error> {
        let bad = |why: &str| Error::Refused(format!("the ID token {why}"));
        let header = jsonwebtoken::decode_header(token).map_err(|_| bad("is malformed"))?;
        let pick = |keys: &HashMap<String, VerifyingKey>| match &header.kid {
            Some(kid) => keys.get(kid).cloned(),
            None if keys.len() == 1 => keys.values().next().cloned(),
            None => None,
        };
        let key = match pick(&d.keys) {
            Some(k) => k,
            // The provider may have rotated its keys since they were read.
            None => pick(&self.discovered(true).await?.keys)
                .ok_or_else(|| bad(&format!("names a key {} does not publish", d.jwks_uri)))?,
        };
        let (decoding, alg) = key.parts();
        if header.alg != alg {
            return Err(bad("is not signed with its key's algorithm"));
        }
        let mut v = Validation::new(alg);
        v.set_issuer(&[&self.settings.issuer]);
        v.set_audience(&[&self.settings.client_id]);
        v.set_required_spec_claims(&["exp", "iat", "sub", "iss", "aud"]);
        v.validate_nbf = true;
        v.leeway = self.leeway;
        let claims = jsonwebtoken::decode::<serde_json::Value>(token, decoding, &v)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind as K;
                match e.kind() {
                    K::ExpiredSignature => bad("has expired"),
                    K::ImmatureSignature => bad("is not valid yet"),
                    K::InvalidAudience => bad("was issued for another client"),
                    K::InvalidIssuer => bad("comes from another issuer"),
                    K::InvalidSignature => bad("does not verify with the provider's key"),
                    _ => bad(&format!("does not verify: {e}")),
                }
            })?
            .claims;
        let got = claims["nonce"].as_str().unwrap_or("");
        if got.is_empty() || got != nonce {
            return Err(bad("does not carry this sign-in's nonce"));
        }
        if claims["aud"].as_array().is_some_and(|a| a.len() > 1)
            && claims["azp"].as_str() != Some(self.settings.client_id.as_str())
        {
            return Err(bad(
                "names several audiences and is not authorized for this client",
            ));
        }
        let sub = claims["sub"]
            .as_str()
            .ok_or_else(|| bad("has no subject"))?;
        let sub = Subject::parse(sub)
            .map_err(|e| bad(&format!("has a subject this gateway does not take: {e}")))?;
        let exp = claims["exp"].as_u64().ok_or_else(|| bad("has no expiry"))?;
        Ok(SignedIn {
            caller: Caller {
                sub,
                roles: crate::auth::roles_from(&claims, &self.roles_claim),
                institution: crate::auth::institution_from(&claims, &self.institution_claim),
            },
            exp,
        })
    }
}

/// A failed call with its causes (a refused connection, a certificate not trusted).
fn causes(e: reqwest::Error) -> String {
    format!("{:#}", anyhow::Error::new(e))
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use serde_json::{Value, json};

    use super::*;

    const ISSUER: &str = "https://idp.example";

    fn provider() -> Provider {
        let auth = AuthSettings {
            roles_claim: "realm_access.roles".into(),
            oidc: OidcSettings {
                issuer: ISSUER.into(),
                client_id: "vre".into(),
                client_secret: Secret::new("s"),
                public_url: "https://vre.example".into(),
                ..OidcSettings::default()
            },
            ..AuthSettings::default()
        };
        let key = Ed25519Key::generate().unwrap();
        Arc::into_inner(Provider::new(&auth, &key).unwrap().unwrap()).unwrap()
    }

    fn discovered(key: &Ed25519Key) -> Discovered {
        let jwks = crate::auth::local_jwks(key).to_string();
        Discovered {
            authorization_endpoint: format!("{ISSUER}/auth"),
            token_endpoint: format!("{ISSUER}/token"),
            jwks_uri: format!("{ISSUER}/jwks"),
            secret_in_form: false,
            keys: crate::auth::parse_jwks(&jwks).unwrap(),
            at: Instant::now(),
        }
    }

    fn claims() -> Value {
        let now = jsonwebtoken::get_current_timestamp();
        json!({
            "iss": ISSUER, "aud": "vre", "sub": "rev", "iat": now, "exp": now + 300,
            "nonce": "n-1", "realm_access": { "roles": ["reviewer", "other"] },
        })
    }

    fn signed(key: &Ed25519Key, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(key.kid().to_owned());
        let der = key.pkcs8_der().unwrap();
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_der(&der)).unwrap()
    }

    async fn refusal(p: &Provider, d: &Discovered, token: &str) -> String {
        match p.verify(d, token, "n-1").await {
            Err(Error::Refused(m)) => m,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[tokio::test]
    async fn an_id_token_verifies_only_from_its_key_issuer_client_and_sign_in() {
        let p = provider();
        let key = Ed25519Key::generate().unwrap();
        let d = discovered(&key);
        let ok = p.verify(&d, &signed(&key, &claims()), "n-1").await.unwrap();
        assert_eq!(ok.caller.sub.as_str(), "rev");
        assert_eq!(
            ok.caller.roles,
            policy::roles::RoleSet::EMPTY.with(policy::roles::Role::Reviewer)
        );
        let change = |k: &str, v: Value| {
            let mut c = claims();
            c[k] = v;
            c
        };
        let now = jsonwebtoken::get_current_timestamp();
        for (c, why) in [
            (
                change("iss", json!("https://other.example")),
                "another issuer",
            ),
            (change("aud", json!("someone-else")), "another client"),
            (change("exp", json!(now - 3600)), "expired"),
            (change("nonce", json!("n-2")), "nonce"),
            (change("aud", json!(["vre", "other"])), "several audiences"),
        ] {
            let m = refusal(&p, &d, &signed(&key, &c)).await;
            assert!(m.contains(why), "{why}: {m}");
        }
        // Several audiences, this client the authorized party: accepted.
        let mut c = change("aud", json!(["vre", "other"]));
        c["azp"] = json!("vre");
        assert!(p.verify(&d, &signed(&key, &c), "n-1").await.is_ok());
        let mut c = claims();
        c.as_object_mut().unwrap().remove("nonce");
        assert!(refusal(&p, &d, &signed(&key, &c)).await.contains("nonce"));
        // Another key under the same kid: the signature does not verify.
        let other = Ed25519Key::generate().unwrap();
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(key.kid().to_owned());
        let der = other.pkcs8_der().unwrap();
        let forged =
            jsonwebtoken::encode(&header, &claims(), &EncodingKey::from_ed_der(&der)).unwrap();
        assert!(refusal(&p, &d, &forged).await.contains("does not verify"));
        // Its key's algorithm, and no other: an HMAC "signed" with the public key is refused.
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(key.kid().to_owned());
        let hs = jsonwebtoken::encode(
            &header,
            &claims(),
            &EncodingKey::from_secret(&key.public_bytes()),
        )
        .unwrap();
        assert!(refusal(&p, &d, &hs).await.contains("algorithm"));
        assert!(refusal(&p, &d, "not.a.token").await.contains("malformed"));
    }

    #[test]
    fn the_pkce_challenge_is_s256_of_the_verifier() {
        // RFC 7636, appendix B.
        assert_eq!(
            challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let v = random_token();
        assert_eq!(v.len(), 43);
        assert_ne!(v, random_token());
    }
}
