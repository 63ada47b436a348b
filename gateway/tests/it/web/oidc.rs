//! Signing in through a real OpenID provider: panva's `oidc-provider` (npm, on Node.js) from
//! `deploy/dev/oidc-provider/`, started by each test over HTTPS on a loopback port with a
//! certificate of a CA of the test's own, which the gateway is told to trust
//! (`auth.oidc.ca_file`). The provider serves `localhost` and the gateway `127.0.0.1`: two
//! sites, as a browser sees them.
//!
//! Over HTTP, as a browser sends its requests: the whole code flow with PKCE, roles mapped from
//! the ID token's claims; a forged state, a return without the sign-in cookie, a replayed
//! return, the provider's refusal, a changed nonce, an expired sign-in, a cookie changed by one
//! byte or another sign-in's, and an ID token signed with a key the provider does not publish,
//! each refused with nothing opened; a provider down, or with a certificate the gateway was not
//! told to trust, starts nothing. Starts write nothing: 20,000 anonymous ones leave no row and
//! a real sign-in goes through after them; only sign-ins the provider accepted are recorded.
//! A sign-in started before a restart of the gateway finishes after it. In headless Chromium:
//! the sign-in page's provider link, the provider's login form, back on the queue signed in.
//!
//! Skipped where Node.js or the provider's npm install is missing, unless
//! `VRE_TEST_REQUIRE_OIDC=1` (`deploy/dev/test.sh` sets it, after `setup_oidc_provider`).

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::Locator;
use gateway::config::Secret;
use gateway::config::oidc::OidcSettings;
use gateway::oidc::Pending;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use reqwest::{StatusCode, Url};
use serde_json::json;

use super::browser::{browser, css_text, driver, shoot};
use crate::support::{Engine, TempDir, TestApp, actions, engines, required};

const CLIENT_ID: &str = "vre-gateway";
const CLIENT_SECRET: &str = "a-client-secret-of-the-tests";

fn provider_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/dev/oidc-provider")
}

/// Whether Node.js and the provider's packages are here; a note (or, when required, a
/// failure) when not.
fn provider_available() -> bool {
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let installed = provider_dir().join("node_modules/oidc-provider").is_dir();
    if node && installed {
        return true;
    }
    assert!(
        !required("OIDC"),
        "VRE_TEST_REQUIRE_OIDC=1 but Node.js or the provider's npm install is missing (deploy/dev/lib.sh setup_oidc_provider)"
    );
    eprintln!("no Node.js or oidc-provider here: skipping an identity provider test");
    false
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A CA (`ca.pem`) and a certificate for `localhost` it signed (`cert.pem`, `key.pem`).
fn provider_certs(dir: &Path) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name
        .push(DnType::CommonName, "test identity provider CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    let issuer = Issuer::new(ca, &ca_key);
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
}

/// The provider process, stopped when dropped.
pub(crate) struct Idp {
    child: Child,
    pub issuer: String,
    port: u16,
    dir: TempDir,
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Idp {
    /// Certificates and a port for a provider not started yet.
    fn prepare() -> Idp {
        let dir = TempDir::new("idp");
        provider_certs(dir.path());
        let port = free_port();
        // A placeholder until `start`: a process that is already gone.
        let child = Command::new("true").spawn().unwrap();
        Idp {
            child,
            issuer: format!("https://localhost:{port}"),
            port,
            dir,
        }
    }

    /// The gateway's settings for this provider, the gateway listening on `gateway_port`.
    fn settings(&self, gateway_port: u16) -> OidcSettings {
        OidcSettings {
            issuer: self.issuer.clone(),
            client_id: CLIENT_ID.into(),
            client_secret: Secret::new(CLIENT_SECRET),
            client_secret_file: None,
            public_url: format!("https://127.0.0.1:{gateway_port}"),
            scopes: vec!["openid".into(), "profile".into(), "roles".into()],
            display_name: "Test IdP".into(),
            ca_file: Some(self.dir.path().join("ca.pem")),
        }
    }

    /// Starts the provider, with the gateway at `gateway` as its client; with `other_keys`
    /// it publishes keys other than the one it signs with.
    fn start(&mut self, gateway: &str, other_keys: bool) {
        let config = json!({
            "issuer": self.issuer,
            "port": self.port,
            "cert_file": self.dir.path().join("cert.pem"),
            "key_file": self.dir.path().join("key.pem"),
            "client": {
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "redirect_uris": [format!("{gateway}/ui/sign-in/callback")],
            },
            "accounts": {
                "rev": { "password": "rev-password", "claims": { "roles": ["reviewer", "unknown-role"], "name": "Rei" } },
                "nobody": { "password": "nobody-password", "claims": { "name": "No Roles" } },
            },
            "publish_other_keys": other_keys,
        });
        let file = self.dir.path().join("provider.json");
        std::fs::write(&file, config.to_string()).unwrap();
        let mut child = Command::new("node")
            .arg(provider_dir().join("provider.js"))
            .arg(&file)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting node");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if line.trim() == "listening" {
                    let _ = tx.send(());
                }
            }
        });
        self.child = child;
        rx.recv_timeout(Duration::from_secs(30))
            .expect("the identity provider never said it was listening");
    }
}

/// A gateway configured for a provider started after it (its client's redirect URI names the
/// gateway's port).
async fn gateway_and_provider(engine: Engine, other_keys: bool) -> (TestApp, Idp) {
    gateway_and_provider_with(engine, other_keys, |_| {}).await
}

/// [`gateway_and_provider`], the gateway's provider settings changed by `tweak`.
async fn gateway_and_provider_with(
    engine: Engine,
    other_keys: bool,
    tweak: impl FnOnce(&mut OidcSettings),
) -> (TestApp, Idp) {
    let mut idp = Idp::prepare();
    let app = gateway_for(engine, &idp, tweak).await;
    idp.start(&app.url, other_keys);
    (app, idp)
}

/// A gateway whose provider is `idp` (started or not), on a port chosen ahead for its
/// redirect URI.
async fn gateway_for(engine: Engine, idp: &Idp, tweak: impl FnOnce(&mut OidcSettings)) -> TestApp {
    let port = free_port();
    let mut oidc = idp.settings(port);
    tweak(&mut oidc);
    TestApp::spawn_with(engine, |s| {
        s.listen = format!("127.0.0.1:{port}").parse().unwrap();
        s.auth.oidc = oidc;
    })
    .await
}

/// One answer.
struct Hop {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Hop {
    fn location(&self, from: &str) -> String {
        let l = self.headers[LOCATION].to_str().unwrap();
        Url::parse(from).unwrap().join(l).unwrap().to_string()
    }

    fn sets_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .find(|c| c.starts_with(&format!("{name}=")))
    }
}

/// A browser of both sites over HTTP: no redirect followed, cookies kept per origin.
struct Agent {
    http: reqwest::Client,
    jar: Vec<(String, String, String)>,
}

fn origin(url: &str) -> String {
    Url::parse(url).unwrap().origin().ascii_serialization()
}

impl Agent {
    fn new(app: &TestApp, idp: &Idp) -> Agent {
        // Both sites' CAs in one file.
        let mut pem = std::fs::read(app.dir.path().join("tls/ca.pem")).unwrap();
        pem.extend(std::fs::read(idp.dir.path().join("ca.pem")).unwrap());
        let both = idp.dir.path().join("both-ca.pem");
        std::fs::write(&both, pem).unwrap();
        let http =
            gateway::client::http_client_with(Some(&both), reqwest::redirect::Policy::none())
                .unwrap();
        Agent {
            http,
            jar: Vec::new(),
        }
    }

    fn cookie(&self, url: &str, name: &str) -> Option<String> {
        let o = origin(url);
        self.jar
            .iter()
            .find(|(jo, n, _)| *jo == o && n == name)
            .map(|(_, _, v)| v.clone())
    }

    fn set(&mut self, url: &str, name: &str, value: Option<&str>) {
        let o = origin(url);
        self.jar.retain(|(jo, n, _)| !(*jo == o && n == name));
        if let Some(v) = value {
            self.jar.push((o, name.to_owned(), v.to_owned()));
        }
    }

    async fn send(&mut self, url: &str, form: Option<&[(&str, &str)]>) -> Hop {
        let o = origin(url);
        let mut r = match form {
            Some(f) => self
                .http
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(serde_urlencoded::to_string(f).unwrap()),
            None => self.http.get(url),
        };
        let cookies: Vec<String> = self
            .jar
            .iter()
            .filter(|(jo, _, _)| *jo == o)
            .map(|(_, n, v)| format!("{n}={v}"))
            .collect();
        if !cookies.is_empty() {
            r = r.header("cookie", cookies.join("; "));
        }
        let resp = r.header("accept-language", "en").send().await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        for v in headers.get_all(SET_COOKIE) {
            let v = v.to_str().unwrap();
            let (pair, attrs) = v.split_once(';').unwrap_or((v, ""));
            let (name, value) = pair.split_once('=').unwrap();
            let gone = value.is_empty()
                || attrs.contains("Max-Age=0")
                || attrs.contains("expires=Thu, 01 Jan 1970");
            self.set(url, name.trim(), (!gone).then_some(value));
        }
        let body = resp.text().await.unwrap();
        Hop {
            status,
            headers,
            body,
        }
    }

    async fn get(&mut self, url: &str) -> Hop {
        self.send(url, None).await
    }
}

fn has_flags(cookie: &str, flags: &[&str]) {
    for flag in flags {
        assert!(cookie.contains(flag), "{cookie} lacks {flag}");
    }
}

/// Starts a sign-in at the gateway `gw`; the provider's authorization URL it sends to.
async fn start(a: &mut Agent, gw: &str) -> String {
    let url = format!("{gw}/ui/sign-in/provider");
    let h = a.get(&url).await;
    assert_eq!(h.status, StatusCode::SEE_OTHER, "{}", h.body);
    let binding = h.sets_cookie("vre_oidc").expect("a binding cookie");
    has_flags(
        &binding,
        &[
            "HttpOnly",
            "Secure",
            "SameSite=Lax",
            "Path=/ui/sign-in/callback",
        ],
    );
    h.location(&url)
}

/// At the provider, from its authorization URL: logs in as `login` (or cancels, when `login`
/// is `None`) on its login page; the gateway's return URL it sends the browser to.
async fn at_provider(a: &mut Agent, auth: &str, login: Option<(&str, &str)>) -> String {
    // No session at the provider from an earlier sign-in: it asks again.
    let o = origin(auth);
    a.jar.retain(|(jo, _, _)| *jo != o);
    let h = a.get(auth).await;
    assert!(h.status.is_redirection(), "{}: {}", h.status, h.body);
    let interaction = h.location(auth);
    let page = a.get(&interaction).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("id=\"login\""), "{}", page.body);
    let (action, form): (&str, Vec<(&str, &str)>) = match login {
        Some((l, p)) => ("login", vec![("login", l), ("password", p)]),
        None => ("abort", vec![]),
    };
    let post = format!("{interaction}/{action}");
    let h = a.send(&post, Some(&form)).await;
    assert!(h.status.is_redirection(), "{}: {}", h.status, h.body);
    let resume = h.location(&post);
    let h = a.get(&resume).await;
    assert!(h.status.is_redirection(), "{}: {}", h.status, h.body);
    h.location(&resume)
}

/// The query parameter `name` of `url`, replaced by `value`.
fn with_param(url: &str, name: &str, value: &str) -> String {
    let mut u = Url::parse(url).unwrap();
    let pairs: Vec<(String, String)> = u
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == name {
                value.to_owned()
            } else {
                v.into()
            };
            (k.into_owned(), v)
        })
        .collect();
    u.query_pairs_mut().clear().extend_pairs(pairs);
    u.to_string()
}

/// The sign-ins recorded as used, read from the gateway's database.
async fn used_sign_ins(app: &TestApp) -> i64 {
    let mut conn = app.state.db.pool().acquire().await.unwrap();
    gateway::store::web::count_sign_ins(&mut conn)
        .await
        .unwrap()
}

fn assert_refused(h: &Hop, status: StatusCode, code: &str, words: &str) {
    assert_eq!(h.status, status, "{}", h.body);
    assert!(h.body.contains(code), "{}", h.body);
    assert!(h.body.contains(words), "no `{words}` in {}", h.body);
    assert!(h.sets_cookie("vre_session").is_none(), "a session opened");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_code_flow_signs_in_with_the_providers_roles_and_refuses_forged_and_replayed_returns() {
    if !provider_available() {
        return;
    }
    for engine in engines() {
        let (app, idp) = gateway_and_provider(engine, false).await;
        let gw = app.url.clone();
        app.project("p1", &[("ana", "analyst")]).await;
        let id = app.application("access", "p1", "ana", "analyst").await;
        let mut a = Agent::new(&app, &idp);

        // The sign-in page offers the provider.
        let page = a.get(&format!("{gw}/ui/sign-in")).await;
        assert!(
            page.body
                .contains("href=\"&#x2f;ui&#x2f;sign-in&#x2f;provider\"")
                || page.body.contains("href=\"/ui/sign-in/provider\""),
            "{}",
            page.body
        );
        assert!(page.body.contains("Sign in with Test IdP"), "{}", page.body);

        let auth = start(&mut a, &gw).await;
        assert!(auth.starts_with(&format!("{}/auth?", idp.issuer)), "{auth}");
        let asked: std::collections::HashMap<String, String> = Url::parse(&auth)
            .unwrap()
            .query_pairs()
            .into_owned()
            .collect();
        assert_eq!(asked["code_challenge_method"], "S256");
        assert_eq!(asked["client_id"], CLIENT_ID);
        assert_eq!(asked["scope"], "openid profile roles");
        assert_eq!(asked["code_challenge"].len(), 43);
        let binding = a.cookie(&gw, "vre_oidc").unwrap();
        let back = at_provider(&mut a, &auth, Some(("rev", "rev-password"))).await;
        assert!(
            back.starts_with(&format!("{gw}/ui/sign-in/callback?")),
            "{back}"
        );

        // A forged state: refused (and, as every answer of the return does, the binding
        // cookie is cleared).
        let forged = with_param(&back, "state", "forged-state-value");
        let h = a.get(&forged).await;
        assert_refused(
            &h,
            StatusCode::BAD_REQUEST,
            "bad_sign_in",
            "belongs to no sign-in",
        );
        assert!(
            a.cookie(&gw, "vre_oidc").is_none(),
            "the binding is cleared"
        );

        // A return that does not parse (a parameter twice): a page saying so.
        let h = a.get(&format!("{back}&state=again")).await;
        assert_refused(&h, StatusCode::BAD_REQUEST, "bad_sign_in", "does not parse");

        // Without the binding cookie (another browser): refused before anything is used.
        let h = a.get(&back).await;
        assert_refused(
            &h,
            StatusCode::BAD_REQUEST,
            "bad_sign_in",
            "its cookie is missing",
        );
        assert!(actions(&app.audit_events("rev").await).is_empty());

        // The browser that started it, with its binding: signed in.
        a.set(&gw, "vre_oidc", Some(&binding));
        let h = a.get(&back).await;
        assert_eq!(h.status, StatusCode::OK, "{}", h.body);
        let cookie = h.sets_cookie("vre_session").expect("a session");
        has_flags(
            &cookie,
            &[
                "HttpOnly",
                "Secure",
                "SameSite=Strict",
                "Path=/ui",
                "Max-Age=",
            ],
        );
        // The session ends no later than the ID token (oidc-provider's last an hour).
        let max_age: u64 = cookie
            .split("Max-Age=")
            .nth(1)
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(max_age <= 3600, "{cookie}");
        assert_eq!(h.headers["refresh"], "0; url=/ui/queue");
        assert!(h.body.contains("href=\"&#x2f;ui&#x2f;queue\"") || h.body.contains("/ui/queue"));
        assert!(
            a.cookie(&gw, "vre_oidc").is_none(),
            "the binding is cleared"
        );
        let queue = a.get(&format!("{gw}/ui/queue")).await;
        assert_eq!(queue.status, StatusCode::OK, "{}", queue.body);
        assert!(queue.body.contains(">rev<"), "{}", queue.body);
        assert!(queue.body.contains("(reviewer)"), "{}", queue.body);
        assert!(
            queue.body.contains(&id),
            "the reviewer sees the application"
        );
        let events = app.audit_events("rev").await;
        assert_eq!(actions(&events), ["web.sign_in"]);
        let detail: serde_json::Value =
            serde_json::from_str(events[0]["detail"].as_str().unwrap()).unwrap();
        assert_eq!(detail["provider"], idp.issuer.as_str());
        assert_eq!(detail["roles"], "reviewer");

        // The same return again, from the same browser with its binding: used already.
        a.set(&gw, "vre_oidc", Some(&binding));
        a.set(&gw, "vre_session", None);
        let h = a.get(&back).await;
        assert_refused(&h, StatusCode::BAD_REQUEST, "bad_sign_in", "used already");
        assert_eq!(actions(&app.audit_events("rev").await), ["web.sign_in"]);

        // An account whose claims carry no roles signs in with none, and sees no application.
        let mut b = Agent::new(&app, &idp);
        let auth = start(&mut b, &gw).await;
        let back = at_provider(&mut b, &auth, Some(("nobody", "nobody-password"))).await;
        assert_eq!(b.get(&back).await.status, StatusCode::OK);
        let queue = b.get(&format!("{gw}/ui/queue")).await;
        assert!(queue.body.contains(">nobody<"), "{}", queue.body);
        assert!(queue.body.contains("()"), "no roles: {}", queue.body);
        assert!(!queue.body.contains(&id), "{}", queue.body);
        let page = b.get(&format!("{gw}/ui/applications/{id}")).await;
        assert!(!page.status.is_success(), "{}", page.body);

        // The provider's refusal (the user cancels): refused, each time it comes back, and
        // nothing is recorded for it.
        let mut c = Agent::new(&app, &idp);
        let auth = start(&mut c, &gw).await;
        let binding = c.cookie(&gw, "vre_oidc").unwrap();
        let back = at_provider(&mut c, &auth, None).await;
        assert!(back.contains("error=access_denied"), "{back}");
        let h = c.get(&back).await;
        assert_refused(
            &h,
            StatusCode::UNAUTHORIZED,
            "sign_in_refused",
            "access_denied",
        );
        c.set(&gw, "vre_oidc", Some(&binding));
        let h = c.get(&back).await;
        assert_refused(
            &h,
            StatusCode::UNAUTHORIZED,
            "sign_in_refused",
            "access_denied",
        );

        // A return that names another issuer (a mix-up of providers).
        let auth = start(&mut c, &gw).await;
        let back = at_provider(&mut c, &auth, Some(("rev", "rev-password"))).await;
        assert!(back.contains("iss="), "{back}");
        let mixed = with_param(&back, "iss", "https://other-idp.example");
        let h = c.get(&mixed).await;
        assert_refused(
            &h,
            StatusCode::UNAUTHORIZED,
            "sign_in_refused",
            "another identity provider",
        );

        // A nonce changed on the way to the provider: its ID token carries another.
        let auth = start(&mut c, &gw).await;
        let tampered = with_param(&auth, "nonce", "a-nonce-of-the-attackers");
        let back = at_provider(&mut c, &tampered, Some(("rev", "rev-password"))).await;
        let h = c.get(&back).await;
        assert_refused(&h, StatusCode::UNAUTHORIZED, "sign_in_refused", "nonce");
        assert_eq!(actions(&app.audit_events("rev").await), ["web.sign_in"]);

        // A sign-in that expired before the provider sent the browser back: a cookie the
        // gateway made, its time up.
        let expired = Pending {
            expires_at: 1,
            ..Pending::fresh(0)
        };
        let sealed = app.state.oidc.as_ref().unwrap().seal(&expired);
        c.set(&gw, "vre_oidc", Some(&sealed));
        let h = c
            .get(&format!(
                "{gw}/ui/sign-in/callback?code=whatever&state={}",
                expired.state
            ))
            .await;
        assert_refused(&h, StatusCode::BAD_REQUEST, "bad_sign_in", "took too long");

        // Only the sign-ins the provider accepted are recorded: rev's and nobody's.
        assert_eq!(used_sign_ins(&app).await, 2);
        drop(idp);
        app.stop().await;
    }
}

/// `value` with its byte at `i` replaced by another base64url character.
fn one_byte_changed(value: &str, i: usize) -> String {
    let mut b = value.as_bytes().to_vec();
    b[i] = if b[i] == b'A' { b'B' } else { b'A' };
    String::from_utf8(b).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_or_another_sign_ins_cookie_is_refused_and_a_sign_in_outlives_a_restart() {
    if !provider_available() {
        return;
    }
    for engine in engines() {
        let (mut app, idp) = gateway_and_provider(engine, false).await;
        let gw = app.url.clone();
        let mut a = Agent::new(&app, &idp);
        let mut b = Agent::new(&app, &idp);
        let auth = start(&mut a, &gw).await;
        let kept = a.cookie(&gw, "vre_oidc").unwrap();
        start(&mut b, &gw).await;
        let other = b.cookie(&gw, "vre_oidc").unwrap();
        assert_ne!(kept, other);
        let back = at_provider(&mut a, &auth, Some(("rev", "rev-password"))).await;

        // One byte changed: in the state, in the expiry's place, in the MAC.
        for i in [5, kept.len() - 50, kept.len() - 1] {
            a.set(&gw, "vre_oidc", Some(&one_byte_changed(&kept, i)));
            let h = a.get(&back).await;
            assert_refused(&h, StatusCode::BAD_REQUEST, "bad_sign_in", "was changed");
        }
        // Another sign-in's cookie, good in itself, with this return.
        a.set(&gw, "vre_oidc", Some(&other));
        let h = a.get(&back).await;
        assert_refused(
            &h,
            StatusCode::BAD_REQUEST,
            "bad_sign_in",
            "belongs to no sign-in",
        );
        assert!(actions(&app.audit_events("rev").await).is_empty());
        assert_eq!(used_sign_ins(&app).await, 0);

        // The gateway restarts (same data dir, database and address) while the browser is at
        // the provider: the sign-in it started before finishes after.
        app.restart().await;
        assert_eq!(app.url, gw);
        a.set(&gw, "vre_oidc", Some(&kept));
        let h = a.get(&back).await;
        assert_eq!(h.status, StatusCode::OK, "{}", h.body);
        assert!(h.sets_cookie("vre_session").is_some());
        assert_eq!(actions(&app.audit_events("rev").await), ["web.sign_in"]);
        assert_eq!(used_sign_ins(&app).await, 1);
        drop(idp);
        app.stop().await;
    }
}

/// How many anonymous starts the test below makes.
const ANONYMOUS_STARTS: usize = 20_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_starts_write_nothing_and_keep_no_one_from_signing_in() {
    use futures_util::StreamExt;
    if !provider_available() {
        return;
    }
    for engine in engines() {
        let (app, idp) = gateway_and_provider(engine, false).await;
        let gw = app.url.clone();
        let ca = app.dir.path().join("tls/ca.pem");
        let http = gateway::client::http_client_with(Some(&ca), reqwest::redirect::Policy::none())
            .unwrap();
        let url = format!("{gw}/ui/sign-in/provider");
        let began = std::time::Instant::now();
        let answers: Vec<(StatusCode, bool)> = futures_util::stream::iter(0..ANONYMOUS_STARTS)
            .map(|_| {
                let (http, url) = (http.clone(), url.clone());
                async move {
                    let r = http.get(&url).send().await.unwrap();
                    let cookie = r
                        .headers()
                        .get_all(SET_COOKIE)
                        .iter()
                        .any(|c| c.to_str().unwrap().starts_with("vre_oidc="));
                    (r.status(), cookie)
                }
            })
            .buffer_unordered(16)
            .collect()
            .await;
        let took = began.elapsed();
        eprintln!("{engine:?}: {ANONYMOUS_STARTS} anonymous starts in {took:?}");
        assert!(
            answers
                .iter()
                .all(|(st, cookie)| *st == StatusCode::SEE_OTHER && *cookie),
            "every start is sent to the provider with its cookie"
        );
        assert_eq!(used_sign_ins(&app).await, 0, "a start writes no row");
        assert!(actions(&app.audit_events("rev").await).is_empty());

        // A real user, after them all.
        let mut a = Agent::new(&app, &idp);
        let auth = start(&mut a, &gw).await;
        let back = at_provider(&mut a, &auth, Some(("rev", "rev-password"))).await;
        let h = a.get(&back).await;
        assert_eq!(h.status, StatusCode::OK, "{}", h.body);
        assert!(h.sets_cookie("vre_session").is_some());
        assert_eq!(used_sign_ins(&app).await, 1);
        drop(idp);
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_used_sign_ins_record_is_the_final_word_and_is_removed_after_its_expiry() {
    use gateway::error::ErrorCode;
    use gateway::service::{Error, sessions};
    for engine in engines() {
        let app = TestApp::spawn(engine).await;
        let caller = gateway::auth::Caller {
            sub: policy::ids::Subject::parse("rev").unwrap(),
            roles: policy::roles::RoleSet::EMPTY,
            institution: None,
        };
        let now = jsonwebtoken::get_current_timestamp();
        let used = sessions::Used {
            provider: "https://idp.example",
            state: "a-state",
            expires_at: now + 600,
        };
        // Two returns of one sign-in at once, both past the read: one session opens.
        let (x, y) = tokio::join!(
            sessions::open_signed_in(&app.state, &caller, now + 3600, &used),
            sessions::open_signed_in(&app.state, &caller, now + 3600, &used),
        );
        let refused: Vec<Error> = [x, y].into_iter().filter_map(Result::err).collect();
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert!(
            matches!(&refused[0], Error::Invalid { code: ErrorCode::BadSignIn, message } if message.contains("used already")),
            "{refused:?}"
        );
        assert_eq!(actions(&app.audit_events("rev").await), ["web.sign_in"]);
        let e = sessions::check_unused(&app.state, "a-state")
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                Error::Invalid {
                    code: ErrorCode::BadSignIn,
                    ..
                }
            ),
            "{e:?}"
        );
        sessions::check_unused(&app.state, "another-state")
            .await
            .unwrap();

        // A record past its expiry goes when the next is written.
        {
            let mut conn = app.state.db.pool().acquire().await.unwrap();
            let old = gateway::sha256_hex(b"an-old-state");
            let now = gateway::time::now();
            assert!(
                gateway::store::web::insert_used_sign_in(&mut conn, &old, &now, 1)
                    .await
                    .unwrap()
            );
        }
        assert_eq!(used_sign_ins(&app).await, 2);
        let next = sessions::Used {
            state: "the-next-state",
            ..used
        };
        sessions::open_signed_in(&app.state, &caller, now + 3600, &next)
            .await
            .unwrap();
        assert_eq!(
            used_sign_ins(&app).await,
            2,
            "the old one removed, the next one kept"
        );
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_down_or_not_trusted_starts_no_sign_in() {
    if !provider_available() {
        return;
    }
    // Its certificate comes from a CA the gateway was not told about.
    let (app, idp) = gateway_and_provider_with(Engine::Sqlite, false, |o| o.ca_file = None).await;
    let mut a = Agent::new(&app, &idp);
    let h = a.get(&format!("{}/ui/sign-in/provider", app.url)).await;
    assert_eq!(h.status, StatusCode::SERVICE_UNAVAILABLE, "{}", h.body);
    assert!(h.body.contains("unavailable"), "{}", h.body);
    assert!(h.body.contains("certificate"), "{}", h.body);
    assert!(h.sets_cookie("vre_oidc").is_none());
    // Stopped: the gateway still serves, and says the provider is not there.
    drop(idp);
    app.stop().await;
    let mut idp = Idp::prepare();
    let app = gateway_for(Engine::Sqlite, &idp, |_| {}).await;
    let mut a = Agent::new(&app, &idp);
    let h = a.get(&format!("{}/ui/sign-in/provider", app.url)).await;
    assert_eq!(h.status, StatusCode::SERVICE_UNAVAILABLE, "{}", h.body);
    assert!(h.sets_cookie("vre_oidc").is_none());
    assert_eq!(
        used_sign_ins(&app).await,
        0,
        "nothing is kept for a sign-in that could not start"
    );
    // Once it is up, the same gateway signs in through it.
    idp.start(&app.url, false);
    let auth = start(&mut a, &app.url).await;
    let back = at_provider(&mut a, &auth, Some(("rev", "rev-password"))).await;
    assert_eq!(a.get(&back).await.status, StatusCode::OK);
    drop(idp);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_token_signed_with_a_key_the_provider_does_not_publish_is_refused() {
    if !provider_available() {
        return;
    }
    let (app, idp) = gateway_and_provider(Engine::Sqlite, true).await;
    let gw = app.url.clone();
    let mut a = Agent::new(&app, &idp);
    let auth = start(&mut a, &gw).await;
    let back = at_provider(&mut a, &auth, Some(("rev", "rev-password"))).await;
    let h = a.get(&back).await;
    assert_refused(
        &h,
        StatusCode::UNAUTHORIZED,
        "sign_in_refused",
        "does not verify with the provider",
    );
    assert!(actions(&app.audit_events("rev").await).is_empty());
    drop(idp);
    app.stop().await;
}

async fn click(c: &fantoccini::Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviewer_signs_in_through_the_provider_in_a_browser() {
    if !provider_available() {
        return;
    }
    let Some(d) = driver() else { return };
    let (app, idp) = gateway_and_provider(Engine::Sqlite, false).await;
    let c = browser(&d, "en").await;
    let ok = async {
        for (lang, label) in [
            ("en", "Sign in with Test IdP"),
            ("ja", "Test IdP でログイン"),
        ] {
            c.goto(&format!("{}/ui/sign-in?lang={lang}", app.url))
                .await
                .unwrap();
            assert_eq!(css_text(&c, "#provider-sign-in").await, label);
            let name = format!("sign-in-provider-{lang}");
            shoot(&c, &name).await;
            super::accessibility::axe_check(&c, &name).await;
        }
        c.goto(&format!("{}/ui/sign-in?lang=en", app.url))
            .await
            .unwrap();
        click(&c, "#provider-sign-in").await;
        // The provider's own login page, on its own site.
        c.wait()
            .for_element(Locator::Css("input#login"))
            .await
            .unwrap()
            .send_keys("rev")
            .await
            .unwrap();
        assert_eq!(c.current_url().await.unwrap().host_str(), Some("localhost"));
        c.find(Locator::Css("input#password"))
            .await
            .unwrap()
            .send_keys("rev-password")
            .await
            .unwrap();
        shoot(&c, "provider-login").await;
        click(&c, "button#submit").await;
        // Back on the gateway's queue, signed in: the session cookie went along.
        for _ in 0..200 {
            if c.current_url().await.unwrap().path() == "/ui/queue" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(c.current_url().await.unwrap().path(), "/ui/queue");
        assert_eq!(css_text(&c, "header .who").await, "rev");
        shoot(&c, "signed-in-through-provider-en").await;
    };
    let outcome = tokio::time::timeout(Duration::from_secs(120), ok).await;
    let _ = c.close().await;
    drop(idp);
    app.stop().await;
    outcome.expect("the browser sign-in finished in time");
}
