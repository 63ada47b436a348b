//! The pages' accessibility in the real browser: axe-core (from npm, pinned in
//! `deploy/dev/axe/`, installed by `deploy/dev/lib.sh`'s `setup_axe`) run on every page in both
//! languages, with no serious or critical violation allowed; the pages used by keyboard alone
//! (the skip link, a vote cast with Tab, Space and Enter, a visible focus on every stop); and
//! the pages at 200 % zoom, where nothing scrolls sideways and no text is clipped.
//!
//! axe is injected through WebDriver's Execute Script, which the pages' Content-Security-Policy
//! (no script at all) does not govern: the test shows both, an inline script refused by the
//! page and the injected engine running.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, Locator};
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::browser::{
    Driver, approve, browser, closing, css_text, driver, screenshots, shoot, sign_in, sign_out,
};
use super::images::egress_with_image;
use crate::datasets::{INSTITUTION, example_dmp, register_approved};
use crate::support::{Engine, TempDir, TestApp, docker_available, required};

/// The rules axe runs: WCAG 2.0, 2.1 and 2.2 at levels A and AA, and axe's best practices.
const AXE_TAGS: [&str; 7] = [
    "wcag2a",
    "wcag2aa",
    "wcag21a",
    "wcag21aa",
    "wcag22a",
    "wcag22aa",
    "best-practice",
];

/// axe-core's browser build, as `setup_axe` installs it; `None` (the check skipped, with a
/// note) where it is not installed, unless the browser tests are required.
fn axe_source() -> Option<&'static str> {
    static SOURCE: OnceLock<Option<String>> = OnceLock::new();
    SOURCE
        .get_or_init(|| {
            let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../deploy/dev/axe/node_modules/axe-core/axe.min.js");
            match std::fs::read_to_string(&path) {
                Ok(s) => Some(s),
                Err(e) => {
                    assert!(
                        !required("BROWSER"),
                        "VRE_TEST_REQUIRE_BROWSER=1 but axe-core is not installed at {} ({e}): \
                         run deploy/dev/lib.sh's setup_axe",
                        path.display()
                    );
                    eprintln!(
                        "no axe-core here: skipping accessibility checks (test.sh installs it)"
                    );
                    None
                }
            }
        })
        .as_deref()
}

/// Runs axe-core on the page the browser shows and fails, listing every serious or critical
/// violation (its rule, impact, help and the elements), if there is any. The whole result
/// goes to `target/web-screenshots/axe-<name>.json`.
pub(crate) async fn axe_check(c: &Client, name: &str) {
    let serious = axe_serious(c, name).await;
    assert!(
        serious.is_empty(),
        "axe finds serious or critical violations on {name} ({}):\n{}",
        c.current_url().await.unwrap(),
        serious.join("\n")
    );
}

/// The serious and critical violations axe-core finds on the page, one line each: the
/// rule's id, the impact, its help and the elements (none where axe is not installed).
async fn axe_serious(c: &Client, name: &str) -> Vec<String> {
    let Some(source) = axe_source() else {
        return Vec::new();
    };
    let loaded = c
        .execute(&format!("{source}\n;return typeof window.axe;"), vec![])
        .await
        .unwrap();
    assert_eq!(loaded, json!("object"), "axe-core did not load on {name}");
    let result = c
        .execute_async(
            "const done = arguments[arguments.length - 1];
             window.axe
               .run(document, { runOnly: { type: 'tag', values: arguments[0] } })
               .then(r => done(JSON.stringify(r)), e => done(JSON.stringify({ error: String(e) })));",
            vec![json!(AXE_TAGS)],
        )
        .await
        .unwrap();
    let result: Value = serde_json::from_str(result.as_str().unwrap()).unwrap();
    std::fs::write(
        screenshots().join(format!("axe-{name}.json")),
        serde_json::to_vec_pretty(&result).unwrap(),
    )
    .unwrap();
    assert!(result["error"].is_null(), "axe failed on {name}: {result}");
    result["violations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
        .map(|v| {
            let targets: Vec<String> = v["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n["target"].to_string())
                .collect();
            format!(
                "{} ({}): {} at {}",
                v["id"].as_str().unwrap(),
                v["impact"].as_str().unwrap(),
                v["help"].as_str().unwrap(),
                targets.join(", ")
            )
        })
        .collect()
}

/// Opens `path` (with or without a query) in `lang`, and waits for its heading.
async fn visit(c: &Client, base: &str, path: &str, lang: &str) {
    let sep = if path.contains('?') { '&' } else { '?' };
    c.goto(&format!("{base}{path}{sep}lang={lang}"))
        .await
        .unwrap();
    c.wait().for_element(Locator::Css("h1")).await.unwrap();
}

/// The page's policy refuses an inline script, while a script sent through WebDriver runs:
/// injecting axe that way tests the page as it is served.
async fn csp_refuses_inline_script_but_not_webdriver(c: &Client) {
    let ran = c
        .execute(
            "window.__inline = 'no';
             const s = document.createElement('script');
             s.textContent = 'window.__inline = \"yes\";';
             document.body.appendChild(s);
             return window.__inline;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(ran, json!("no"), "the page ran an inline script");
}

/// Presses and releases `key`.
async fn press(c: &Client, key: Key) {
    let k: char = key.into();
    c.perform_actions(
        KeyActions::new("keyboard".into())
            .then(KeyAction::Down { value: k })
            .then(KeyAction::Up { value: k }),
    )
    .await
    .unwrap();
}

/// What has the focus: its id, tag, classes and type, and the outline it shows.
async fn focused(c: &Client) -> Value {
    c.execute(
        "const e = document.activeElement;
         const s = getComputedStyle(e);
         const r = e.getBoundingClientRect();
         let behind = 'rgb(255, 255, 255)';
         for (let p = e.parentElement; p; p = p.parentElement) {
           const b = getComputedStyle(p).backgroundColor;
           if (b !== 'rgba(0, 0, 0, 0)' && b !== 'transparent') { behind = b; break; }
         }
         return { id: e.id, tag: e.tagName.toLowerCase(), class: e.className, type: e.type || '',
                  outline: s.outlineStyle, outlineWidth: parseFloat(s.outlineWidth),
                  outlineColor: s.outlineColor, behind,
                  focusVisible: e.matches(':focus-visible'),
                  onScreen: r.width > 0 && r.height > 0 && r.left >= 0 && r.top >= 0 };",
        vec![],
    )
    .await
    .unwrap()
}

/// The relative luminance of a computed `rgb(r, g, b)` colour, as WCAG defines it.
fn luminance(css: &str) -> f64 {
    let inner = css
        .trim_start_matches("rgba(")
        .trim_start_matches("rgb(")
        .trim_end_matches(')');
    let c: Vec<f64> = inner
        .split(',')
        .take(3)
        .map(|v| {
            let v = v.trim().parse::<f64>().unwrap() / 255.0;
            if v <= 0.04045 {
                v / 12.92
            } else {
                ((v + 0.055) / 1.055).powf(2.4)
            }
        })
        .collect();
    0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]
}

/// The contrast ratio of two computed colours.
fn contrast(a: &str, b: &str) -> f64 {
    let (la, lb) = (luminance(a), luminance(b));
    (la.max(lb) + 0.05) / (la.min(lb) + 0.05)
}

/// The focus is shown: the element matches `:focus-visible`, and its computed outline is
/// solid, at least 2 px wide, and of at least 3:1 against what is behind it (WCAG 2.2's
/// non-text contrast and focus appearance).
#[track_caller]
fn assert_focus_shown(f: &Value) {
    assert_eq!(f["focusVisible"], true, "{f}");
    assert_eq!(f["outline"], "solid", "no visible focus on {f}");
    assert!(f["outlineWidth"].as_f64().unwrap() >= 2.0, "{f}");
    let ratio = contrast(
        f["outlineColor"].as_str().unwrap(),
        f["behind"].as_str().unwrap(),
    );
    assert!(ratio >= 3.0, "a focus of contrast {ratio:.2}:1 on {f}");
    assert_eq!(f["onScreen"], true, "{f}");
}

/// Why an address does not parse (the `url` crate's error, as reqwest re-exports its `Url`).
type UrlError = <reqwest::Url as std::str::FromStr>::Err;

/// Presses Tab; what then has the focus, which must show it.
async fn tab(c: &Client) -> Value {
    press(c, Key::Tab).await;
    let f = focused(c).await;
    assert_focus_shown(&f);
    f
}

/// A command of chromedriver's own: one Chrome DevTools Protocol command.
#[derive(Debug)]
struct Cdp(&'static str, Value);

impl WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base_url: &reqwest::Url,
        session_id: Option<&str>,
    ) -> Result<reqwest::Url, UrlError> {
        base_url.join(&format!(
            "session/{}/goog/cdp/execute",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &reqwest::Url) -> (axum::http::Method, Option<String>) {
        (
            axum::http::Method::POST,
            Some(json!({"cmd": self.0, "params": self.1}).to_string()),
        )
    }
}

/// What a 1280 × 1000 px window shows at 200 % zoom: Chromium zooms by making each CSS pixel
/// two device pixels, so the page is laid out (media queries included) in a viewport of 640 ×
/// 500 CSS px with a device pixel ratio of 2. The same metrics are emulated here through
/// DevTools, since a headless browser has no zoom control: the layout is the zoomed one, and
/// the screenshots are the 1280 px the person sees.
async fn zoom_200(c: &Client) {
    c.issue_cmd(Cdp(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 640, "height": 500, "deviceScaleFactor": 2, "mobile": false}),
    ))
    .await
    .unwrap();
}

/// Nothing on the page scrolls sideways or is cut off: the page is no wider than the viewport,
/// no element but those inside a region that scrolls by itself (a wide table's, reachable by
/// keyboard) reaches past its edges or lets its text run out of its box, and no element that
/// hides its overflow has more text than it shows.
async fn assert_fits(c: &Client, page: &str) {
    let found = c
        .execute(
            "const vw = document.documentElement.clientWidth;
             const bad = [];
             const name = e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '')
                 + (e.className ? '.' + String(e.className).split(' ').join('.') : '');
             for (const e of document.body.querySelectorAll('*')) {
               const s = getComputedStyle(e);
               if (s.display === 'none' || s.visibility === 'hidden') continue;
               if (e.classList.contains('skip')) continue;
               const inWide = e.parentElement && e.parentElement.closest('.wide');
               const r = e.getBoundingClientRect();
               if (!inWide && r.width > 0 && (r.right > vw + 1 || r.left < -1)) {
                 bad.push(name(e) + ' reaches past the viewport (' + r.left + '..' + r.right + ')');
               }
               const scrolls = v => v === 'auto' || v === 'scroll';
               if (!inWide && !scrolls(s.overflowX) && e.scrollWidth > e.clientWidth + 1
                   && e.clientWidth > 0) {
                 bad.push(name(e) + ' overflows its box (' + e.scrollWidth + ' > ' + e.clientWidth + ')');
               }
               const hides = v => v === 'hidden' || v === 'clip';
               if ((hides(s.overflowX) && e.scrollWidth > e.clientWidth + 1)
                   || (hides(s.overflowY) && e.scrollHeight > e.clientHeight + 1)) {
                 bad.push(name(e) + ' clips its content');
               }
             }
             return { innerWidth: window.innerWidth, ratio: window.devicePixelRatio,
                      scrolls: document.documentElement.scrollWidth > vw, bad };",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(found["innerWidth"], 640, "{page}: not zoomed: {found}");
    assert_eq!(found["ratio"], 2, "{page}: not zoomed: {found}");
    assert_eq!(found["scrolls"], false, "{page} scrolls sideways: {found}");
    assert_eq!(found["bad"], json!([]), "{page}: {found}");
}

/// A browser's driver and a gateway whose catalog lists a dataset, with ana's egress
/// application of a flagged table and an image (its id); `None` where there is no browser or
/// engine to test with.
async fn world() -> Option<(Driver, TestApp, String, TempDir)> {
    let d = driver()?;
    if !docker_available() {
        return None;
    }
    let (app, ana, data) = crate::sandbox::small_world_on(Engine::Sqlite, |_| {}).await;
    let (id, _) = egress_with_image(&app, &ana).await;
    let steward = app.token_for("hana", "steward", Some(INSTITUTION));
    register_approved(&app, &steward, &example_dmp(INSTITUTION)).await;
    Some((d, app, id, data))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axe_finds_no_serious_violation_on_any_page_in_either_language() {
    let Some((d, app, id, _data)) = world().await else {
        return;
    };
    let access = app.application("access", "p1", "ana", "analyst").await;

    let c = browser(&d, "en").await;
    closing(c.clone(), async {
        let base = app.url.as_str();
        visit(&c, base, "/ui/sign-in", "en").await;
        csp_refuses_inline_script_but_not_webdriver(&c).await;
        // The check sees what it must: a field without a label, an image without a text.
        if axe_source().is_some() {
            c.execute(
                "document.querySelector('main').insertAdjacentHTML('beforeend', \
                 '<input name=\"x\"><img src=\"/ui/static/style.css\">');",
                vec![],
            )
            .await
            .unwrap();
            let found = axe_serious(&c, "control-en").await;
            for rule in ["label (critical)", "image-alt (critical)"] {
                assert!(
                    found.iter().any(|v| v.starts_with(rule)),
                    "{rule} not in {found:?}"
                );
            }
        }
        for lang in ["en", "ja"] {
            for (path, name) in [
                ("/ui/sign-in", "sign-in"),
                ("/ui/catalog", "catalog"),
                ("/ui/no/such/page", "not-found"),
            ] {
                visit(&c, base, path, lang).await;
                axe_check(&c, &format!("{name}-{lang}")).await;
            }
        }
        sign_in(&c, base, &app.token("rev", "reviewer")).await;
        for lang in ["en", "ja"] {
            for (path, name) in [
                ("/ui/queue".to_owned(), "queue"),
                ("/ui/queue?kind=egress&state=&project=p1".into(), "queue-filtered"),
                (format!("/ui/applications/{id}"), "application-egress"),
                (format!("/ui/applications/{access}"), "application-access"),
                (
                    format!("/ui/applications/{id}/preview?path=counts.csv"),
                    "preview-table",
                ),
                (
                    format!("/ui/applications/{id}/preview?path=plot.png"),
                    "preview-image",
                ),
                ("/ui/catalog".into(), "catalog-signed-in"),
                ("/ui/queue?kind=nonsense".into(), "error-bad-filter"),
            ] {
                visit(&c, base, &path, lang).await;
                axe_check(&c, &format!("{name}-{lang}")).await;
            }
        }
        // The filtered queue lists the application; the preview flags its cell.
        visit(&c, base, "/ui/queue?kind=egress&project=p1", "en").await;
        c.find(Locator::Css(&format!("a[href='/ui/applications/{id}']")))
            .await
            .unwrap();
        visit(
            &c,
            base,
            &format!("/ui/applications/{id}/preview?path=counts.csv"),
            "en",
        )
        .await;
        assert_eq!(css_text(&c, "td.flag-review").await, "[to review] 0");

        // The image is shown, inline, from the gateway.
        visit(
            &c,
            base,
            &format!("/ui/applications/{id}/preview?path=plot.png"),
            "en",
        )
        .await;
        let mut shown = json!(null);
        for _ in 0..100 {
            shown = c
                .execute(
                    "const i = document.querySelector('main img');
                     return i && i.complete ? { w: i.naturalWidth, h: i.naturalHeight, alt: i.alt } : null;",
                    vec![],
                )
                .await
                .unwrap();
            if !shown.is_null() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            shown,
            json!({"w": 32, "h": 16, "alt": "The image in plot.png"})
        );
        shoot(&c, "preview-image-en").await;

        // A refusal on the application page: the requester's own vote.
        sign_out(&c).await;
        sign_in(&c, base, &app.token("ana", "analyst,reviewer")).await;
        for lang in ["en", "ja"] {
            approve(
                &c,
                &format!("{base}/ui/applications/{id}?lang={lang}"),
                "mine",
            )
            .await;
            c.wait()
                .for_element(Locator::Css("p.problem"))
                .await
                .unwrap();
            axe_check(&c, &format!("vote-refused-{lang}")).await;
        }
    })
    .await;
    drop(d);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviewer_votes_by_keyboard_alone_and_the_pages_reflow_at_200_percent_zoom() {
    let Some((d, app, id, _data)) = world().await else {
        return;
    };
    let comment = "Checked by keyboard: the zero is structural.";
    // A name longer than the zoomed page is wide, without a space to break it at.
    let long_name = "results_of_the_second_analysis_by_region_age_group_and_sex_in_one_table.csv";
    let long = super::review::egress_of(
        &app,
        &app.token("ana", "analyst"),
        &format!("printf 'region,count\\nKanto,40\\n' > /vre/output/{long_name}"),
        &[long_name],
    )
    .await;

    let c = browser(&d, "en").await;
    closing(c.clone(), async {
        let base = app.url.as_str();
        // Zoomed first, signed out: the sign-in page and the catalog.
        zoom_200(&c).await;
        for lang in ["en", "ja"] {
            for (path, name) in [("/ui/sign-in", "sign-in"), ("/ui/catalog", "catalog")] {
                visit(&c, base, path, lang).await;
                shoot(&c, &format!("zoom200-{name}-{lang}")).await;
                assert_fits(&c, &format!("{name}-{lang}")).await;
            }
        }
        sign_in(&c, base, &app.token("rev", "reviewer")).await;
        for lang in ["en", "ja"] {
            for (path, name) in [
                ("/ui/queue?kind=egress".to_owned(), "queue"),
                (format!("/ui/applications/{id}"), "application"),
                (
                    format!("/ui/applications/{id}/preview?path=counts.csv"),
                    "preview-table",
                ),
                (
                    format!("/ui/applications/{id}/preview?path=plot.png"),
                    "preview-image",
                ),
                (format!("/ui/applications/{long}"), "application-long-name"),
                (
                    format!("/ui/applications/{long}/preview?path={long_name}"),
                    "preview-long-name",
                ),
            ] {
                visit(&c, base, &path, lang).await;
                shoot(&c, &format!("zoom200-{name}-{lang}")).await;
                assert_fits(&c, &format!("{name}-{lang}")).await;
            }
        }
        c.issue_cmd(Cdp("Emulation.clearDeviceMetricsOverride", json!({})))
            .await
            .unwrap();

        // The skip link is the first stop, and takes the focus to the page's content.
        visit(&c, base, &format!("/ui/applications/{id}"), "en").await;
        let f = tab(&c).await;
        assert_eq!(
            (f["tag"].as_str(), f["class"].as_str()),
            (Some("a"), Some("skip")),
            "{f}"
        );
        shoot(&c, "keyboard-skip-link-en").await;
        press(&c, Key::Enter).await;
        assert_eq!(focused(&c).await["id"], "main");
        assert_eq!(c.current_url().await.unwrap().fragment(), Some("main"));

        // Tab from the content to the vote, every stop showing its focus.
        let mut stops = Vec::new();
        loop {
            let f = tab(&c).await;
            stops.push(f.clone());
            if f["id"] == "choice-approve" {
                break;
            }
            assert!(
                stops.len() < 60,
                "the vote is not reached by Tab: {stops:?}"
            );
        }
        // Space chooses, the comment is typed, Enter on the button sends.
        press(&c, Key::Space).await;
        let checked = c
            .execute(
                "return document.getElementById('choice-approve').checked;",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(checked, json!(true));
        let f = tab(&c).await;
        assert_eq!(f["id"], "comment", "{f}");
        c.active_element()
            .await
            .unwrap()
            .send_keys(comment)
            .await
            .unwrap();
        let f = tab(&c).await;
        assert_eq!(
            (f["tag"].as_str(), f["type"].as_str()),
            (Some("button"), Some("submit")),
            "{f}"
        );
        shoot(&c, "keyboard-vote-en").await;
        press(&c, Key::Enter).await;
        assert_eq!(css_text(&c, "p.ok").await, "Your vote was counted: Approve");
        axe_check(&c, "voted-en").await;
    })
    .await;
    let (st, a) = app
        .get(
            &format!("/api/v1/applications/{id}"),
            Some(&app.token("rev", "reviewer")),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(a["decisions"][0]["reviewer"], "rev", "{a}");
    assert_eq!(a["decisions"][0]["decision"], "approve", "{a}");
    assert_eq!(a["decisions"][0]["comment"], comment, "{a}");
    drop(d);
    app.stop().await;
}
