//! Attacks on bearer tokens: each forged, stale, misdirected or malformed token is refused with
//! 401 `unauthenticated` on a protected route, while proper tokens (the gateway's own, and an
//! identity provider's from a JWKS file or URL) are accepted with the roles they carry.
//!
//! Tokens are built by hand (base64url of JSON header and claims, signed with Ed25519) so that
//! tests can make what a well-behaved library would refuse to. A forged token starts from the
//! claims of [`good_claims`], which the control tests show to pass, and changes one thing. The
//! token checks touch no storage, so these run on SQLite only.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64};
use gateway::keys::Ed25519Key;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Engine, TempDir, TestApp};

const WHOAMI: &str = "/api/v1/whoami";

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn b64_json(v: &Value) -> String {
    B64.encode(serde_json::to_vec(v).unwrap())
}

/// Claims the gateway accepts: the tests change one thing at a time.
fn good_claims(app: &TestApp) -> Value {
    json!({
        "sub": "ana",
        "iss": app.settings.auth.issuer,
        "aud": app.settings.auth.audience,
        "iat": now(),
        "nbf": now(),
        "exp": now() + 600,
        "roles": ["analyst"],
    })
}

fn gateway_key(app: &TestApp) -> Ed25519Key {
    Ed25519Key::load_or_create(&app.settings.data_dir.join("keys/token.pem")).unwrap()
}

fn eddsa_header(kid: &str) -> Value {
    json!({"alg": "EdDSA", "typ": "JWT", "kid": kid})
}

/// A JWT with exactly this header and these claims, signed with `key`.
fn sign(key: &Ed25519Key, header: &Value, claims: &Value) -> String {
    let signing_input = format!("{}.{}", b64_json(header), b64_json(claims));
    let signature = key.sign(signing_input.as_bytes());
    format!("{signing_input}.{}", B64.encode(signature))
}

/// A token signed with the gateway's own key, naming its kid.
fn gateway_token(app: &TestApp, claims: &Value) -> String {
    let key = gateway_key(app);
    sign(&key, &eddsa_header(key.kid()), claims)
}

/// A token the gateway's own key signs, of the claims of [`good_claims`] with `changes`.
fn token_with(app: &TestApp, changes: Value) -> String {
    gateway_token(app, &claims_with(app, changes))
}

/// Calls the protected route with this `Authorization` header (or none).
async fn whoami(
    app: &TestApp,
    authorization: Option<&[u8]>,
) -> (StatusCode, Value, Option<String>) {
    let mut req = app.http.get(format!("{}{WHOAMI}", app.url));
    if let Some(a) = authorization {
        req = req.header(
            reqwest::header::AUTHORIZATION,
            reqwest::header::HeaderValue::from_bytes(a).unwrap(),
        );
    }
    let resp = req.send().await.expect("the gateway answers");
    let status = resp.status();
    let challenge = resp
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned());
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body, challenge)
}

/// The token is accepted; returns what `whoami` says of its bearer.
async fn accepted(app: &TestApp, token: &str) -> Value {
    let (st, body, _) = whoami(app, Some(format!("Bearer {token}").as_bytes())).await;
    assert_eq!(st, StatusCode::OK, "a proper token was refused: {body}");
    body
}

/// The `Authorization` header is refused as an authentication failure.
async fn refused_header(app: &TestApp, authorization: Option<&[u8]>, what: &str) {
    let (st, body, challenge) = whoami(app, authorization).await;
    assert_eq!(
        st,
        StatusCode::UNAUTHORIZED,
        "{what} was not refused: {body}"
    );
    assert_eq!(body["code"], "unauthenticated", "{what}: {body}");
    assert_eq!(challenge.as_deref(), Some("Bearer"), "{what}");
}

async fn refused(app: &TestApp, token: &str, what: &str) {
    refused_header(app, Some(format!("Bearer {token}").as_bytes()), what).await;
}

/// The claims of [`good_claims`] with `changes` applied; a `null` removes the claim.
fn claims_with(app: &TestApp, changes: Value) -> Value {
    let mut c = good_claims(app);
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

#[tokio::test]
async fn proper_tokens_pass() {
    let app = TestApp::spawn(Engine::Sqlite).await;
    let body = accepted(&app, &app.token("ana", "analyst,reviewer")).await;
    assert_eq!(
        body,
        json!({"sub": "ana", "roles": ["analyst", "reviewer"]})
    );
    // The hand-made tokens the attacks start from pass too, so each attack fails for its one
    // change and not for a fault of the forger.
    let body = accepted(&app, &gateway_token(&app, &good_claims(&app))).await;
    assert_eq!(body, json!({"sub": "ana", "roles": ["analyst"]}));
    // With a single key, a token may leave out its kid; `bearer` is accepted in lower case.
    let key = gateway_key(&app);
    let token = sign(&key, &json!({"alg": "EdDSA"}), &good_claims(&app));
    let (st, body, _) = whoami(&app, Some(format!("bearer {token}").as_bytes())).await;
    assert_eq!(
        (st, &body["sub"]),
        (StatusCode::OK, &json!("ana")),
        "{body}"
    );
    app.stop().await;
}

#[tokio::test]
async fn unsigned_alg_none_tokens_are_refused() {
    let app = TestApp::spawn(Engine::Sqlite).await;
    let key = gateway_key(&app);
    let claims = b64_json(&good_claims(&app));
    for alg in ["none", "None", "NONE", "nOnE"] {
        for header in [json!({"alg": alg}), json!({"alg": alg, "kid": key.kid()})] {
            let unsigned = format!("{}.{claims}.", b64_json(&header));
            refused(&app, &unsigned, &format!("unsigned {header}")).await;
        }
    }
    // alg none in front of a signature that is valid for the EdDSA header.
    let good = gateway_token(&app, &good_claims(&app));
    let signature = good.rsplit('.').next().unwrap();
    let none_header = b64_json(&json!({"alg": "none", "kid": key.kid()}));
    refused(
        &app,
        &format!("{none_header}.{claims}.{signature}"),
        "alg none with a signature",
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn hs256_signed_with_the_public_key_is_refused() {
    let app = TestApp::spawn(Engine::Sqlite).await;
    let key = gateway_key(&app);
    let pem = std::fs::read(app.settings.data_dir.join("keys/token.pub.pem")).unwrap();
    assert!(pem.starts_with(b"-----BEGIN PUBLIC KEY-----"));
    let (_, jwks) = app.get("/.well-known/jwks.json", None).await;
    let x = jwks["keys"][0]["x"].as_str().unwrap().to_owned();
    assert_eq!(B64.decode(&x).unwrap(), key.public_bytes());
    let secrets: [(&str, Vec<u8>); 4] = [
        ("the raw public key", key.public_bytes().to_vec()),
        ("the public key's PEM", pem.clone()),
        ("the public key's PEM, trimmed", pem.trim_ascii().to_vec()),
        ("the JWKS x value", x.into_bytes()),
    ];
    for (what, secret) in secrets {
        for kid in [Some(key.kid().to_owned()), None] {
            for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
                let mut header = Header::new(alg);
                header.kid = kid.clone();
                let token = jsonwebtoken::encode(
                    &header,
                    &good_claims(&app),
                    &EncodingKey::from_secret(&secret),
                )
                .unwrap();
                refused(
                    &app,
                    &token,
                    &format!("{alg:?} keyed with {what}, kid {kid:?}"),
                )
                .await;
            }
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn expiry_and_not_before_are_enforced_beyond_the_leeway() {
    let app = TestApp::spawn(Engine::Sqlite).await;
    assert_eq!(app.settings.auth.leeway_secs, 30);
    // Within the leeway: clocks may disagree a little.
    for changes in [
        json!({"exp": now() - 10}),
        json!({"nbf": now() + 10}),
        json!({"nbf": null}),
    ] {
        accepted(&app, &token_with(&app, changes)).await;
    }
    for (changes, what) in [
        (json!({"exp": now() - 60}), "expired a minute ago"),
        (
            json!({"iat": now() - 7200, "nbf": now() - 7200, "exp": now() - 3600}),
            "expired an hour ago",
        ),
        (json!({"nbf": now() + 60}), "valid from in a minute"),
        (
            json!({"nbf": now() + 86400, "exp": now() + 90000}),
            "valid from tomorrow",
        ),
        (json!({"exp": null}), "without exp"),
        (json!({"exp": "tomorrow"}), "with a text exp"),
    ] {
        refused(&app, &token_with(&app, changes), what).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn wrong_issuer_or_audience_is_refused() {
    let app = TestApp::spawn(Engine::Sqlite).await;
    let aud = app.settings.auth.audience.clone();
    accepted(&app, &token_with(&app, json!({"aud": ["other", aud]}))).await;
    for (changes, what) in [
        (json!({"iss": "https://evil.example"}), "another issuer"),
        (json!({"iss": "VRE-GATEWAY"}), "the issuer in capitals"),
        (json!({"iss": null}), "no issuer"),
        (json!({"aud": "another-service"}), "another audience"),
        (json!({"aud": ["a", "b"]}), "audiences without ours"),
        (json!({"aud": null}), "no audience"),
    ] {
        refused(&app, &token_with(&app, changes), what).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn unknown_kids_are_refused() {
    let app = TestApp::spawn(Engine::Sqlite).await;
    let key = gateway_key(&app);
    // Signed with the gateway's own key: only the kid is wrong.
    for kid in ["nope", "", &format!("{}x", key.kid()), &key.kid()[..8]] {
        let token = sign(&key, &eddsa_header(kid), &good_claims(&app));
        refused(&app, &token, &format!("kid {kid:?}")).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn bad_signatures_are_refused() {
    let app = TestApp::spawn(Engine::Sqlite).await;
    let key = gateway_key(&app);
    let good = gateway_token(&app, &good_claims(&app));
    let (signing_input, signature) = good.rsplit_once('.').unwrap();
    let signature = B64.decode(signature).unwrap();
    for i in [0, 31, 63] {
        let mut flipped = signature.clone();
        flipped[i] ^= 0x01;
        let token = format!("{signing_input}.{}", B64.encode(&flipped));
        refused(&app, &token, &format!("signature byte {i} flipped")).await;
    }
    let token = format!("{signing_input}.{}", B64.encode(&signature[..63]));
    refused(&app, &token, "a truncated signature").await;
    refused(&app, &format!("{signing_input}."), "an empty signature").await;

    // The claims changed after signing: a self-promotion to admin.
    let claims = claims_with(&app, json!({"roles": ["admin"]}));
    let (header, _) = signing_input.split_once('.').unwrap();
    let token = format!("{header}.{}.{}", b64_json(&claims), B64.encode(&signature));
    refused(&app, &token, "claims changed after signing").await;

    // Another Ed25519 key under the gateway's kid, with and without its public key embedded in
    // the header (`jwk`): the gateway verifies with its own key only.
    let other = Ed25519Key::generate().unwrap();
    let token = sign(&other, &eddsa_header(key.kid()), &good_claims(&app));
    refused(&app, &token, "another key under the gateway's kid").await;
    let mut header = eddsa_header(key.kid());
    header["jwk"] = json!({"kty": "OKP", "crv": "Ed25519", "kid": key.kid(), "x": B64.encode(other.public_bytes())});
    let token = sign(&other, &header, &good_claims(&app));
    refused(&app, &token, "another key embedded in the header").await;
    app.stop().await;
}

#[tokio::test]
async fn malformed_tokens_are_refused() {
    let app = TestApp::spawn(Engine::Sqlite).await;
    let good = gateway_token(&app, &good_claims(&app));
    let parts: Vec<&str> = good.split('.').collect();
    let signed_header = |header: &[u8]| {
        let key = gateway_key(&app);
        let input = format!("{}.{}", B64.encode(header), parts[1]);
        format!("{input}.{}", B64.encode(key.sign(input.as_bytes())))
    };
    let signed_claims = |claims: &[u8]| {
        let key = gateway_key(&app);
        let input = format!("{}.{}", parts[0], B64.encode(claims));
        format!("{input}.{}", B64.encode(key.sign(input.as_bytes())))
    };
    let cases: Vec<(String, &str)> = vec![
        ("garbage".into(), "garbage"),
        (format!("{}.{}", parts[0], parts[1]), "two segments"),
        (format!("{good}.{}", parts[2]), "four segments"),
        ("!!!.@@@.###".into(), "segments that are not base64"),
        (
            format!(
                "{}.{}.{}",
                STANDARD.encode("{\"alg\":\"EdDSA\"}"),
                parts[1],
                parts[2]
            ),
            "a header in padded standard base64",
        ),
        (
            format!("{}%%.{}.{}", parts[0], parts[1], parts[2]),
            "stray characters in the header",
        ),
        (signed_header(b"not json"), "a header that is not JSON"),
        (
            signed_header(b"[\"EdDSA\"]"),
            "a header that is a JSON array",
        ),
        (signed_header(b"{\"kid\":\"x\"}"), "a header without alg"),
        (signed_claims(b"not json"), "claims that are not JSON"),
        (signed_claims(b"[1,2,3]"), "claims that are a JSON array"),
        (".".into(), "a lone dot"),
        ("..".into(), "only dots"),
    ];
    for (token, what) in &cases {
        refused(&app, token, what).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn subjects_are_checked() {
    let app = TestApp::spawn(Engine::Sqlite).await;
    for (changes, what) in [
        (json!({"sub": null}), "no sub"),
        (json!({"sub": "ana smith"}), "a sub with a space"),
        (json!({"sub": "ana\t"}), "a sub with a tab"),
        (json!({"sub": "ana\nadmin"}), "a sub with a newline"),
        (json!({"sub": ""}), "an empty sub"),
        (json!({"sub": 42}), "a numeric sub"),
        (json!({"sub": ["ana"]}), "a list as sub"),
        (json!({"sub": "a".repeat(257)}), "a sub of 257 characters"),
    ] {
        refused(&app, &token_with(&app, changes), what).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn only_bearer_tokens_are_accepted() {
    let app = TestApp::spawn(Engine::Sqlite).await;
    let good = gateway_token(&app, &good_claims(&app));
    let basic = format!("Basic {}", STANDARD.encode("ana:secret"));
    let cases: Vec<(Option<Vec<u8>>, &str)> = vec![
        (None, "no Authorization header"),
        (Some(basic.into_bytes()), "Basic credentials"),
        (Some(format!("Token {good}").into_bytes()), "another scheme"),
        (Some(good.clone().into_bytes()), "a token without a scheme"),
        (Some(b"Bearer".to_vec()), "the scheme alone"),
        (Some(b"Bearer ".to_vec()), "an empty token"),
        (Some(b"Bearer \xff\xfe".to_vec()), "bytes that are not text"),
    ];
    for (header, what) in &cases {
        refused_header(&app, header.as_deref(), what).await;
    }
    app.stop().await;
}

/// An identity provider's signing key and how it publishes it.
struct Idp {
    key: Ed25519Key,
    kid: &'static str,
}

const IDP_ISSUER: &str = "https://idp.example/realms/vre";
const IDP_AUDIENCE: &str = "vre-gateway";

impl Idp {
    fn new(kid: &'static str) -> Idp {
        Idp {
            key: Ed25519Key::generate().unwrap(),
            kid,
        }
    }

    fn jwk(&self) -> Value {
        json!({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": self.kid,
               "x": B64.encode(self.key.public_bytes())})
    }

    /// A token as a Keycloak-like provider makes it: roles nested under `realm_access`.
    fn token(&self, kid: &str, sub: &str, roles: &[&str]) -> String {
        let claims = json!({
            "sub": sub,
            "iss": IDP_ISSUER,
            "aud": [IDP_AUDIENCE, "account"],
            "azp": "vre-cli",
            "iat": now(),
            "exp": now() + 300,
            "realm_access": {"roles": roles},
            // Only the configured claim counts.
            "roles": ["admin"],
        });
        sign(&self.key, &eddsa_header(kid), &claims)
    }
}

fn idp_settings(s: &mut gateway::config::Settings) {
    s.auth.issuer = IDP_ISSUER.into();
    s.auth.audience = IDP_AUDIENCE.into();
    s.auth.roles_claim = "realm_access.roles".into();
}

#[tokio::test]
async fn identity_provider_keys_from_a_jwks_file() {
    let idp = Idp::new("idp-1");
    // Keys the gateway must not use for verifying: one for encryption, one symmetric.
    let enc = Idp::new("enc-1");
    let mut enc_jwk = enc.jwk();
    enc_jwk["use"] = json!("enc");
    let hmac_secret = b"a shared secret of thirty-two b.";
    let jwks = json!({"keys": [
        idp.jwk(),
        enc_jwk,
        {"kty": "oct", "alg": "HS256", "kid": "hmac-1", "k": B64.encode(hmac_secret)},
    ]});
    let dir = TempDir::new("jwks");
    let file = dir.path().join("jwks.json");
    std::fs::write(&file, jwks.to_string()).unwrap();
    let app = TestApp::spawn_with(Engine::Sqlite, |s| {
        idp_settings(s);
        s.auth.jwks_file = Some(file.clone());
    })
    .await;

    let token = idp.token("idp-1", "alice", &["analyst", "reviewer", "offline_access"]);
    let body = accepted(&app, &token).await;
    assert_eq!(
        body,
        json!({"sub": "alice", "roles": ["analyst", "reviewer"]})
    );
    let body = accepted(&app, &idp.token("idp-1", "carol", &["uma_authorization"])).await;
    assert_eq!(body, json!({"sub": "carol", "roles": []}));

    refused(
        &app,
        &idp.token("idp-2", "alice", &["analyst"]),
        "an unknown kid",
    )
    .await;
    refused(
        &app,
        &Idp::new("idp-1").token("idp-1", "alice", &["admin"]),
        "another key under the provider's kid",
    )
    .await;
    refused(
        &app,
        &enc.token("enc-1", "alice", &["admin"]),
        "a token signed with an encryption key",
    )
    .await;
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("hmac-1".into());
    let claims = json!({"sub": "alice", "iss": IDP_ISSUER, "aud": IDP_AUDIENCE, "exp": now() + 300,
                        "realm_access": {"roles": ["admin"]}});
    let token =
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(hmac_secret)).unwrap();
    refused(&app, &token, "an HS256 token under a symmetric JWKS key").await;
    app.stop().await;
}

/// Serves `jwks` over plain HTTP on a loopback port; counts the fetches.
async fn serve_jwks(jwks: Value) -> (String, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let router = axum::Router::new().route(
        "/realms/vre/certs",
        axum::routing::get(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            let jwks = jwks.clone();
            async move { axum::Json(jwks) }
        }),
    );
    let task = tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    (format!("http://{addr}/realms/vre/certs"), hits, task)
}

#[tokio::test]
async fn identity_provider_keys_from_a_jwks_url() {
    let idp = Idp::new("idp-url-1");
    let (url, hits, server) = serve_jwks(json!({"keys": [idp.jwk()]})).await;
    let app = TestApp::spawn_with(Engine::Sqlite, |s| {
        idp_settings(s);
        s.auth.jwks_url = Some(url.clone());
    })
    .await;
    assert!(hits.load(Ordering::SeqCst) >= 1, "the JWKS was not fetched");
    let body = accepted(&app, &idp.token("idp-url-1", "dave", &["steward"])).await;
    assert_eq!(body, json!({"sub": "dave", "roles": ["steward"]}));
    refused(
        &app,
        &idp.token("idp-url-2", "dave", &["steward"]),
        "an unknown kid",
    )
    .await;
    // The gateway's own key stays usable beside the provider's.
    accepted(&app, &app.token("ops", "operator")).await;
    app.stop().await;
    server.abort();
}

#[tokio::test]
async fn a_jwks_url_does_not_displace_the_keys_of_a_jwks_file() {
    let from_file = Idp::new("file-1");
    let from_url = Idp::new("url-1");
    let dir = TempDir::new("jwks");
    let file = dir.path().join("jwks.json");
    std::fs::write(&file, json!({"keys": [from_file.jwk()]}).to_string()).unwrap();
    // The URL also publishes another key under the file key's kid: the file's key stays.
    let impostor = Idp::new("file-1");
    let (url, hits, server) = serve_jwks(json!({"keys": [from_url.jwk(), impostor.jwk()]})).await;
    let app = TestApp::spawn_with(Engine::Sqlite, |s| {
        idp_settings(s);
        s.auth.jwks_file = Some(file.clone());
        s.auth.jwks_url = Some(url.clone());
    })
    .await;
    assert!(hits.load(Ordering::SeqCst) >= 1, "the JWKS was not fetched");
    accepted(&app, &from_url.token("url-1", "erin", &["analyst"])).await;
    accepted(&app, &from_file.token("file-1", "erin", &["analyst"])).await;
    refused(
        &app,
        &impostor.token("file-1", "erin", &["admin"]),
        "a fetched key under the file key's kid",
    )
    .await;
    app.stop().await;
    server.abort();
}
