//! Egress end to end on a real engine: files written by runs are requested, copied into
//! quarantine and checked, previewed by reviewers (never the requester), approved by a quorum
//! and released, encrypted to the requester's registered recipient; and the invariants around
//! it: holds on the sandbox, refusals per file, one release per quorum, a quarantined file
//! altered on disk.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::sandbox::{small_world_on, start_run};
use crate::support::{Engine, TestApp, actions, assert_refused, docker_available, engines};

/// A project p1 with ana (analyst, who registered a recipient), a sandbox whose output folder
/// holds what `script` wrote, and ana's identity.
struct Scene {
    app: TestApp,
    ana: String,
    sandbox: String,
    identity: String,
    _data: crate::support::TempDir,
}

async fn scene(script: &str) -> Scene {
    scene_on(Engine::Sqlite, script).await
}

async fn scene_on(engine: Engine, script: &str) -> Scene {
    let (app, ana, data) = small_world_on(engine, |_| {}).await;
    let (identity, recipient) = gateway::release::new_identity();
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
    write_outputs(&app, &ana, &sandbox, script).await;
    Scene {
        app,
        ana,
        sandbox,
        identity,
        _data: data,
    }
}

async fn write_outputs(app: &TestApp, ana: &str, sandbox: &str, script: &str) {
    let id = start_run(app, ana, sandbox, &["sh", "-c", script], Some(30)).await;
    let done = app.run_reaching(ana, &id, "finished").await;
    assert_eq!(done["exit_code"], 0, "{done}");
}

/// A clean aggregate table, a short text and a folder with a nested table.
const CLEAN: &str = "cd /vre/output && printf 'group,count\\nA,25\\nB,40\\n' > counts.csv \
    && printf 'method notes\\n' > notes.txt && mkdir -p tables \
    && printf 'site,n\\nX,31\\nY,12\\n' > tables/sites.csv";

async fn request(s: &Scene, paths: &[&str], exceptions: Value) -> (StatusCode, Value) {
    s.app
        .post(
            "/api/v1/egress",
            Some(&s.ana),
            &json!({"sandbox": s.sandbox, "paths": paths, "justification": "aggregates for the paper", "exceptions": exceptions}),
        )
        .await
}

/// Waits until the application is in `state` (the release builder works in the background).
async fn app_reaching(app: &TestApp, id: &str, state: &str) -> Value {
    let rev = app.token("rev-watch", "reviewer");
    for _ in 0..600 {
        let (st, b) = app
            .get(&format!("/api/v1/applications/{id}/egress"), Some(&rev))
            .await;
        assert_eq!(st, StatusCode::OK, "{b}");
        if b["application"]["state"] == state
            || b["release"]["state"] == "refused" && state == "refused"
        {
            return b;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{id} never reached {state}");
}

fn has_docker() -> bool {
    if !docker_available() {
        eprintln!("skipping: no Docker engine");
        return false;
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_leave_only_through_a_checked_approved_encrypted_release() {
    if !has_docker() {
        return;
    }
    for engine in engines() {
        end_to_end(scene_on(engine, CLEAN).await).await;
    }
}

async fn end_to_end(s: Scene) {
    let (st, r) = request(&s, &["counts.csv", "notes.txt", "tables"], json!({})).await;
    assert_eq!(st, StatusCode::CREATED, "{r}");
    let id = r["id"].as_str().unwrap().to_owned();
    let paths: Vec<&str> = r["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["counts.csv", "notes.txt", "tables/sites.csv"]);
    let counts = &r["files"][0];
    assert_eq!(counts["content_type"], "csv");
    assert_eq!(counts["outcome"], "pass", "{counts}");
    assert_eq!(
        counts["sha256"],
        gateway::sha256_hex(b"group,count\nA,25\nB,40\n")
    );
    assert_eq!(
        r["files"][1]["outcome"], "review",
        "free text is read by a person"
    );

    // The requester reads the metadata, never the bytes.
    let (st, b) = s
        .app
        .get(
            &format!("/api/v1/applications/{id}/egress/preview?path=counts.csv"),
            Some(&s.ana),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{b}");
    // A reviewer from outside the project previews it; the read is audited.
    let rev = s.app.token("rev1", "reviewer");
    let (st, p) = s
        .app
        .get(
            &format!("/api/v1/applications/{id}/egress/preview?path=counts.csv"),
            Some(&rev),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{p}");
    assert_eq!(p["kind"], "table");
    assert_eq!(p["rows"][1][1]["text"], "25");
    let events = s.app.audit_events(&id).await;
    assert!(actions(&events).contains(&"content.read"), "{events:?}");

    // One approval is not the quorum of two; the second builds the release.
    let (_, b) = s.app.vote(&id, "rev1", "approve").await;
    assert_eq!(b["state"], "in_review", "{b}");
    let (st, b) = s
        .app
        .get(&format!("/api/v1/applications/{id}/release"), Some(&s.ana))
        .await;
    assert_refused(st, &b, StatusCode::NOT_FOUND, "not_found");
    let (_, b) = s.app.vote(&id, "rev2", "approve").await;
    assert_eq!(b["state"], "approved", "{b}");
    let detail = app_reaching(&s.app, &id, "released").await;
    assert_eq!(detail["release"]["state"], "built", "{detail}");

    // Nobody but the requester downloads it.
    for who in [
        s.app.token("rev1", "reviewer"),
        s.app.token("bob", "analyst"),
    ] {
        let (st, _) = s
            .app
            .get(&format!("/api/v1/applications/{id}/release"), Some(&who))
            .await;
        assert!(
            st == StatusCode::FORBIDDEN || st == StatusCode::NOT_FOUND,
            "{st}"
        );
    }
    let resp = s
        .app
        .http
        .get(format!("{}/api/v1/applications/{id}/release", s.app.url))
        .bearer_auth(&s.ana)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let announced = resp.headers()["x-content-sha256"]
        .to_str()
        .unwrap()
        .to_owned();
    let package = resp.bytes().await.unwrap();
    assert_eq!(gateway::sha256_hex(&package), announced);
    assert_eq!(detail["release"]["package_sha256"], announced);
    let out = crate::support::TempDir::new("release");
    let dest = out.path().join("unpacked");
    let opened = gateway::release::open(&package[..], &s.identity, &dest).unwrap();
    let names: Vec<&str> = opened.files.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(names, ["counts.csv", "notes.txt", "tables/sites.csv"]);
    assert_eq!(
        std::fs::read(dest.join("files/counts.csv")).unwrap(),
        b"group,count\nA,25\nB,40\n"
    );
    // The provenance names the runs that made the files.
    let crate_text = std::fs::read_to_string(dest.join("ro-crate-metadata.json")).unwrap();
    assert!(crate_text.contains(&s.sandbox), "{crate_text}");
    let events = s.app.audit_events(&id).await;
    let acts = actions(&events);
    for a in [
        "egress.request",
        "release.queued",
        "release.built",
        "release.download",
    ] {
        assert!(acts.contains(&a), "{a} missing from {acts:?}");
    }

    // An operator revokes it; it is no longer downloaded.
    let op = s.app.token("op", "operator");
    let (st, b) = s
        .app
        .post(
            &format!("/api/v1/applications/{id}/release/revoke"),
            Some(&op),
            &json!({"reason": "published too early"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["state"], "revoked");
    assert_eq!(b["downloads"], 1);
    let (st, b) = s
        .app
        .get(&format!("/api/v1/applications/{id}/release"), Some(&s.ana))
        .await;
    assert_refused(st, &b, StatusCode::CONFLICT, "release_revoked");
    s.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_file_blocks_the_request_unless_it_carries_an_exception() {
    if !has_docker() {
        return;
    }
    let s = scene(
        "cd /vre/output && printf 'group,count\\nA,3\\nB,40\\nC,0\\n' > small.csv \
         && printf 'patient_id,age\\nP001,40\\n' > ids.csv",
    )
    .await;
    let (st, b) = request(&s, &["small.csv"], json!({})).await;
    assert_refused(
        st,
        &b,
        StatusCode::UNPROCESSABLE_ENTITY,
        "disclosure_check_failed",
    );
    let message = b["message"].as_str().unwrap();
    assert!(message.contains("small.csv"), "{message}");
    assert!(
        message.contains("row 2"),
        "the location is named: {message}"
    );
    // Nothing was kept, and the refusal is audited against the sandbox.
    let events = s.app.audit_events(&s.sandbox).await;
    assert!(actions(&events).contains(&"egress.refused"), "{events:?}");

    // An exception must name a file of the request.
    let (st, b) = request(&s, &["small.csv"], json!({"other.csv": "why"})).await;
    assert_refused(st, &b, StatusCode::BAD_REQUEST, "bad_exception");

    let (st, r) = request(
        &s,
        &["small.csv"],
        json!({"small.csv": "the 3 is a published national figure"}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{r}");
    let f = &r["files"][0];
    assert_eq!(f["outcome"], "fail");
    assert_eq!(f["exception"], "the 3 is a published national figure");
    let small = f["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["rule"] == "small_count")
        .unwrap_or_else(|| panic!("no small_count finding: {f}"));
    assert_eq!(
        (small["row"].as_u64(), small["column"].as_u64()),
        (Some(2), Some(2))
    );
    // A reviewer's preview marks the cell.
    let id = r["id"].as_str().unwrap();
    let rev = s.app.token("rev1", "reviewer");
    let (st, p) = s
        .app
        .get(
            &format!("/api/v1/applications/{id}/egress/preview?path=small.csv"),
            Some(&rev),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{p}");
    assert_eq!(p["rows"][1][1]["flagged"], "fail", "{p}");

    // Identifier columns fail by name.
    let (st, b) = request(&s, &["ids.csv"], json!({})).await;
    assert_refused(
        st,
        &b,
        StatusCode::UNPROCESSABLE_ENTITY,
        "disclosure_check_failed",
    );
    s.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_devices_and_paths_outside_the_output_folder_are_refused() {
    if !has_docker() {
        return;
    }
    let s = scene(
        "cd /vre/output && mkdir d && printf 'x,y\\n' > d/ok.csv && ln -s /etc/passwd d/link \
         && ln d/ok.csv d/hard && mkfifo d/pipe",
    )
    .await;
    let (st, b) = request(&s, &["d"], json!({})).await;
    assert_refused(st, &b, StatusCode::UNPROCESSABLE_ENTITY, "output_refused");
    let m = b["message"].as_str().unwrap();
    for name in ["d/link", "d/pipe"] {
        assert!(m.contains(name), "{name} is named in: {m}");
    }
    for bad in ["../etc/passwd", "/etc/passwd", "a/../../b"] {
        let (st, b) = request(&s, &[bad], json!({})).await;
        assert_refused(st, &b, StatusCode::BAD_REQUEST, "bad_path");
    }
    let (st, b) = request(&s, &["missing.csv"], json!({})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{b}");
    assert!(
        b["message"].as_str().unwrap().contains("missing.csv"),
        "{b}"
    );
    s.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_needs_a_registered_recipient_and_a_quiet_sandbox() {
    if !has_docker() {
        return;
    }
    let s = scene(CLEAN).await;
    // A colleague with no recipient registered.
    let admin = s.app.token("root", "admin");
    let (st, b) = s
        .app
        .post(
            "/api/v1/projects/p1/members",
            Some(&admin),
            &json!({"subject": "cho", "role": "analyst"}),
        )
        .await;
    assert!(st.is_success(), "{b}");
    let cho = s.app.token("cho", "analyst");
    let (st, b) = s
        .app
        .post(
            "/api/v1/egress",
            Some(&cho),
            &json!({"sandbox": s.sandbox, "paths": ["counts.csv"], "justification": "x"}),
        )
        .await;
    assert_refused(st, &b, StatusCode::CONFLICT, "no_recipient");
    let (st, b) = s
        .app
        .request(
            reqwest::Method::PUT,
            "/api/v1/keys/me",
            Some(&cho),
            Some(&json!({"recipient": "ssh-ed25519 AAAAC3Nza"})),
        )
        .await;
    assert_refused(st, &b, StatusCode::BAD_REQUEST, "bad_recipient");

    // While a run writes the output folder, no copy starts.
    let run = start_run(&s.app, &s.ana, &s.sandbox, &["sleep", "5"], Some(30)).await;
    s.app.run_reaching(&s.ana, &run, "running").await;
    let (st, b) = request(&s, &["counts.csv"], json!({})).await;
    assert_refused(st, &b, StatusCode::CONFLICT, "sandbox_busy");
    s.app.run_reaching(&s.ana, &run, "finished").await;

    // While a copy holds the sandbox, runs wait and the sandbox is not removed.
    let hold = "hold-test";
    {
        let mut conn = s.app.state.db.pool().acquire().await.unwrap();
        gateway::store::egress::insert_hold(
            &mut conn,
            hold,
            &s.sandbox,
            "egress",
            "ana",
            &gateway::time::in_(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    }
    let (st, b) = s
        .app
        .delete(&format!("/api/v1/sandboxes/{}", s.sandbox), Some(&s.ana))
        .await;
    assert_refused(st, &b, StatusCode::CONFLICT, "sandbox_held");
    let waiting = start_run(&s.app, &s.ana, &s.sandbox, &["true"], Some(30)).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (_, r) = s
        .app
        .get(&format!("/api/v1/runs/{waiting}"), Some(&s.ana))
        .await;
    assert_eq!(r["state"], "queued", "a run waits for the hold: {r}");
    {
        let mut conn = s.app.state.db.pool().acquire().await.unwrap();
        gateway::store::egress::release_hold(&mut conn, hold)
            .await
            .unwrap();
    }
    let r = s.app.run_reaching(&s.ana, &waiting, "finished").await;
    assert_eq!(r["exit_code"], 0, "{r}");
    s.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_requests_on_one_sandbox_at_once_both_succeed() {
    if !has_docker() {
        return;
    }
    let s = scene(CLEAN).await;
    let (a, b) = tokio::join!(
        request(&s, &["counts.csv"], json!({})),
        request(&s, &["tables", "notes.txt"], json!({}))
    );
    assert_eq!(a.0, StatusCode::CREATED, "{}", a.1);
    assert_eq!(b.0, StatusCode::CREATED, "{}", b.1);
    assert_eq!(b.1["files"].as_array().unwrap().len(), 2);
    s.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_reviewers_voting_at_once_release_exactly_once() {
    if !has_docker() {
        return;
    }
    for engine in engines() {
        voting_at_once(scene_on(engine, CLEAN).await).await;
    }
}

async fn voting_at_once(s: Scene) {
    let (st, r) = request(&s, &["counts.csv"], json!({})).await;
    assert_eq!(st, StatusCode::CREATED, "{r}");
    let id = r["id"].as_str().unwrap().to_owned();
    let votes = (0..8).map(|i| {
        let app = &s.app;
        let id = id.clone();
        async move { app.vote(&id, &format!("rev{i}"), "approve").await }
    });
    let answers = futures_util::future::join_all(votes).await;
    let ok = answers
        .iter()
        .filter(|(st, _)| *st == StatusCode::OK)
        .count();
    assert!(ok >= 2, "{answers:?}");
    app_reaching(&s.app, &id, "released").await;
    let events = s.app.audit_events(&id).await;
    let acts = actions(&events);
    assert_eq!(
        acts.iter().filter(|a| **a == "release.queued").count(),
        1,
        "{acts:?}"
    );
    assert_eq!(
        acts.iter().filter(|a| **a == "release.built").count(),
        1,
        "{acts:?}"
    );
    s.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarantined_file_altered_on_disk_refuses_the_release() {
    if !has_docker() {
        return;
    }
    // Text of ~400 KB: its payload holds whole chunks on disk, not only the seed.
    let s = scene("cd /vre/output && head -c 300000 /dev/urandom | base64 > notes.txt").await;
    let (st, r) = request(&s, &["notes.txt"], json!({})).await;
    assert_eq!(st, StatusCode::CREATED, "{r}");
    let id = r["id"].as_str().unwrap().to_owned();
    let payload = {
        let mut conn = s.app.state.db.pool().acquire().await.unwrap();
        gateway::store::egress::payload(&mut conn, &id, 1)
            .await
            .unwrap()
            .expect("the round has a payload")
    };
    assert!(payload.full_chunks >= 3, "{payload:?}");
    let path = s.app.state.blobs.payload_path(&payload.name).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let at = gateway::release::sealed::PREFIX_LEN as usize
        + gateway::release::sealed::SEALED_CHUNK
        + 1000;
    bytes[at] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    // A preview of it is refused rather than shown from altered bytes.
    let rev = s.app.token("rev1", "reviewer");
    let (st, _) = s
        .app
        .get(
            &format!("/api/v1/applications/{id}/egress/preview?path=notes.txt"),
            Some(&rev),
        )
        .await;
    assert_eq!(st, StatusCode::INTERNAL_SERVER_ERROR);
    s.app.vote(&id, "rev1", "approve").await;
    s.app.vote(&id, "rev2", "approve").await;
    let d = app_reaching(&s.app, &id, "refused").await;
    assert_eq!(d["release"]["state"], "refused", "{d}");
    assert_eq!(d["application"]["state"], "approved", "{d}");
    let events = s.app.audit_events(&id).await;
    let refused = events
        .iter()
        .find(|e| e["action"] == "release.refused")
        .unwrap_or_else(|| panic!("{events:?}"));
    let detail: Value = serde_json::from_str(refused["detail"].as_str().unwrap()).unwrap();
    assert!(
        detail["altered"].as_str().unwrap().contains("chunk 1"),
        "{detail}"
    );
    assert!(
        std::fs::read(&path).unwrap() == bytes,
        "the refused payload is left as it was found"
    );
    let (st, b) = s
        .app
        .get(&format!("/api/v1/applications/{id}/release"), Some(&s.ana))
        .await;
    assert_refused(st, &b, StatusCode::CONFLICT, "release_refused");
    s.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_requested_are_answered_with_new_files_in_a_new_round() {
    if !has_docker() {
        return;
    }
    let s = scene(CLEAN).await;
    let (st, r) = request(&s, &["counts.csv", "notes.txt"], json!({})).await;
    assert_eq!(st, StatusCode::CREATED, "{r}");
    let id = r["id"].as_str().unwrap().to_owned();
    let (_, b) = s.app.vote(&id, "rev1", "request_changes").await;
    assert_eq!(b["state"], "changes_requested");
    // The generic resubmission cannot bring files.
    let (st, b) = s
        .app
        .post(
            &format!("/api/v1/applications/{id}/resubmit"),
            Some(&s.ana),
            &json!({"comment": "done"}),
        )
        .await;
    assert_refused(st, &b, StatusCode::BAD_REQUEST, "wrong_route");
    write_outputs(
        &s.app,
        &s.ana,
        &s.sandbox,
        "cd /vre/output && printf 'group,count\\nA+B,65\\n' > merged.csv",
    )
    .await;
    let (st, r2) = s
        .app
        .post(
            &format!("/api/v1/applications/{id}/egress"),
            Some(&s.ana),
            &json!({"paths": ["merged.csv"], "comment": "merged the groups"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{r2}");
    assert_eq!(r2["round"]["round"], 2);
    assert_eq!(r2["application"]["state"], "submitted");
    let rev = s.app.token("rev9", "reviewer");
    let (_, d) = s
        .app
        .get(&format!("/api/v1/applications/{id}/egress"), Some(&rev))
        .await;
    let rounds: Vec<(i64, &str)> = d["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["round"].as_i64().unwrap(), f["path"].as_str().unwrap()))
        .collect();
    assert_eq!(
        rounds,
        [(1, "counts.csv"), (1, "notes.txt"), (2, "merged.csv")]
    );
    s.app.vote(&id, "rev2", "approve").await;
    s.app.vote(&id, "rev3", "approve").await;
    let d = app_reaching(&s.app, &id, "released").await;
    assert_eq!(d["release"]["round"], 2);
    // Earlier releases are shown to reviewers of the next request (for differencing).
    let (st, r3) = request(&s, &["counts.csv"], json!({})).await;
    assert_eq!(st, StatusCode::CREATED, "{r3}");
    let (_, d3) = s
        .app
        .get(
            &format!("/api/v1/applications/{}/egress", r3["id"].as_str().unwrap()),
            Some(&rev),
        )
        .await;
    assert_eq!(d3["history"][0]["application"], id.as_str(), "{d3}");
    assert_eq!(d3["history"][0]["files"][0]["path"], "merged.csv");
    s.app.stop().await;
}
