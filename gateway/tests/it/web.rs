//! The reviewers' web pages over HTTP, as a browser sees them: signing in with a token (the
//! session cookie's flags, CSRF refusals, signing out), the security headers of every page,
//! the language chosen by the browser or the switch, and the public catalog page; the review
//! pages are in `web/review.rs`. On every engine where storage is involved.

pub(crate) mod accessibility;
mod analyst;
mod audit;
mod browser;
mod datasets;
mod images;
mod oidc;
mod review;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, SET_COOKIE};
use serde_json::json;

use crate::datasets::{INSTITUTION, example_dmp, register_approved};
use crate::support::{TestApp, actions, each_engine};

/// A client of the pages that follows no redirect (so each answer's cookies are seen) and
/// keeps the cookies it is given, as a browser would.
pub struct Browser {
    http: reqwest::Client,
    base: String,
    cookies: Vec<(String, String)>,
    pub accept_language: Option<&'static str>,
}

/// One answer of a page.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    /// Where a redirect points.
    pub fn location(&self) -> &str {
        self.headers
            .get("location")
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }

    /// The `Set-Cookie` header that sets `name`.
    pub fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .find(|c| c.starts_with(&format!("{name}=")))
    }

    /// The value of the form field `name` on the page.
    pub fn field(&self, name: &str) -> String {
        let marker = format!("name=\"{name}\" value=\"");
        let at = self
            .body
            .find(&marker)
            .unwrap_or_else(|| panic!("no field {name} on the page: {}", self.body));
        let rest = &self.body[at + marker.len()..];
        rest[..rest.find('"').unwrap()].to_owned()
    }
}

impl Browser {
    pub fn new(app: &TestApp) -> Browser {
        let pem = std::fs::read(app.dir.path().join("tls/ca.pem")).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut &pem[..]) {
            roots.add(cert.unwrap()).unwrap();
        }
        let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Browser {
            http,
            base: app.url.clone(),
            cookies: Vec::new(),
            accept_language: None,
        }
    }

    fn keep_cookies(&mut self, headers: &HeaderMap) {
        for v in headers.get_all(SET_COOKIE) {
            let v = v.to_str().unwrap();
            let (pair, attrs) = v.split_once(';').unwrap_or((v, ""));
            let (name, value) = pair.split_once('=').unwrap();
            self.cookies.retain(|(n, _)| n != name);
            if !value.is_empty() && !attrs.contains("Max-Age=0") {
                self.cookies.push((name.to_owned(), value.to_owned()));
            }
        }
    }

    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn set(&mut self, name: &str, value: &str) {
        self.cookies.retain(|(n, _)| n != name);
        self.cookies.push((name.to_owned(), value.to_owned()));
    }

    async fn send(&mut self, r: reqwest::RequestBuilder) -> Answer {
        let mut r = r;
        if !self.cookies.is_empty() {
            let c: Vec<String> = self
                .cookies
                .iter()
                .map(|(n, v)| format!("{n}={v}"))
                .collect();
            r = r.header("cookie", c.join("; "));
        }
        if let Some(l) = self.accept_language {
            r = r.header("accept-language", l);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        self.keep_cookies(&headers);
        // Attributes as the page escapes them, read back as a browser reads them.
        let body = resp.text().await.unwrap().replace("&#x2f;", "/");
        Answer {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&mut self, path: &str) -> Answer {
        let r = self.http.get(format!("{}{path}", self.base));
        self.send(r).await
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Answer {
        let body = serde_urlencoded::to_string(form).unwrap();
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        self.send(r).await
    }

    /// Signs in with `token` through the sign-in form; the answer to the form.
    pub async fn sign_in(&mut self, token: &str) -> Answer {
        let form = self.get("/ui/sign-in").await;
        assert_eq!(form.status, StatusCode::OK, "{}", form.body);
        let csrf = form.field("csrf");
        self.post("/ui/sign-in", &[("csrf", &csrf), ("token", token)])
            .await
    }
}

/// The example DMP as an unshared dataset's, titled `title`.
pub fn unshared_dmp(title: &str) -> serde_json::Value {
    let mut v = example_dmp(INSTITUTION);
    v["title"] = json!(title);
    v["management_category"] = json!("unshared");
    let o = v.as_object_mut().unwrap();
    o.remove("restricted_sharing_ends");
    o.remove("category_after");
    v
}

const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn assert_secure_page(a: &Answer) {
    assert_eq!(a.headers["content-security-policy"], CSP);
    assert_eq!(a.headers["x-frame-options"], "DENY");
    assert_eq!(a.headers["cache-control"], "no-store");
    assert_eq!(a.headers["x-content-type-options"], "nosniff");
    assert!(!a.body.contains("<script"), "{}", a.body);
}

#[tokio::test]
async fn a_token_signs_in_to_a_strict_session_that_forms_must_prove_and_sign_out_ends() {
    each_engine(|app| async move {
        let mut b = Browser::new(&app);
        // Not signed in: the queue sends to the sign-in page.
        let a = b.get("/ui/queue").await;
        assert!(
            a.status.is_redirection() && a.location() == "/ui/sign-in",
            "{}",
            a.status
        );

        // An address under /ui/ that is no page: a page saying so, as strict as the others.
        let missing = b.get("/ui/no/such/page").await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        assert!(missing.body.contains("not_found"), "{}", missing.body);
        assert_secure_page(&missing);

        let form = b.get("/ui/sign-in").await;
        assert_secure_page(&form);
        let pre = form.set_cookie("vre_sign_in").unwrap();
        assert!(
            pre.contains("HttpOnly") && pre.contains("Secure") && pre.contains("SameSite=Strict"),
            "{pre}"
        );
        let csrf = form.field("csrf");
        let rev = app.token("rev", "reviewer");

        // Without the form's CSRF token, or with another, nothing happens.
        let a = b.post("/ui/sign-in", &[("token", rev.as_str())]).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
        let a = b
            .post("/ui/sign-in", &[("csrf", "00ff"), ("token", rev.as_str())])
            .await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
        assert!(b.cookie("vre_session").is_none());
        // A forged token is refused as the API refuses it.
        let forged = format!("{}x", &rev[..rev.len() - 1]);
        let a = b
            .post(
                "/ui/sign-in",
                &[("csrf", csrf.as_str()), ("token", forged.as_str())],
            )
            .await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
        assert!(a.body.contains("token"), "{}", a.body);
        assert!(b.cookie("vre_session").is_none());

        let a = b.sign_in(&rev).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
        assert_eq!(a.location(), "/ui/queue");
        let cookie = a.set_cookie("vre_session").unwrap();
        for flag in [
            "HttpOnly",
            "Secure",
            "SameSite=Strict",
            "Path=/ui",
            "Max-Age=",
        ] {
            assert!(cookie.contains(flag), "{cookie} lacks {flag}");
        }
        let id = b.cookie("vre_session").unwrap().to_owned();
        assert_eq!(id.len(), 64, "an opaque random id: {id}");
        assert!(!cookie.contains(&rev), "the token is not the cookie");

        let queue = b.get("/ui/queue").await;
        assert_eq!(queue.status, StatusCode::OK, "{}", queue.body);
        assert_secure_page(&queue);
        assert!(queue.body.contains(">rev<"), "{}", queue.body);
        assert_eq!(actions(&app.audit_events("rev").await), ["web.sign_in"]);

        // Another session id is no session.
        b.set("vre_session", &"0".repeat(64));
        assert!(b.get("/ui/queue").await.status.is_redirection());
        b.set("vre_session", &id);

        // Signing out needs the session's CSRF token too; then the id opens nothing.
        let session_csrf = queue.field("csrf");
        let a = b.post("/ui/sign-out", &[("csrf", "nope")]).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN);
        assert_eq!(b.get("/ui/queue").await.status, StatusCode::OK);
        let a = b
            .post("/ui/sign-out", &[("csrf", session_csrf.as_str())])
            .await;
        assert_eq!(a.status, StatusCode::SEE_OTHER);
        assert!(b.cookie("vre_session").is_none());
        b.set("vre_session", &id);
        assert!(b.get("/ui/queue").await.status.is_redirection());
        assert_eq!(
            actions(&app.audit_events("rev").await),
            ["web.sign_in", "web.sign_out"]
        );

        // The stylesheet is the gateway's own.
        let css = b.get("/ui/static/style.css").await;
        assert_eq!(css.status, StatusCode::OK);
        assert!(
            css.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/css")
        );
        app
    })
    .await;
}

#[tokio::test]
async fn the_language_follows_the_browser_and_the_switch_on_every_page() {
    each_engine(|app| async move {
        let mut b = Browser::new(&app);
        b.accept_language = Some("en-GB,en;q=0.9,ja;q=0.5");
        let a = b.get("/ui/catalog").await;
        assert!(a.body.contains("<html lang=\"en\">") && a.body.contains("Dataset catalog"));
        assert!(
            a.body.contains("href=\"/ui/catalog?lang=ja\""),
            "{}",
            a.body
        );
        b.accept_language = Some("ja,en;q=0.8");
        let a = b.get("/ui/sign-in").await;
        assert!(a.body.contains("<html lang=\"ja\">") && a.body.contains("ログイン"));
        assert!(
            a.body.contains("href=\"/ui/sign-in?lang=en\""),
            "{}",
            a.body
        );
        // The switch wins over the browser, and is remembered.
        let a = b.get("/ui/catalog?q=x&lang=en").await;
        assert!(a.body.contains("Dataset catalog"), "{}", a.body);
        assert!(
            a.body.contains("href=\"/ui/catalog?q=x&amp;lang=ja\""),
            "{}",
            a.body
        );
        assert!(
            a.set_cookie("vre_lang")
                .unwrap()
                .starts_with("vre_lang=en;")
        );
        let a = b.get("/ui/sign-in").await;
        assert!(a.body.contains("<html lang=\"en\">"), "{}", a.body);
        let a = b.get("/ui/catalog?lang=ja").await;
        assert!(a.body.contains("データセットカタログ"));
        app
    })
    .await;
}

#[tokio::test]
async fn the_catalog_page_shows_shared_datasets_to_anyone_and_hides_unshared_ones() {
    each_engine(|app| async move {
        let steward = app.token_for("hana", "steward", Some(INSTITUTION));
        let hidden = unshared_dmp("Hidden Cohort Q 非公開コホート");
        let (secret, _) = register_approved(&app, &steward, &hidden).await;
        let (shown, _) = register_approved(&app, &steward, &example_dmp(INSTITUTION)).await;

        let mut b = Browser::new(&app);
        b.accept_language = Some("en");
        let a = b.get("/ui/catalog").await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        assert_secure_page(&a);
        assert!(a.body.contains(&shown), "{}", a.body);
        assert!(
            a.body
                .contains("Whole genomes and clinical data (cohort A)")
        );
        assert!(a.body.contains("Restricted closed sharing"));
        for leak in [
            secret.as_str(),
            "Hidden Cohort",
            "非公開コホート",
            "dmp@example.ac.jp",
        ] {
            assert!(!a.body.contains(leak), "the page shows {leak}");
        }
        let a = b.get("/ui/catalog?q=hidden").await;
        assert!(a.body.contains("No datasets match.") && !a.body.contains(&secret));
        let a = b.get(&format!("/ui/catalog?q={secret}")).await;
        assert!(a.body.contains("No datasets match."));
        let a = b
            .get("/ui/catalog?q=%E5%85%A8%E3%82%B2%E3%83%8E%E3%83%A0")
            .await; // 全ゲノム
        assert!(a.body.contains(&shown));
        let a = b.get(&format!("/ui/catalog?q={}", "x".repeat(201))).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST);
        assert!(a.body.contains("too_long"), "{}", a.body);
        app
    })
    .await;
}
