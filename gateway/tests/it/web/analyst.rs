//! The analysts' pages: "My applications" lists the caller's own applications and their
//! projects' releases; the approved, encrypted release and the files attached to an
//! application download from the pages as from the API (the same bytes, the same checks,
//! the same audit events), never shown inline. Over HTTP on every engine, and in headless
//! Chromium: two reviewers approve on the pages, the analyst downloads the release in the
//! browser and it is the release the gateway recorded.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use fantoccini::Locator;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use super::browser::{
    Driver, approve, capabilities, closing, connect, css_text, driver, fits_width, shoot, sign_in,
    sign_out,
};
use super::{Browser, assert_secure_page};
use crate::datasets::{INSTITUTION, example_dmp, register};
use crate::support::{Engine, TempDir, TestApp, actions, docker_available, each_engine, engines};

/// A file the pages sent, as bytes.
struct Download {
    status: StatusCode,
    headers: HeaderMap,
    bytes: Vec<u8>,
}

/// Asks for `path` with the browser's cookies and keeps the answer's bytes as they are.
async fn download(b: &Browser, path: &str) -> Download {
    let cookies: Vec<String> = b.cookies.iter().map(|(n, v)| format!("{n}={v}")).collect();
    let resp = b
        .http
        .get(format!("{}{path}", b.base))
        .header("cookie", cookies.join("; "))
        .header("accept-language", "en")
        .send()
        .await
        .unwrap();
    Download {
        status: resp.status(),
        headers: resp.headers().clone(),
        bytes: resp.bytes().await.unwrap().to_vec(),
    }
}

/// A browser signed in with `token`, its pages in English.
async fn signed_in(app: &TestApp, token: &str) -> Browser {
    let mut b = Browser::new(app);
    b.accept_language = Some("en");
    let a = b.sign_in(token).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    b
}

/// A download's headers: a file to save under the pages' headers, never a page to show.
fn assert_saved_not_shown(d: &Download, file_name: &str) {
    assert_eq!(d.headers["content-type"], "application/octet-stream");
    assert_eq!(d.headers["x-content-type-options"], "nosniff");
    assert_eq!(d.headers["x-frame-options"], "DENY");
    assert_eq!(d.headers["cache-control"], "no-store");
    assert!(
        d.headers["content-security-policy"]
            .to_str()
            .unwrap()
            .starts_with("default-src 'none'")
    );
    let disposition = d.headers["content-disposition"].to_str().unwrap();
    assert!(
        disposition.starts_with(&format!("attachment; filename=\"{file_name}\"")),
        "{disposition}"
    );
    assert_eq!(
        d.headers["content-length"].to_str().unwrap(),
        d.bytes.len().to_string()
    );
}

#[tokio::test]
async fn the_analyst_s_page_lists_their_own_applications_of_every_kind_and_nobody_else_s() {
    each_engine(|app| async move {
        app.project("p1", &[("ana", "analyst"), ("bob", "analyst")])
            .await;
        app.project("p2", &[("carl", "analyst")]).await;
        let access = app.application("access", "p1", "ana", "analyst").await;
        let ana = app.token("ana", "analyst");
        let ingress = crate::sandbox::upload(&app, &ana, "p1", b"#!/bin/sh\necho hi\n").await;
        let bobs = app.application("access", "p1", "bob", "analyst").await;
        let carls = app.application("access", "p2", "carl", "analyst").await;
        let steward = app.token_for("hana", "steward", Some(INSTITUTION));
        let (_, listing) = register(&app, &steward, &example_dmp(INSTITUTION)).await;

        // Not signed in: to the sign-in page.
        let mut anon = Browser::new(&app);
        let a = anon.get("/ui/mine").await;
        assert!(
            a.status.is_redirection() && a.location() == "/ui/sign-in",
            "{}",
            a.status
        );

        let mut b = signed_in(&app, &ana).await;
        let page = b.get("/ui/mine").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert_secure_page(&page);
        assert!(
            page.body.contains("<h1>My applications</h1>"),
            "{}",
            page.body
        );
        for id in [&access, &ingress] {
            assert!(
                page.body
                    .contains(&format!("<a href=\"/ui/applications/{id}\">")),
                "{id}: {}",
                page.body
            );
        }
        assert!(page.body.contains("<td>Access</td>") && page.body.contains("<td>Ingress</td>"));
        // Bob's application is in ana's project, so she could open it: it is still not hers.
        for other in [&bobs, &carls, &listing] {
            assert!(
                !page.body.contains(other.as_str()),
                "{other}: {}",
                page.body
            );
        }
        assert!(page.body.contains("Your projects have no releases yet."));

        // A steward's own applications are their datasets'.
        let mut s = signed_in(&app, &steward).await;
        let page = s.get("/ui/mine?lang=ja").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(page.body.contains("<h1>自分の申請</h1>"), "{}", page.body);
        assert!(page.body.contains(&listing) && page.body.contains("<td>登録</td>"));
        assert!(!page.body.contains(&access));

        // A cursor the list never gave out: the service's refusal, on the page.
        let a = b.get("/ui/mine?releases=nonsense").await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST);
        assert!(a.body.contains("bad_filter"), "{}", a.body);
        app
    })
    .await;
}

/// The ids of `ids` on `html`.
fn shown<'a>(html: &str, ids: &'a [String]) -> Vec<&'a str> {
    ids.iter()
        .filter(|id| html.contains(id.as_str()))
        .map(String::as_str)
        .collect()
}

/// The addresses of the page's "next page" links: the applications', the releases'.
fn next_links(html: &str) -> (Option<String>, Option<String>) {
    let (apps, releases) = html.split_once("id=\"my-releases\"").unwrap();
    let next = |part: &str| {
        let end = part.find("\" rel=\"next\"")?;
        let start = part[..end].rfind("href=\"")? + "href=\"".len();
        Some(part[start..end].replace("&amp;", "&"))
    };
    (next(apps), next(releases))
}

#[tokio::test]
async fn my_page_pages_through_my_applications_and_my_projects_releases() {
    each_engine(|app| async move {
        app.project("p1", &[("ana", "analyst")]).await;
        app.project("p2", &[("carl", "analyst")]).await;
        let mut mine = Vec::new();
        for _ in 0..53 {
            mine.push(app.application("access", "p1", "ana", "analyst").await);
        }
        let elsewhere = app.application("access", "p2", "carl", "analyst").await;
        // Releases written straight to the store (revoked in the transaction that writes them,
        // so no builder takes them up): two approval times, many sharing one, for the pages'
        // order to be decided by the application's id too.
        let mut released = mine[..52].to_vec();
        released.push(elsewhere.clone());
        {
            let mut tx = app.state.db.pool().begin().await.unwrap();
            for (i, id) in released.iter().enumerate() {
                let at = if i % 2 == 0 {
                    "2030-01-01T00:00:00.000Z"
                } else {
                    "2030-01-02T00:00:00.000Z"
                };
                let requester = if *id == elsewhere { "carl" } else { "ana" };
                gateway::store::egress::insert_release(&mut tx, id, 1, requester, "age1test", at)
                    .await
                    .unwrap();
                gateway::store::egress::revoke(&mut tx, id, "op", at, "a test's")
                    .await
                    .unwrap();
            }
            tx.commit().await.unwrap();
        }
        released.pop();

        let mut b = signed_in(&app, &app.token("ana", "analyst")).await;
        // The lists of a page: its applications and its releases, and their next pages.
        let mut read = async |path: &str| {
            let page = b.get(path).await;
            assert_eq!(page.status, StatusCode::OK, "{}", page.body);
            assert!(!page.body.contains(&elsewhere), "{}", page.body);
            let (apps, releases) = page.body.split_once("id=\"my-releases\"").unwrap();
            assert!(releases.contains("Revoked"));
            let (next_apps, next_releases) = next_links(&page.body);
            (
                shown(apps, &mine),
                shown(releases, &released),
                next_apps,
                next_releases,
            )
        };
        let (first_apps, first_releases, next_apps, next_releases) = read("/ui/mine").await;
        assert_eq!((first_apps.len(), first_releases.len()), (50, 50));
        // The applications' next page keeps the releases where they were, and back.
        let (more_apps, same_releases, none, releases_after) = read(&next_apps.unwrap()).await;
        assert_eq!(more_apps.len(), 3);
        assert_eq!(same_releases, first_releases);
        assert!(none.is_none());
        assert!(releases_after.unwrap().contains("cursor="));
        let (same_apps, more_releases, apps_after, none) = read(&next_releases.unwrap()).await;
        assert_eq!(more_releases.len(), 2);
        assert_eq!(same_apps, first_apps);
        assert!(none.is_none());
        assert!(apps_after.unwrap().contains("releases="));
        let mut apps_seen = [first_apps, more_apps].concat();
        let mut releases_seen = [first_releases, more_releases].concat();
        apps_seen.sort_unstable();
        releases_seen.sort_unstable();
        let (mut all_apps, mut all_releases) = (mine.clone(), released.clone());
        all_apps.sort_unstable();
        all_releases.sort_unstable();
        assert_eq!(apps_seen, all_apps, "every application once");
        assert_eq!(releases_seen, all_releases, "every release once");
        app
    })
    .await;
}

#[tokio::test]
async fn an_attached_file_downloads_from_the_application_page_as_an_audited_read() {
    each_engine(|app| async move {
        use base64::Engine as _;
        app.project("p1", &[("ana", "analyst")]).await;
        app.project("p2", &[("carl", "analyst")]).await;
        let id = app.application("access", "p1", "ana", "analyst").await;
        let file = b"%PDF-1.4 the institution's ethics review: approved\n".to_vec();
        let (st, att) = app
            .post(
                &format!("/api/v1/applications/{id}/attachments"),
                Some(&app.token("sue", "steward")),
                &json!({
                    "kind": "institution_review",
                    "text": "Approved by the ethics board.",
                    "file_name": "倫理審査 結果.pdf",
                    "file_base64": base64::engine::general_purpose::STANDARD.encode(&file),
                }),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{att}");
        let sha = gateway::sha256_hex(&file);
        assert_eq!(att["file_sha256"], sha);
        let href = format!(
            "/ui/applications/{id}/attachments/{}/file",
            att["id"].as_str().unwrap()
        );

        let mut b = signed_in(&app, &app.token("ana", "analyst")).await;
        let page = b.get(&format!("/ui/applications/{id}")).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(page.body.contains("Attached files"), "{}", page.body);
        assert!(
            page.body.contains(&format!(
                "<a href=\"{href}\" download>倫理審査 結果.pdf</a>"
            )),
            "{}",
            page.body
        );
        assert!(page.body.contains(&format!("<td>{}</td>", file.len())));
        assert!(
            page.body
                .contains(&format!("<td class=\"hash\">{sha}</td>"))
        );
        assert!(page.body.contains("<td>Institution review</td>"));

        let before = app.audit_events(&id).await.len();
        let d = download(&b, &href).await;
        assert_eq!(d.status, StatusCode::OK);
        assert_eq!(d.bytes, file);
        assert_eq!(gateway::sha256_hex(&d.bytes), sha);
        assert_eq!(d.headers["x-content-sha256"], sha.as_str());
        assert_saved_not_shown(&d, "_______.pdf");
        assert!(
            d.headers["content-disposition"]
                .to_str()
                .unwrap()
                .ends_with(
                    "filename*=UTF-8''%E5%80%AB%E7%90%86%E5%AF%A9%E6%9F%BB%20%E7%B5%90%E6%9E%9C.pdf"
                )
        );
        let events = app.audit_events(&id).await;
        assert_eq!(events.len(), before + 1);
        let read = events.last().unwrap();
        assert_eq!(
            (read["action"].as_str(), read["actor"].as_str()),
            (Some("content.read"), Some("ana"))
        );
        let detail: Value = serde_json::from_str(read["detail"].as_str().unwrap()).unwrap();
        assert_eq!(
            (&detail["attachment"], &detail["file_sha256"]),
            (&att["id"], &json!(sha))
        );

        // Someone outside the project: the application does not exist for them, nothing is
        // sent and nothing read.
        let c = signed_in(&app, &app.token("carl", "analyst")).await;
        let d = download(&c, &href).await;
        assert_eq!(d.status, StatusCode::NOT_FOUND);
        assert!(
            d.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        let body = String::from_utf8(d.bytes).unwrap();
        assert!(
            body.contains("not_found") && !body.contains("%PDF"),
            "{body}"
        );
        let d = download(
            &b,
            &format!("/ui/applications/{id}/attachments/att-none/file"),
        )
        .await;
        assert_eq!(d.status, StatusCode::NOT_FOUND);
        assert_eq!(app.audit_events(&id).await.len(), before + 1);
        app
    })
    .await;
}

/// An egress application of ana's in review (`review::flagged_egress`), its release to be
/// encrypted to an identity of the test's own; its id and that identity.
async fn egress_in_review(app: &TestApp, ana: &str) -> (String, String) {
    let id = super::review::flagged_egress(app, ana).await;
    // The release goes to the recipient registered when the quorum is reached: this one.
    let identity = super::review::register_key(app, ana).await;
    (id, identity)
}

/// The release of `id` once its builder has made it.
async fn built_release(app: &TestApp, id: &str) -> Value {
    let rev = app.token("rev-watch", "reviewer");
    for _ in 0..600 {
        let (st, b) = app
            .get(&format!("/api/v1/applications/{id}/egress"), Some(&rev))
            .await;
        assert_eq!(st, StatusCode::OK, "{b}");
        if b["release"]["state"] == "built" {
            return b["release"].clone();
        }
        assert_ne!(b["release"]["state"], "refused", "{b}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the release of {id} was never built");
}

/// Decrypts `package` with `identity` with the real `age` tool (when installed; required
/// where `VRE_TEST_REQUIRE_TOOLS=1`), then opens it as `vre release download` does; the
/// names of the files it carries.
fn decrypt(package: &[u8], identity: &str) -> Vec<String> {
    let dir = TempDir::new("web-release");
    let (key, sealed, plain) = (
        dir.path().join("key.txt"),
        dir.path().join("p.tar.zst.age"),
        dir.path().join("p.tar.zst"),
    );
    std::fs::write(&key, identity).unwrap();
    std::fs::write(&sealed, package).unwrap();
    match Command::new("age").arg("--version").output() {
        Ok(o) if o.status.success() => {
            let out = Command::new("age")
                .arg("-d")
                .arg("-i")
                .arg(&key)
                .arg("-o")
                .arg(&plain)
                .arg(&sealed)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let zstd = std::fs::read(&plain).unwrap();
            assert!(zstd.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]), "a zstd frame");
        }
        _ => assert!(
            !crate::support::required("TOOLS"),
            "VRE_TEST_REQUIRE_TOOLS=1 but `age` is not installed"
        ),
    }
    let opened = gateway::release::open(package, identity, &dir.path().join("unpacked")).unwrap();
    opened.files.into_iter().map(|(n, _, _)| n).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_requester_downloads_the_approved_release_from_the_pages_and_nobody_else() {
    if !docker_available() {
        return;
    }
    for engine in engines() {
        let (app, ana, _data) = crate::sandbox::small_world_on(engine, |_| {}).await;
        let admin = app.token("root", "admin");
        let (st, b) = app
            .post(
                "/api/v1/projects/p1/members",
                Some(&admin),
                &json!({"subject": "bea", "role": "analyst"}),
            )
            .await;
        assert!(st.is_success(), "{b}");
        let (id, identity) = egress_in_review(&app, &ana).await;
        let href = format!("/ui/applications/{id}/release");
        let mut b = signed_in(&app, &ana).await;

        // Not approved yet: no release, the service's refusal on a page.
        let d = download(&b, &href).await;
        assert_eq!(d.status, StatusCode::NOT_FOUND);
        assert!(String::from_utf8(d.bytes).unwrap().contains("not_found"));
        let (_, v) = app.vote(&id, "rev1", "approve").await;
        assert_eq!(v["state"], "in_review", "{v}");
        assert_eq!(download(&b, &href).await.status, StatusCode::NOT_FOUND);
        let (_, v) = app.vote(&id, "rev2", "approve").await;
        assert_eq!(v["state"], "approved", "{v}");
        let release = built_release(&app, &id).await;
        let sha = release["package_sha256"].as_str().unwrap().to_owned();

        // "My applications" lists it, with its checksum and the link.
        let page = b.get("/ui/mine").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(page.body.contains("Ready to download"), "{}", page.body);
        assert!(
            page.body
                .contains(&format!("<td class=\"hash\">{sha}</td>"))
        );
        assert!(
            page.body.contains(&format!("<a href=\"{href}\" download>")),
            "{}",
            page.body
        );
        // So does the application's page.
        let page = b.get(&format!("/ui/applications/{id}")).await;
        assert!(
            page.body
                .contains(&format!("id=\"release-sha256\">{sha}</dd>")),
            "{}",
            page.body
        );
        assert!(page.body.contains(&format!(
            "<a href=\"{href}\" download id=\"download-release\">"
        )));

        let d = download(&b, &href).await;
        assert_eq!(d.status, StatusCode::OK);
        assert_eq!(gateway::sha256_hex(&d.bytes), sha);
        assert_eq!(d.headers["x-content-sha256"], sha.as_str());
        assert_eq!(release["package_size"], json!(d.bytes.len()));
        assert_saved_not_shown(&d, &format!("{id}.tar.zst.age"));
        assert_eq!(decrypt(&d.bytes, &identity), ["counts.csv"]);
        let downloads = |events: &[Value]| -> Vec<String> {
            events
                .iter()
                .filter(|e| e["action"] == "release.download")
                .map(|e| e["actor"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(downloads(&app.audit_events(&id).await), ["ana"]);

        // Only the headers, asked with HEAD of the page's link or of the API: refused, so no
        // download is recorded that sent nothing. The health check still answers HEAD.
        let cookies: Vec<String> = b.cookies.iter().map(|(n, v)| format!("{n}={v}")).collect();
        for (url, auth) in [
            (format!("{}{href}", app.url), None),
            (
                format!("{}/api/v1/applications/{id}/release", app.url),
                Some(&ana),
            ),
        ] {
            let mut req = b.http.head(&url).header("cookie", cookies.join("; "));
            if let Some(t) = auth {
                req = req.bearer_auth(t);
            }
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED, "{url}");
            assert_eq!(resp.headers()["allow"], "GET");
        }
        let health = b
            .http
            .head(format!("{}/healthz", app.url))
            .send()
            .await
            .unwrap();
        assert_eq!(health.status(), StatusCode::OK);
        assert_eq!(downloads(&app.audit_events(&id).await), ["ana"]);

        // A colleague in the project sees the release, not the link; asked anyway, refused.
        let mut bea = signed_in(&app, &app.token("bea", "analyst")).await;
        let page = bea.get("/ui/mine").await;
        assert!(page.body.contains(&id), "{}", page.body);
        assert!(page.body.contains("Only its requester downloads it."));
        assert!(!page.body.contains(&format!("href=\"{href}\"")));
        let d = download(&bea, &href).await;
        assert_eq!(d.status, StatusCode::FORBIDDEN);
        // Someone outside the project: no such application.
        let mut carl = signed_in(&app, &app.token("carl", "analyst")).await;
        assert!(!carl.get("/ui/mine").await.body.contains(&id));
        let d = download(&carl, &href).await;
        assert_eq!(d.status, StatusCode::NOT_FOUND);
        assert!(String::from_utf8(d.bytes).unwrap().contains("not_found"));

        // Revoked: listed as such, no link, and refused.
        let (st, r) = app
            .post(
                &format!("/api/v1/applications/{id}/release/revoke"),
                Some(&app.token("op", "operator")),
                &json!({"reason": "published too early"}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{r}");
        let page = b.get("/ui/mine").await;
        assert!(page.body.contains("Revoked"), "{}", page.body);
        assert!(!page.body.contains(&format!("href=\"{href}\"")));
        let d = download(&b, &href).await;
        assert_eq!(d.status, StatusCode::CONFLICT);
        let body = String::from_utf8(d.bytes).unwrap();
        assert!(body.contains("release_revoked"), "{body}");
        assert_eq!(downloads(&app.audit_events(&id).await), ["ana"]);
        app.stop().await;
    }
}

/// A headless Chromium that saves downloads into `dir` without asking.
async fn downloading_browser(d: &Driver, lang: &str, dir: &Path) -> fantoccini::Client {
    let mut caps = capabilities(lang);
    let prefs = &mut caps["goog:chromeOptions"]["prefs"];
    prefs["download.default_directory"] = json!(dir.to_str().unwrap());
    prefs["download.prompt_for_download"] = json!(false);
    prefs["download.directory_upgrade"] = json!(true);
    connect(d, caps).await
}

/// The file saved as `name` in `dir`, once the browser has finished writing it.
async fn saved(dir: &Path, name: &str) -> Vec<u8> {
    let path = dir.join(name);
    for _ in 0..400 {
        let partial = std::fs::read_dir(dir).unwrap().any(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".crdownload")
        });
        if path.is_file() && !partial {
            return std::fs::read(&path).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let there: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    panic!("the browser never saved {name}: {there:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_reviewers_approve_in_a_browser_and_the_analyst_downloads_the_release() {
    let Some(d) = driver() else { return };
    if !docker_available() {
        return;
    }
    let (app, ana, _data) = crate::sandbox::small_world_on(Engine::Sqlite, |_| {}).await;
    let (id, identity) = egress_in_review(&app, &ana).await;
    let saved_to = TempDir::new("web-downloads");
    let c = downloading_browser(&d, "en", saved_to.path()).await;
    let ok = async {
        let page = format!("{}/ui/applications/{id}?lang=en", app.url);
        for reviewer in ["rev1", "rev2"] {
            sign_in(&c, &app.url, &app.token(reviewer, "reviewer")).await;
            approve(&c, &page, &format!("{reviewer}: aggregates only")).await;
            assert_eq!(css_text(&c, "p.ok").await, "Your vote was counted: Approve");
            sign_out(&c).await;
        }
        let release = built_release(&app, &id).await;
        let sha = release["package_sha256"].as_str().unwrap().to_owned();

        sign_in(&c, &app.url, &ana).await;
        c.find(Locator::Css("nav a[href='/ui/mine']"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        assert_eq!(css_text(&c, "h1").await, "My applications");
        let listed = css_text(&c, "#my-releases + p + div td.hash").await;
        assert_eq!(listed, sha);
        shoot(&c, "mine-en").await;
        super::accessibility::axe_check(&c, "mine-en").await;
        c.find(Locator::Css(&format!(
            "a[href='/ui/applications/{id}/release']"
        )))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
        let package = saved(saved_to.path(), &format!("{id}.tar.zst.age")).await;
        assert_eq!(gateway::sha256_hex(&package), sha);
        assert_eq!(decrypt(&package, &identity), ["counts.csv"]);

        c.goto(&format!("{}/ui/applications/{id}?lang=en", app.url))
            .await
            .unwrap();
        assert_eq!(css_text(&c, "#release-sha256").await, sha);
        shoot(&c, "application-release-en").await;
        super::accessibility::axe_check(&c, "application-release-en").await;
        c.goto(&format!("{}/ui/mine?lang=ja", app.url))
            .await
            .unwrap();
        assert_eq!(css_text(&c, "h1").await, "自分の申請");
        shoot(&c, "mine-ja").await;
        super::accessibility::axe_check(&c, "mine-ja").await;
        // At 200 % zoom only the wide tables scroll sideways, each in its own region.
        c.set_window_size(640, 1000).await.unwrap();
        c.refresh().await.unwrap();
        let fits = fits_width(&c).await;
        shoot(&c, "mine-zoom-ja").await;
        assert!(fits, "/ui/mine scrolls sideways at 640 px");
    };
    closing(c.clone(), ok).await;
    let events = app.audit_events(&id).await;
    let downloads: Vec<_> = events
        .iter()
        .filter(|e| e["action"] == "release.download")
        .map(|e| e["actor"].as_str().unwrap())
        .collect();
    assert_eq!(downloads, ["ana"]);
    assert!(actions(&events).contains(&"release.built"));
    drop(d);
    app.stop().await;
}
