//! No door hands quarantined bytes back to the requester. Files of a sandbox's output folder are
//! asked for (a text that holds a unique marker; a table in a subfolder with it in a cell and in
//! two column names the checks flag, a small count's and an identifier's; a file that holds
//! nothing but the marker); then every GET route of the live OpenAPI document is
//! called, its parameters filled with the egress application, the sandbox, the run that wrote
//! the files, the project and the files' paths, with the requester's token and with a project
//! colleague's: the marker is in no answer (body or headers), whatever its status. A reviewer's
//! preview does show it, so the marker was reachable all along. The sweep runs twice: while the
//! application waits for its reviewers, and once its release is built (the package is encrypted
//! to the requester, so its bytes hold no marker either).
//!
//! The run's command builds the marker from two halves at run time: the command itself is
//! recorded (in the run, in the audit log), so it must not spell the marker.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::sandbox::{small_world_on, start_run};
use crate::support::{Engine, TestApp, docker_available, engines};

/// The files the run writes, relative to `/vre/output`.
const FILES: [&str; 3] = ["secret.txt", "sub/deep/table.csv", "only.txt"];

/// A marker nobody else writes: two halves the run's command joins.
fn marker_halves() -> (String, String) {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    (
        "qzmark".to_owned(),
        format!("{nanos:x}{}", std::process::id()),
    )
}

/// The ids a route's `{id}` may stand for.
struct Objects {
    project: String,
    sandbox: String,
    run: String,
    application: String,
    dataset: String,
}

/// The concrete requests for one GET operation of the document: its path with every parameter
/// filled (one request per quarantined file where a `path` parameter takes one).
fn requests_for(path: &str, op: &Value, o: &Objects) -> Vec<String> {
    let mut url = path.to_owned();
    if url.contains("{id}") {
        let id = if path.starts_with("/api/v1/projects/") {
            &o.project
        } else if path.starts_with("/api/v1/sandboxes/") {
            &o.sandbox
        } else if path.starts_with("/api/v1/runs/") {
            &o.run
        } else if path.starts_with("/api/v1/applications/") {
            &o.application
        } else if path.starts_with("/api/v1/datasets/") {
            &o.dataset
        } else {
            panic!("{path}: which object is its {{id}}?")
        };
        url = url.replace("{id}", id);
    }
    // No attachment was made: the route answers 404, which still must not carry the marker.
    url = url.replace("{attachment}", "att-none");
    assert!(
        !url.contains('{'),
        "{path}: a path parameter this test does not know how to fill"
    );
    let mut fixed: Vec<String> = Vec::new();
    let mut takes_path = false;
    for p in op["parameters"].as_array().into_iter().flatten() {
        if p["in"] != "query" {
            continue;
        }
        let name = p["name"].as_str().unwrap();
        let value = match name {
            "path" => {
                takes_path = true;
                continue;
            }
            "round" => "1".to_owned(),
            // A followed log waits for more; the whole log is read without it.
            "follow" => "false".to_owned(),
            "project" => o.project.clone(),
            "subject" => o.application.clone(),
            "limit" => "1000".to_owned(),
            _ if p["required"] == true => {
                panic!("{path}: a required query parameter {name} this test does not fill")
            }
            _ => continue,
        };
        fixed.push(format!("{name}={value}"));
    }
    let with = |extra: Option<String>| {
        let q: Vec<String> = fixed.iter().cloned().chain(extra).collect();
        if q.is_empty() {
            url.clone()
        } else {
            format!("{url}?{}", q.join("&"))
        }
    };
    if takes_path {
        FILES
            .iter()
            .map(|f| with(Some(format!("path={f}"))))
            .collect()
    } else {
        vec![with(None)]
    }
}

/// Calls every GET operation of the live document as each caller; returns what each answered
/// where the marker shows, and how many requests were made.
async fn sweep(
    app: &TestApp,
    callers: &[(&str, &str)],
    o: &Objects,
    marker: &str,
) -> (Vec<String>, usize) {
    let (st, doc) = app.get("/openapi.json", None).await;
    assert_eq!(st, StatusCode::OK);
    let mut urls: Vec<String> = vec!["/openapi.json".into(), "/.well-known/jwks.json".into()];
    for (path, ops) in doc["paths"].as_object().unwrap() {
        if let Some(op) = ops.get("get") {
            urls.extend(requests_for(path, op, o));
        }
    }
    for (route, query) in [
        ("/api/v1/runs/{run}/logs?", "follow=false"),
        ("/api/v1/audit?", "subject="),
        (
            "/api/v1/applications/{app}/egress/preview?",
            "path=sub/deep/table.csv",
        ),
        ("/api/v1/applications/{app}/file?", "path=only.txt"),
        ("/api/v1/applications/{app}/release", ""),
    ] {
        let route = route
            .replace("{run}", &o.run)
            .replace("{app}", &o.application);
        assert!(
            urls.iter()
                .any(|u| u.starts_with(&route) && u.contains(query)),
            "the sweep misses {route}{query}: {urls:?}"
        );
    }
    let mut leaks = Vec::new();
    let mut n = 0;
    for (who, token) in callers {
        for url in &urls {
            n += 1;
            let resp = app
                .http
                .get(format!("{}{url}", app.url))
                .bearer_auth(token)
                .timeout(Duration::from_secs(60))
                .send()
                .await
                .unwrap_or_else(|e| panic!("GET {url} as {who}: {e}"));
            let status = resp.status();
            let headers = format!("{:?}", resp.headers());
            let body = resp.bytes().await.unwrap();
            if headers.contains(marker) || contains(&body, marker.as_bytes()) {
                leaks.push(format!(
                    "GET {url} as {who} ({status}): {}",
                    String::from_utf8_lossy(&body[..body.len().min(2000)])
                ));
            }
        }
    }
    (leaks, n)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_route_hands_quarantined_bytes_back_to_the_requester() {
    if !docker_available() {
        return;
    }
    for engine in engines() {
        boundary_on(engine).await;
    }
}

async fn boundary_on(engine: Engine) {
    let (app, ana, _data) = small_world_on(engine, |_| {}).await;
    let admin = app.token("root", "admin");
    let (st, b) = app
        .post(
            "/api/v1/projects/p1/members",
            Some(&admin),
            &json!({"subject": "cole", "role": "analyst"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let cole = app.token("cole", "analyst");
    let (_identity, recipient) = gateway::release::new_identity();
    let (st, b) = app
        .request(
            reqwest::Method::PUT,
            "/api/v1/keys/me",
            Some(&ana),
            Some(&json!({"recipient": recipient})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let sandbox = app.new_sandbox(&ana, "p1").await;

    let (a, b) = marker_halves();
    let marker = format!("{a}{b}");
    let script = format!(
        "cd /vre/output && a={a} && b={b} && printf 'notes: %s%s\\n' \"$a\" \"$b\" > secret.txt \
         && mkdir -p sub/deep && printf 'group,label,n_%s%s,%s%s_id\\nA,%s%s,3,x1\\n' \"$a\" \"$b\" \"$a\" \"$b\" \"$a\" \"$b\" > sub/deep/table.csv \
         && printf '%s%s' \"$a\" \"$b\" > only.txt"
    );
    assert!(!script.contains(&marker));
    let run = start_run(&app, &ana, &sandbox, &["sh", "-c", &script], Some(30)).await;
    let done = app.run_reaching(&ana, &run, "finished").await;
    assert_eq!(done["exit_code"], 0, "{done}");

    // Without exceptions the checks refuse the table (an identifier's column); the refusal says
    // why without quoting it.
    let (st, r) = app
        .post(
            "/api/v1/egress",
            Some(&ana),
            &json!({"sandbox": sandbox, "paths": ["secret.txt", "sub", "only.txt"],
                    "justification": "labels for the paper"}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
    assert!(
        !r.to_string().contains(&marker),
        "the refusal carries the marker: {r}"
    );
    let exceptions: serde_json::Map<String, Value> = FILES
        .iter()
        .map(|f| (f.to_string(), json!("a label, not a person")))
        .collect();
    let (st, r) = app
        .post(
            "/api/v1/egress",
            Some(&ana),
            &json!({"sandbox": sandbox, "paths": ["secret.txt", "sub", "only.txt"],
                    "justification": "labels for the paper", "exceptions": exceptions}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{r}");
    assert!(
        !r.to_string().contains(&marker),
        "the receipt carries the marker: {r}"
    );
    let application = r["id"].as_str().unwrap().to_owned();
    let mut paths: Vec<&str> = r["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    paths.sort();
    let mut want = FILES.to_vec();
    want.sort();
    assert_eq!(paths, want, "{r}");

    // A reviewer from outside the project sees the marker in every file's preview.
    let rev = app.token("rev1", "reviewer");
    for f in FILES {
        let (st, p) = app
            .get(
                &format!("/api/v1/applications/{application}/egress/preview?path={f}"),
                Some(&rev),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{f}: {p}");
        assert!(
            p.to_string().contains(&marker),
            "the preview of {f} does not show the marker: {p}"
        );
    }

    // A dataset, so its routes are read too (they hold nothing of the quarantine).
    let steward = app.token_for("st1", "steward", Some(crate::datasets::INSTITUTION));
    let dmp = crate::datasets::example_dmp(crate::datasets::INSTITUTION);
    let (dataset, _) = crate::datasets::register(&app, &steward, &dmp).await;
    let o = Objects {
        project: "p1".into(),
        sandbox,
        run,
        application: application.clone(),
        dataset,
    };
    // The sweep itself finds the marker where it is: a reviewer's sweep shows it in exactly
    // the three previews.
    let (seen, _) = sweep(&app, &[("a reviewer", rev.as_str())], &o, &marker).await;
    assert_eq!(seen.len(), FILES.len(), "{seen:#?}");
    assert!(
        seen.iter().all(|s| s.contains("/egress/preview?")),
        "{seen:#?}"
    );
    let callers = [
        ("the requester", ana.as_str()),
        ("a colleague", cole.as_str()),
    ];
    let (leaks, n) = sweep(&app, &callers, &o, &marker).await;
    assert!(
        leaks.is_empty(),
        "{engine:?}: quarantined bytes handed back while in review ({} of {n} requests):\n{}",
        leaks.len(),
        leaks.join("\n")
    );

    // Approved and released: the package is the requester's, encrypted to their recipient.
    for rev in ["rev1", "rev2"] {
        let (st, b) = app.vote(&application, rev, "approve").await;
        assert_eq!(st, StatusCode::OK, "{b}");
    }
    let mut state = Value::Null;
    for _ in 0..600 {
        let (st, b) = app
            .get(&format!("/api/v1/applications/{application}"), Some(&rev))
            .await;
        assert_eq!(st, StatusCode::OK, "{b}");
        state = b["state"].clone();
        if state == "released" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(state, "released");
    let (leaks, n) = sweep(&app, &callers, &o, &marker).await;
    assert!(
        leaks.is_empty(),
        "{engine:?}: quarantined bytes handed back once released ({} of {n} requests):\n{}",
        leaks.len(),
        leaks.join("\n")
    );
    app.stop().await;
}
