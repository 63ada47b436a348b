//! The pages in a real browser: headless Chromium (Debian's `chromium` and `chromium-driver`)
//! driven over WebDriver. A reviewer signs in with a token, opens an egress application from
//! the queue, sees the flagged cell of its table, and approves; the catalog is read without
//! signing in. Screenshots of the pages, in both languages, go to `target/web-screenshots/`.
//!
//! Skipped where no chromedriver is installed, unless `VRE_TEST_REQUIRE_BROWSER=1`
//! (`deploy/dev/test.sh` sets it): then a missing browser fails.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::StatusCode;
use serde_json::json;

use crate::datasets::{INSTITUTION, example_dmp, register_approved};
use crate::support::{Engine, docker_available, required};

/// A chromedriver of the test's own on a free loopback port, stopped when dropped.
pub(crate) struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn driver() -> Option<Driver> {
    let found = Command::new("chromedriver")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            !required("BROWSER"),
            "VRE_TEST_REQUIRE_BROWSER=1 but no chromedriver is installed"
        );
        eprintln!("no chromedriver here: skipping a browser test (test.sh installs it)");
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("chromedriver")
        .args([format!("--port={port}"), "--allowed-ips=127.0.0.1".into()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting chromedriver");
    Some(Driver { child, port })
}

/// A headless Chromium session, in `lang`, that trusts the test gateway's certificate.
pub(crate) async fn browser(d: &Driver, lang: &str) -> Client {
    connect(d, capabilities(lang)).await
}

/// The capabilities of a headless Chromium in `lang` that trusts the test gateway's
/// certificate.
pub(crate) fn capabilities(lang: &str) -> serde_json::Map<String, serde_json::Value> {
    let mut caps = serde_json::Map::new();
    caps.insert("acceptInsecureCerts".into(), json!(true));
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1000", format!("--lang={lang}")],
            "prefs": { "intl.accept_languages": lang },
        }),
    );
    caps
}

/// A browser session with the capabilities `caps`, once the driver answers.
pub(crate) async fn connect(
    d: &Driver,
    caps: serde_json::Map<String, serde_json::Value>,
) -> Client {
    let url = format!("http://127.0.0.1:{}", d.port);
    for _ in 0..100 {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&url)
            .await
        {
            Ok(c) => return c,
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    panic!("chromedriver never answered at {url}");
}

pub(crate) fn screenshots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/web-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub(crate) async fn shoot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(screenshots().join(format!("{name}.png")), png).unwrap();
}

pub(crate) async fn css_text(c: &Client, css: &str) -> String {
    c.wait()
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .text()
        .await
        .unwrap()
}

/// Signs in through the sign-in page's form, pasting `token`; lands on the queue.
pub(crate) async fn sign_in(c: &Client, base: &str, token: &str) {
    sign_in_at(c, &format!("{base}/ui/sign-in"), token, None).await;
}

/// Signs in through the sign-in page at `url` (a screenshot `shot` of it taken first, when
/// named), pasting `token`; lands on the queue.
pub(crate) async fn sign_in_at(c: &Client, url: &str, token: &str, shot: Option<&str>) {
    c.goto(url).await.unwrap();
    if let Some(name) = shot {
        shoot(c, name).await;
    }
    c.find(Locator::Css("textarea#token"))
        .await
        .unwrap()
        .send_keys(token)
        .await
        .unwrap();
    c.find(Locator::Css("main button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // The sign-in page has a heading too: wait for the queue's address, not for an element.
    for _ in 0..200 {
        if c.current_url().await.unwrap().path() == "/ui/queue" {
            c.wait().for_element(Locator::Css("h1")).await.unwrap();
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "signing in did not reach the queue: {}",
        c.current_url().await.unwrap()
    );
}

/// Opens the application page at `url` and sends the vote form: approve, with `comment`.
pub(crate) async fn approve(c: &Client, url: &str, comment: &str) {
    c.goto(url).await.unwrap();
    for (css, keys) in [("#choice-approve", None), ("#comment", Some(comment))] {
        let e = c.find(Locator::Css(css)).await.unwrap();
        match keys {
            Some(k) => e.send_keys(k).await.unwrap(),
            None => e.click().await.unwrap(),
        }
    }
    c.find(Locator::Css("form[action$='/decide'] button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Signs out with the button every page has.
pub(crate) async fn sign_out(c: &Client) {
    c.find(Locator::Css("form[action='/ui/sign-out'] button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .for_element(Locator::Css("textarea#token"))
        .await
        .unwrap();
}

/// Whether the page fits the window's width: nothing scrolls sideways but regions of its own.
pub(crate) async fn fits_width(c: &Client) -> bool {
    c.execute(
        "return document.documentElement.scrollWidth <= document.documentElement.clientWidth;",
        vec![],
    )
    .await
    .unwrap()
        == json!(true)
}

/// Runs `steps` in the browser `c`, then closes it whatever happened (a failed step's panic
/// goes on once the browser is closed).
pub(crate) async fn closing(c: Client, steps: impl std::future::Future<Output = ()>) {
    let outcome = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(steps)).await;
    let _ = c.close().await;
    if let Err(p) = outcome {
        std::panic::resume_unwind(p);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviewer_signs_in_sees_the_flagged_cell_and_approves_in_a_browser() {
    let Some(d) = driver() else { return };
    if !docker_available() {
        return;
    }
    let (app, ana, _data) = crate::sandbox::small_world_on(Engine::Sqlite, |_| {}).await;
    let id = super::review::flagged_egress(&app, &ana).await;
    let steward = app.token_for("hana", "steward", Some(INSTITUTION));
    let (dataset, _) = register_approved(&app, &steward, &example_dmp(INSTITUTION)).await;
    let (hidden, _) =
        register_approved(&app, &steward, &super::unshared_dmp("Unshared Cohort U")).await;

    let c = browser(&d, "en").await;
    let ok = async {
        // The catalog, without signing in, in both languages.
        c.goto(&format!("{}/ui/catalog?lang=en", app.url))
            .await
            .unwrap();
        assert_eq!(css_text(&c, "h1").await, "Dataset catalog");
        let page = c.source().await.unwrap();
        assert!(page.contains(&dataset), "{page}");
        assert!(
            !page.contains(&hidden) && !page.contains("Unshared Cohort U"),
            "{page}"
        );
        shoot(&c, "catalog-en").await;
        c.goto(&format!("{}/ui/catalog?lang=ja", app.url))
            .await
            .unwrap();
        assert_eq!(css_text(&c, "h1").await, "データセットカタログ");
        shoot(&c, "catalog-ja").await;

        // Sign in by pasting a token, with the keyboard's Enter-free path: the button.
        let token = app.token("rev", "reviewer");
        sign_in_at(
            &c,
            &format!("{}/ui/sign-in?lang=en", app.url),
            &token,
            Some("sign-in-en"),
        )
        .await;
        c.wait().for_element(Locator::Css("table")).await.unwrap();
        assert_eq!(c.current_url().await.unwrap().path(), "/ui/queue");
        shoot(&c, "queue-en").await;

        // The egress application from the queue, then its file's preview.
        c.find(Locator::Css(&format!("a[href='/ui/applications/{id}']")))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        c.wait().for_element(Locator::Css("#vote")).await.unwrap();
        shoot(&c, "application-en").await;
        c.find(Locator::LinkText("counts.csv"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let flagged = css_text(&c, "td.flag-review").await;
        assert_eq!(flagged, "[to review] 0");
        shoot(&c, "preview-en").await;
        c.goto(&format!(
            "{}/ui/applications/{id}/preview?path=counts.csv&lang=ja",
            app.url
        ))
        .await
        .unwrap();
        assert_eq!(css_text(&c, "td.flag-review").await, "[要確認] 0");
        shoot(&c, "preview-ja").await;

        // Approve, with a comment.
        approve(
            &c,
            &format!("{}/ui/applications/{id}?lang=en", app.url),
            "The zero count is a structural zero.",
        )
        .await;
        let notice = css_text(&c, "p.ok").await;
        assert_eq!(notice, "Your vote was counted: Approve");
        shoot(&c, "voted-en").await;

        // At 200 % zoom (half the width in CSS pixels) nothing needs scrolling sideways but
        // a wide table, which scrolls in its own region.
        c.set_window_size(640, 1000).await.unwrap();
        for (page, name) in [
            ("/ui/queue?lang=en".to_owned(), "queue-zoom-en"),
            (
                format!("/ui/applications/{id}?lang=ja"),
                "application-zoom-ja",
            ),
            (
                format!("/ui/applications/{id}/preview?path=counts.csv&lang=en"),
                "preview-zoom-en",
            ),
            ("/ui/catalog?lang=ja".to_owned(), "catalog-zoom-ja"),
        ] {
            c.goto(&format!("{}{page}", app.url)).await.unwrap();
            let fits = fits_width(&c).await;
            shoot(&c, name).await;
            assert!(fits, "{page} scrolls sideways at 640 px");
        }
        c.set_window_size(1280, 1000).await.unwrap();
        sign_out(&c).await;

        // The requester, a reviewer too, may not vote on her own application: the service's
        // refusal, on the page.
        sign_in(&c, &app.url, &app.token("ana", "analyst,reviewer")).await;
        approve(
            &c,
            &format!("{}/ui/applications/{id}?lang=en", app.url),
            "Looks fine to me.",
        )
        .await;
        let refusal = css_text(&c, "p.problem").await;
        assert!(
            refusal.starts_with("The vote was refused") && refusal.contains("separation_of_duties"),
            "{refusal}"
        );
        shoot(&c, "own-vote-refused-en").await;
    };
    closing(c.clone(), ok).await;
    let (st, a) = app
        .get(
            &format!("/api/v1/applications/{id}"),
            Some(&app.token("rev", "reviewer")),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(a["decisions"][0]["reviewer"], "rev");
    assert_eq!(
        a["decisions"][0]["comment"],
        "The zero count is a structural zero."
    );
    drop(d);
    app.stop().await;
}
