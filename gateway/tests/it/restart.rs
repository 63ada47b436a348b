//! The real `vre server` process, stopped the hard way and the soft way: killed with SIGKILL in
//! the middle of a burst of writes, it loses none that it acknowledged and its audit log
//! verifies after a restart; sent SIGTERM, it drains, exits 0 within a bound and leaves a
//! signed checkpoint of its final head.

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use gateway::config::{Secret, Settings};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::support::{
    Engine, PgDatabase, TempDir, engines, issued_token, run_audit_verify, verify_offline,
    vre_command,
};

/// How long a clean stop may take. Shorter than the gateway's 20 s drain, so a stop that
/// waits for idle keep-alive connections fails here.
const STOP_WITHIN: Duration = Duration::from_secs(15);

/// A child process, killed and reaped when dropped, whatever happened.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// One `vre server` process.
pub(crate) struct Server {
    child: Reaped,
    pub(crate) url: String,
    pub(crate) http: reqwest::Client,
    log: PathBuf,
}

impl Server {
    pub(crate) fn start(data_dir: &Path, database_url: Option<&str>, log: PathBuf) -> Server {
        Self::start_with(data_dir, database_url, log, &[])
    }

    /// Starts one with these `VRE_*` settings besides the data dir and the database.
    pub(crate) fn start_with(
        data_dir: &Path,
        database_url: Option<&str>,
        log: PathBuf,
        settings: &[(&str, &str)],
    ) -> Server {
        let mut c = vre_command();
        c.arg("server")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .env("VRE_LOG", "info")
            .env("VRE_REVIEW__QUORUM__ACCESS", "3")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap());
        if let Some(url) = database_url {
            c.env("VRE_DATABASE_URL", url);
        }
        c.envs(settings.iter().copied());
        let mut child = Reaped(c.spawn().expect("starting vre server"));
        let stdout = child.0.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let (mut url, mut ca) = (None, None);
        while url.is_none() || ca.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("vre server did not come up ({e}): {}", read_log(&log)));
            if let Some(u) = line.strip_prefix("VRE Gateway listening on ") {
                url = Some(u.trim().to_owned());
            } else if let Some(p) = line.strip_prefix("CA certificate: ") {
                ca = Some(PathBuf::from(p.trim()));
            }
        }
        let url = url.unwrap();
        assert!(url.starts_with("https://127.0.0.1:"), "{url}");
        Server {
            child,
            url,
            http: gateway::client::http_client(ca.as_deref()).unwrap(),
            log,
        }
    }

    /// The process id of the server.
    pub(crate) fn pid(&self) -> u32 {
        self.child.0.id()
    }

    pub(crate) fn log_text(&self) -> String {
        read_log(&self.log)
    }

    /// SIGKILL, and reap.
    pub(crate) fn kill(&mut self) {
        self.child.0.kill().unwrap();
        self.child.0.wait().unwrap();
    }

    #[allow(unsafe_code)]
    fn sigterm(&self) {
        // SAFETY: kill(2) takes two integers and touches none of our memory.
        let rc = unsafe { libc::kill(self.child.0.id() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
    }

    /// Waits for the process to end on its own, at most `within`.
    async fn exited(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.0.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "vre server still running {within:?} after SIGTERM: {}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops it with SIGTERM and checks that it exits 0 in time.
    pub(crate) async fn stop(&mut self) {
        self.sigterm();
        let status = self.exited(STOP_WITHIN).await;
        assert!(status.success(), "{status}: {}", self.log_text());
    }
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// One request; `Err` when no complete answer came (the gateway went away).
pub(crate) async fn send(
    req: reqwest::RequestBuilder,
) -> Result<(StatusCode, Value), reqwest::Error> {
    let resp = tokio::time::timeout(Duration::from_secs(30), req.send())
        .await
        .expect("an answer or an error within 30 s")?;
    let status = resp.status();
    let body = tokio::time::timeout(Duration::from_secs(30), resp.json::<Value>())
        .await
        .expect("a body or an error within 30 s")?;
    Ok((status, body))
}

pub(crate) async fn post(
    s: &Server,
    path: &str,
    token: &str,
    body: &Value,
) -> Result<(StatusCode, Value), reqwest::Error> {
    send(
        s.http
            .post(format!("{}{path}", s.url))
            .bearer_auth(token)
            .json(body),
    )
    .await
}

pub(crate) async fn get(s: &Server, path: &str, token: &str) -> Value {
    let (st, v) = send(s.http.get(format!("{}{path}", s.url)).bearer_auth(token))
        .await
        .unwrap();
    assert_eq!(st, StatusCode::OK, "{path}: {v}");
    v
}

/// A write the gateway acknowledged with a 2xx answer.
#[derive(Debug)]
enum Ack {
    Created {
        id: String,
        state: String,
    },
    Voted {
        app: String,
        reviewer: String,
        state: String,
    },
}

/// Tokens and the applications that reviewers vote on.
struct Scene {
    ana: String,
    /// A registered dataset that access applications name.
    dataset: String,
    reviewers: Vec<(String, String)>,
    reader: String,
    auditor: String,
    open: Vec<String>,
}

/// A dataset registered by a steward of its institution, through `s`; its id.
pub(crate) async fn registered_dataset(s: &Server, data_dir: &Path) -> String {
    let institution = crate::datasets::INSTITUTION;
    let steward = crate::support::issued_token_for(data_dir, "hana", "steward", Some(institution));
    let dmp = crate::datasets::example_dmp(institution);
    let (st, b) = post(s, "/api/v1/datasets", &steward, &json!({ "dmp": dmp }))
        .await
        .unwrap();
    assert_eq!(st, StatusCode::CREATED, "{b}");
    b["id"].as_str().unwrap().to_owned()
}

/// The body of an access application of project p1 to `dataset`.
pub(crate) fn access_application(dataset: &str, title: &str) -> Value {
    json!({
        "kind": "access",
        "project": "p1",
        "title": title,
        "description": "why",
        "payload": {"datasets": [dataset], "purpose": "a cohort study"},
    })
}

async fn prepare(s: &Server, data_dir: &Path, open: usize) -> Scene {
    let admin = issued_token(data_dir, "root", "admin");
    let (st, b) = post(
        s,
        "/api/v1/projects",
        &admin,
        &json!({"id": "p1", "title": "Project", "members": [{"subject": "ana", "role": "analyst"}]}),
    )
    .await
    .unwrap();
    assert_eq!(st, StatusCode::CREATED, "{b}");
    let ana = issued_token(data_dir, "ana", "analyst");
    let dataset = registered_dataset(s, data_dir).await;
    let mut ids = Vec::new();
    for i in 0..open {
        let (st, b) = post(
            s,
            "/api/v1/applications",
            &ana,
            &access_application(&dataset, &format!("open {i}")),
        )
        .await
        .unwrap();
        assert_eq!(st, StatusCode::CREATED, "{b}");
        ids.push(b["id"].as_str().unwrap().to_owned());
    }
    Scene {
        ana,
        dataset,
        reviewers: (1..=4)
            .map(|i| {
                let r = format!("rev{i}");
                (issued_token(data_dir, &r, "reviewer"), r)
            })
            .collect(),
        reader: issued_token(data_dir, "rev-reader", "reviewer"),
        auditor: issued_token(data_dir, "aud", "auditor"),
        open: ids,
    }
}

/// Starts writers that go on until the gateway stops answering: four create applications,
/// four reviewers vote on the open ones round and round. Every acknowledged write is sent on
/// the channel; anything but a 2xx or an expected 409 fails the writer.
fn writers(
    s: &Server,
    scene: &Scene,
) -> (
    Vec<tokio::task::JoinHandle<()>>,
    mpsc::UnboundedReceiver<Ack>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    for w in 0..4 {
        let (http, url, token, tx) = (s.http.clone(), s.url.clone(), scene.ana.clone(), tx.clone());
        let dataset = scene.dataset.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                let body = access_application(&dataset, &format!("burst {w}.{i}"));
                let req = http
                    .post(format!("{url}/api/v1/applications"))
                    .bearer_auth(&token)
                    .json(&body);
                let Ok((st, b)) = send(req).await else {
                    return;
                };
                assert_eq!(st, StatusCode::CREATED, "{b}");
                let _ = tx.send(Ack::Created {
                    id: b["id"].as_str().unwrap().to_owned(),
                    state: b["state"].as_str().unwrap().to_owned(),
                });
            }
        }));
    }
    for (n, (token, reviewer)) in scene.reviewers.iter().cloned().enumerate() {
        let (http, url, tx, open) = (
            s.http.clone(),
            s.url.clone(),
            tx.clone(),
            scene.open.clone(),
        );
        tasks.push(tokio::spawn(async move {
            for app in open.iter().cycle().skip(n * 7) {
                let req = http
                    .post(format!("{url}/api/v1/applications/{app}/decisions"))
                    .bearer_auth(&token)
                    .json(&json!({"decision": "approve", "comment": "fine"}));
                let Ok((st, b)) = send(req).await else {
                    return;
                };
                match st {
                    StatusCode::OK => {
                        let _ = tx.send(Ack::Voted {
                            app: app.clone(),
                            reviewer: reviewer.clone(),
                            state: b["state"].as_str().unwrap().to_owned(),
                        });
                    }
                    StatusCode::CONFLICT
                        if b["code"] == "already_voted" || b["code"] == "wrong_state" => {}
                    other => panic!("a vote was answered {other}: {b}"),
                }
            }
        }));
    }
    (tasks, rx)
}

/// Receives acknowledgements until `enough` says so, within a bound.
async fn until(
    rx: &mut mpsc::UnboundedReceiver<Ack>,
    acks: &mut Vec<Ack>,
    enough: impl Fn(&[Ack]) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !enough(acks) {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(a)) => acks.push(a),
            Ok(None) => panic!("the writers stopped early, after {acks:?}"),
            Err(_) => panic!("too few writes acknowledged in 60 s: {acks:?}"),
        }
    }
}

/// Waits for every writer to finish and collects the rest of the acknowledgements.
async fn finish(
    tasks: Vec<tokio::task::JoinHandle<()>>,
    mut rx: mpsc::UnboundedReceiver<Ack>,
    acks: &mut Vec<Ack>,
) {
    for t in tasks {
        t.await.expect("a writer failed");
    }
    while let Some(a) = rx.recv().await {
        acks.push(a);
    }
}

fn counts(acks: &[Ack]) -> (usize, usize) {
    let created = acks
        .iter()
        .filter(|a| matches!(a, Ack::Created { .. }))
        .count();
    (created, acks.len() - created)
}

fn rank(state: &str) -> u8 {
    match state {
        "submitted" => 0,
        "in_review" => 1,
        "approved" => 2,
        other => panic!("unexpected state {other}"),
    }
}

/// Asserts that every acknowledged write is in the gateway, and that the audit log holds an
/// event for each application and each vote stored, no more and no fewer.
async fn assert_kept(s: &Server, scene: &Scene, acks: &[Ack]) {
    let list = get(s, "/api/v1/applications?limit=1000", &scene.reader).await;
    let list = list.as_array().unwrap();
    assert!(
        list.len() < 1000,
        "the check needs every application in one page"
    );
    let apps: BTreeMap<&str, &Value> = list
        .iter()
        .map(|a| (a["id"].as_str().unwrap(), a))
        .collect();
    let mut voted: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for a in acks {
        match a {
            Ack::Created { id, state } => {
                let app = apps
                    .get(id.as_str())
                    .unwrap_or_else(|| panic!("acknowledged application {id} is gone"));
                assert!(rank(app["state"].as_str().unwrap()) >= rank(state));
            }
            Ack::Voted {
                app,
                reviewer,
                state,
            } => {
                let now = apps
                    .get(app.as_str())
                    .unwrap_or_else(|| panic!("voted-on application {app} is gone"));
                assert!(
                    rank(now["state"].as_str().unwrap()) >= rank(state),
                    "{app} went back from {state} to {}",
                    now["state"]
                );
                voted.entry(app).or_default().insert(reviewer);
            }
        }
    }
    for (app, reviewers) in voted {
        let detail = get(s, &format!("/api/v1/applications/{app}"), &scene.reader).await;
        let stored: BTreeSet<&str> = detail["decisions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["reviewer"].as_str().unwrap())
            .collect();
        assert!(
            reviewers.is_subset(&stored),
            "{app}: acknowledged votes {reviewers:?}, stored {stored:?}"
        );
    }

    // Data and audit log committed together: one submit event per application, one decision
    // event per stored vote (all approvals, all in round 1).
    let mut events = Vec::new();
    loop {
        let after = events
            .last()
            .map(|e: &Value| e["seq"].as_i64().unwrap())
            .unwrap_or(0);
        let page = get(
            s,
            &format!("/api/v1/audit?after={after}&limit=1000"),
            &scene.auditor,
        )
        .await;
        let page = page.as_array().unwrap().clone();
        if page.is_empty() {
            break;
        }
        events.extend(page);
    }
    let count = |action: &str| events.iter().filter(|e| e["action"] == action).count();
    assert_eq!(count("application.submit"), apps.len());
    let approvals: u64 = list.iter().map(|a| a["approvals"].as_u64().unwrap()).sum();
    assert_eq!(count("application.decision") as u64, approvals);
}

fn settings(data_dir: &Path, database_url: Option<&str>) -> Settings {
    Settings {
        data_dir: data_dir.to_path_buf(),
        database_url: Secret::new(database_url.unwrap_or_default().to_owned()),
        ..Default::default()
    }
}

pub(crate) async fn database(engine: Engine) -> Option<PgDatabase> {
    match engine {
        Engine::Sqlite => None,
        Engine::Postgres => Some(PgDatabase::create().await),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_mid_burst_loses_no_acknowledged_write() {
    for engine in engines() {
        let pg = database(engine).await;
        let url = pg.as_ref().map(|p| p.url.as_str());
        let root = TempDir::new("restart");
        let data = root.path().join("data");

        let mut server = Server::start(&data, url, root.path().join("first.log"));
        let scene = prepare(&server, &data, 30).await;
        let (tasks, mut rx) = writers(&server, &scene);
        let mut acks = Vec::new();
        until(&mut rx, &mut acks, |a| {
            let (created, voted) = counts(a);
            created >= 15 && voted >= 8
        })
        .await;
        server.kill();
        finish(tasks, rx, &mut acks).await;
        let (created, voted) = counts(&acks);
        assert!(created >= 15 && voted >= 8);

        let mut server = Server::start(&data, url, root.path().join("second.log"));
        assert_kept(&server, &scene, &acks).await;
        // It goes on where it was.
        let (st, b) = post(
            &server,
            "/api/v1/applications",
            &scene.ana,
            &access_application(&scene.dataset, "after the crash"),
        )
        .await
        .unwrap();
        assert_eq!(st, StatusCode::CREATED, "{b}");
        server.stop().await;

        let (code, out) = run_audit_verify(&data, url);
        assert_eq!(code, 0, "{engine:?}: {out}");
        assert!(out.contains("audit log intact"), "{out}");
        drop(server);
        if let Some(pg) = pg {
            pg.drop_db().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_drains_exits_0_and_signs_the_final_head() {
    for engine in engines() {
        let pg = database(engine).await;
        let url = pg.as_ref().map(|p| p.url.as_str());
        let root = TempDir::new("restart");
        let data = root.path().join("data");

        let mut server = Server::start(&data, url, root.path().join("server.log"));
        let scene = prepare(&server, &data, 10).await;
        let (tasks, mut rx) = writers(&server, &scene);
        let mut acks = Vec::new();
        until(&mut rx, &mut acks, |a| a.len() >= 10).await;
        // Mid-burst, with keep-alive connections open.
        server.stop().await;
        finish(tasks, rx, &mut acks).await;

        let settings = settings(&data, url);
        let db = gateway::db::Db::open(&settings.database_url(), 1)
            .await
            .unwrap();
        for a in &acks {
            let q = match a {
                Ack::Created { id, .. } => {
                    sqlx::query_as("SELECT COUNT(*) FROM applications WHERE id = $1").bind(id)
                }
                Ack::Voted { app, reviewer, .. } => sqlx::query_as(
                    "SELECT COUNT(*) FROM decisions WHERE application_id = $1 AND reviewer = $2",
                )
                .bind(app)
                .bind(reviewer),
            };
            let (n,): (i64,) = q.fetch_one(db.pool()).await.unwrap();
            assert_eq!(n, 1, "acknowledged {a:?} is gone");
        }
        let head: (i64, String) = sqlx::query_as("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_one(db.pool())
            .await
            .unwrap();
        db.close().await;
        let last = gateway::audit::read_checkpoints(&settings.checkpoint_dir())
            .unwrap()
            .pop()
            .expect("a checkpoint")
            .unwrap();
        assert_eq!(
            (last.seq, last.hash),
            head,
            "{engine:?}: the last checkpoint is the final head"
        );
        let report = verify_offline(&settings).await;
        assert_eq!((report.events, report.problem), (head.0, None));
        let (code, out) = run_audit_verify(&data, url);
        assert_eq!(code, 0, "{engine:?}: {out}");
        if engine == Engine::Sqlite {
            assert!(
                !data.join("vre.db-wal").exists(),
                "the gateway exited with its database still open"
            );
        }
        drop(server);
        if let Some(pg) = pg {
            pg.drop_db().await;
        }
    }
}
