//! The test harness: a real gateway per test, tokens, and HTTP helpers.

#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub(crate) use crate::engine_objects::remove_instance_objects;
use gateway::config::{Secret, Settings};
use gateway::keys::Ed25519Key;
use gateway::state::AppState;
use policy::ids::Subject;
use policy::roles::RoleSet;
use reqwest::StatusCode;
use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// Whether `VRE_TEST_REQUIRE_<what>=1` is set: then what a test needs of this machine (`DOCKER`,
/// `POSTGRES`, `RUNSC`, `ROOT`) must be here, and its absence fails the test instead of skipping
/// it. `deploy/dev/test.sh` sets them.
pub fn required(what: &str) -> bool {
    std::env::var(format!("VRE_TEST_REQUIRE_{what}")).is_ok_and(|v| v == "1")
}

/// The engines storage tests run against here.
pub fn engines() -> Vec<Engine> {
    let mut v = vec![Engine::Sqlite];
    if std::env::var("VRE_TEST_POSTGRES_URL").is_ok() {
        v.push(Engine::Postgres);
    } else if required("POSTGRES") {
        panic!("VRE_TEST_REQUIRE_POSTGRES=1 but VRE_TEST_POSTGRES_URL is not set");
    }
    v
}

/// Runs `f` once per engine, each time against a fresh gateway.
pub async fn each_engine<F, Fut>(f: F)
where
    F: Fn(TestApp) -> Fut,
    Fut: Future<Output = TestApp>,
{
    for engine in engines() {
        let app = TestApp::spawn(engine).await;
        let app = f(app).await;
        app.stop().await;
    }
}

/// A temporary directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let mut r = [0u8; 8];
        getrandom::fill(&mut r).unwrap();
        let p = std::env::temp_dir().join(format!("vre-test-{tag}-{}", hex::encode(r)));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::fs::remove_dir_all(&self.0).is_err() {
            // Read-only folders inside (a dataset's content in the STORE).
            let _ = gateway::ingress::content::remove_tree(&self.0);
        }
    }
}

/// A fresh PostgreSQL database, dropped at the end of the test.
pub struct PgDatabase {
    admin_url: String,
    pub name: String,
    pub url: String,
}

impl PgDatabase {
    pub async fn create() -> PgDatabase {
        let admin_url = std::env::var("VRE_TEST_POSTGRES_URL").expect("VRE_TEST_POSTGRES_URL");
        let mut r = [0u8; 6];
        getrandom::fill(&mut r).unwrap();
        let name = format!("vre_test_{}", hex::encode(r));
        sqlx::any::install_default_drivers();
        let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin_url)
            .await
            .unwrap_or_else(|e| {
                panic!("connecting to the test PostgreSQL server {admin_url:?}: {e}")
            });
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        let base = admin_url
            .rsplit_once('/')
            .map(|(b, _)| b)
            .unwrap_or(&admin_url);
        let url = format!("{base}/{name}");
        PgDatabase {
            admin_url,
            name,
            url,
        }
    }

    pub async fn drop_db(&self) {
        if let Ok(mut conn) =
            <sqlx::AnyConnection as sqlx::Connection>::connect(&self.admin_url).await
        {
            let _ = sqlx::query(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut conn)
            .await;
        }
    }
}

/// Settings for a test gateway: a fresh data dir, a free port, the engine's database.
pub async fn test_settings(engine: Engine, dir: &Path) -> (Settings, Option<PgDatabase>) {
    let mut s = Settings {
        data_dir: dir.to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    };
    // The suite tests sandboxes and runs with ad-hoc commands (`true`, `sleep`, `sh -c …`), not
    // the command rule: that has its own tests (`commands.rs` here, table tests in `policy`),
    // which set `approved` themselves. The production default stays `approved`.
    s.sandbox.commands = gateway::wire::projects::CommandPolicy::Any;
    let pg = match engine {
        Engine::Sqlite => None,
        Engine::Postgres => {
            let pg = PgDatabase::create().await;
            s.database_url = Secret::new(pg.url.clone());
            Some(pg)
        }
    };
    (s, pg)
}

type Launched = (
    SocketAddr,
    AppState,
    reqwest::Client,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
);

/// Builds a gateway of `settings` and serves it until told to stop.
async fn launch(settings: &Settings) -> Launched {
    let app = gateway::startup::Application::build(settings.clone())
        .await
        .expect("the gateway starts");
    let addr = app.addr();
    let state = app.state().clone();
    let ca = app.ca_file().expect("a generated CA").to_path_buf();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let join = tokio::spawn(app.run_until_stopped(async move {
        let _ = rx.await;
    }));
    let http = gateway::client::http_client(Some(&ca)).unwrap();
    (addr, state, http, tx, join)
}

pub struct TestApp {
    pub engine: Engine,
    pub addr: SocketAddr,
    pub url: String,
    pub http: reqwest::Client,
    pub state: AppState,
    pub settings: Settings,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    join: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    pg: Option<PgDatabase>,
    // Last: removed after everything else is stopped.
    pub dir: TempDir,
}

impl TestApp {
    pub async fn spawn(engine: Engine) -> TestApp {
        Self::spawn_with(engine, |_| {}).await
    }

    pub async fn spawn_with(engine: Engine, tweak: impl FnOnce(&mut Settings)) -> TestApp {
        let dir = TempDir::new("app");
        let (mut settings, pg) = test_settings(engine, dir.path()).await;
        tweak(&mut settings);
        let (addr, state, http, tx, join) = launch(&settings).await;
        TestApp {
            engine,
            addr,
            url: format!("https://127.0.0.1:{}", addr.port()),
            http,
            state,
            settings,
            stop: Some(tx),
            join: Some(join),
            pg,
            dir,
        }
    }

    /// Stops the gateway gracefully and starts it again on the same settings: data dir,
    /// database, and address when the settings name a port.
    pub async fn restart(&mut self) {
        self.halt().await;
        let (addr, state, http, tx, join) = launch(&self.settings).await;
        self.addr = addr;
        self.url = format!("https://127.0.0.1:{}", addr.port());
        self.http = http;
        self.state = state;
        self.stop = Some(tx);
        self.join = Some(join);
    }

    /// Stops the gateway gracefully and drops its database. A graceful stop leaves no
    /// container started ahead on the engine (checked); runs still going are removed after.
    pub async fn stop(mut self) {
        self.stop_server().await;
        let left = self.state.sandboxes.backend.list_containers().await;
        let ahead: Vec<_> = left
            .iter()
            .flatten()
            .filter(|c| c.names.iter().any(|n| n.starts_with("vre-standby-")))
            .collect();
        assert!(
            ahead.is_empty(),
            "left started ahead after a graceful stop: {ahead:?}"
        );
        self.remove_engine_objects().await;
        if let Some(pg) = self.pg.take() {
            pg.drop_db().await;
        }
    }

    /// Removes every container and volume this gateway created on the engine (each test gateway
    /// has its own instance label, so tests running at once do not touch each other's).
    pub async fn remove_engine_objects(&self) {
        let backend = &self.state.sandboxes.backend;
        if let Ok(containers) = backend.list_containers().await {
            for c in containers {
                let _ = backend.remove_container(&c.name).await;
            }
        }
        if let Ok(volumes) = backend.list_volumes().await {
            for v in volumes {
                if let Some(sb) = v.labels.get(sandbox_runner::LABEL_SANDBOX) {
                    let _ = backend.remove_sandbox(sb).await;
                }
            }
        }
    }

    /// A token minted with this gateway's own key.
    pub fn token(&self, sub: &str, roles: &str) -> String {
        self.token_for(sub, roles, None)
    }

    /// A token that also names the institution its holder speaks for (stewards).
    pub fn token_for(&self, sub: &str, roles: &str, institution: Option<&str>) -> String {
        let key =
            Ed25519Key::load_or_create(&self.settings.data_dir.join("keys/token.pem")).unwrap();
        gateway::auth::issue_for(
            &key,
            &self.settings.auth,
            &Subject::parse(sub).unwrap(),
            RoleSet::parse_list(roles).unwrap(),
            institution,
            std::time::Duration::from_secs(3600),
        )
        .unwrap()
    }

    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let mut r = self.http.request(method, format!("{}{}", self.url, path));
        if let Some(b) = body {
            r = r.json(b);
        }
        send(r, token).await
    }

    /// A request with a raw body (archives).
    pub async fn request_raw(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let r = self
            .http
            .request(method, format!("{}{}", self.url, path))
            .body(body);
        send(r, token).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.request(reqwest::Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> (StatusCode, Value) {
        self.request(reqwest::Method::POST, path, token, Some(body))
            .await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.request(reqwest::Method::DELETE, path, token, None)
            .await
    }

    /// Creates project `id` with members, as an admin; panics unless it worked.
    pub async fn project(&self, id: &str, members: &[(&str, &str)]) {
        let admin = self.token("root", "admin");
        let members: Vec<Value> = members
            .iter()
            .map(|(s, r)| serde_json::json!({"subject": s, "role": r}))
            .collect();
        let (st, body) = self
            .post(
                "/api/v1/projects",
                Some(&admin),
                &serde_json::json!({"id": id, "title": format!("Project {id}"), "members": members}),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{body}");
    }

    /// Submits an application of `kind` as `sub` (an analyst or steward member); returns its id.
    /// An access application names [`TestApp::support_dataset`].
    pub async fn application(&self, kind: &str, project: &str, sub: &str, role: &str) -> String {
        let t = self.token(sub, role);
        let mut body = serde_json::json!({"kind": kind, "project": project, "title": "Please", "description": "why"});
        if kind == "access" {
            body["payload"] = self.access_payload().await;
        }
        let (st, body) = self.post("/api/v1/applications", Some(&t), &body).await;
        assert_eq!(st, StatusCode::CREATED, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    /// The payload of an access application to [`TestApp::support_dataset`].
    pub async fn access_payload(&self) -> Value {
        let d = self.support_dataset().await;
        serde_json::json!({"datasets": [d], "purpose": "why"})
    }

    /// A dataset on record for access applications that need one to name (`ds-support`, of
    /// institution `support-u`), written to the store once: registering it through the API
    /// would open a listing application and audit it, which tests of other things count.
    pub async fn support_dataset(&self) -> String {
        const ID: &str = "ds-support";
        let mut conn = self.state.db.pool().acquire().await.unwrap();
        let known = gateway::store::datasets::dataset(&mut conn, ID)
            .await
            .unwrap();
        if known.is_none() {
            self.record_dataset(ID, "support-u").await;
        }
        ID.to_owned()
    }

    /// A dataset on record with the id `id` of `institution`, unrestricted, its listing
    /// approved (so content declared for it in `[sandbox.datasets]` may be mounted), written
    /// straight to the store (registration makes ids of its own).
    pub async fn record_dataset(&self, id: &str, institution: &str) {
        let now = gateway::time::now();
        let row = gateway::store::datasets::DatasetRow {
            id: id.to_owned(),
            title: format!("Dataset {id}"),
            institution: institution.to_owned(),
            category: "unrestricted_open_sharing".to_owned(),
            restricted_until: None,
            category_after: None,
            dmp: crate::datasets::example_dmp(institution).to_string(),
            state: "approved".to_owned(),
            created_by: "hana".to_owned(),
            created_at: now.clone(),
            updated_at: now,
        };
        let mut conn = self.state.db.pool().acquire().await.unwrap();
        gateway::store::datasets::insert(&mut conn, &row)
            .await
            .unwrap();
    }

    /// Asks, as `token`, for a sandbox of `project` on the test image; returns the status and
    /// body.
    pub async fn ask_sandbox(&self, token: &str, project: &str) -> (StatusCode, Value) {
        self.post(
            "/api/v1/sandboxes",
            Some(token),
            &serde_json::json!({"project": project, "image": TEST_IMAGE}),
        )
        .await
    }

    /// A sandbox of `project` on the test image, made as `token`; returns its id.
    pub async fn new_sandbox(&self, token: &str, project: &str) -> String {
        let (st, sb) = self.ask_sandbox(token, project).await;
        assert_eq!(st, StatusCode::CREATED, "{sb}");
        sb["id"].as_str().unwrap().to_owned()
    }

    /// Votes; returns the status and body.
    pub async fn vote(&self, id: &str, reviewer: &str, decision: &str) -> (StatusCode, Value) {
        let t = self.token(reviewer, "reviewer");
        let comment = format!("{reviewer} says {decision}");
        self.decide(id, &t, decision, &comment).await
    }

    /// Posts a decision on an application with `token`; returns the status and body.
    pub async fn decide(
        &self,
        id: &str,
        token: &str,
        decision: &str,
        comment: &str,
    ) -> (StatusCode, Value) {
        self.post(
            &format!("/api/v1/applications/{id}/decisions"),
            Some(token),
            &serde_json::json!({"decision": decision, "comment": comment}),
        )
        .await
    }

    /// The audit events about `subject`, oldest first, as an auditor reads them (the read must
    /// succeed; up to 1000, the most one read gives).
    pub async fn audit_events(&self, subject: &str) -> Vec<Value> {
        let auditor = self.token("aud", "auditor");
        let (st, events) = self
            .get(
                &format!("/api/v1/audit?subject={subject}&limit=1000"),
                Some(&auditor),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{events}");
        match events {
            Value::Array(events) => events,
            other => panic!("the audit log answered {other}, not a list"),
        }
    }

    /// Runs `vre audit verify` logic in process.
    pub async fn verify_audit(&self) -> gateway::audit::Report {
        let public =
            gateway::keys::PublicKey::load(&self.settings.data_dir.join("keys/audit.pub.pem"))
                .unwrap();
        gateway::audit::verify(&self.state.db, &self.settings.checkpoint_dir(), &public)
            .await
            .unwrap()
    }
}

/// Asserts that a command succeeded; its standard error is the message otherwise.
#[track_caller]
pub fn assert_success(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A token from `vre token issue` for the gateway whose data dir is `data_dir`.
pub fn issued_token(data_dir: &Path, sub: &str, role: &str) -> String {
    issued_token_for(data_dir, sub, role, None)
}

/// A token from `vre token issue` that also names the institution its holder speaks for.
pub fn issued_token_for(
    data_dir: &Path,
    sub: &str,
    role: &str,
    institution: Option<&str>,
) -> String {
    let mut c = vre_command();
    c.args(["token", "issue", "--sub", sub, "--role", role, "--data-dir"])
        .arg(data_dir);
    if let Some(i) = institution {
        c.args(["--institution", i]);
    }
    let out = c.output().unwrap();
    assert_success(&out);
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The actions of audit events, in their order.
pub fn actions(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect()
}

/// Asserts that an answer is the error `code` with `status`.
#[track_caller]
pub fn assert_refused(st: StatusCode, body: &Value, status: StatusCode, code: &str) {
    assert_eq!((st, body["code"].as_str()), (status, Some(code)), "{body}");
}

/// The body of the answer to a request, as text.
pub async fn text_of(r: reqwest::RequestBuilder) -> String {
    let resp = r.send().await.expect("the gateway answers");
    resp.text().await.unwrap()
}

/// The status of the answer to a request and its body, which must be JSON.
pub async fn json_of(r: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let resp = r.send().await.expect("the gateway answers");
    let status = resp.status();
    (status, resp.json().await.unwrap())
}

/// Sends a request with the bearer token, given one; the answer's status and its body as JSON,
/// or as a JSON string where it is not JSON.
async fn send(r: reqwest::RequestBuilder, token: Option<&str>) -> (StatusCode, Value) {
    let r = match token {
        Some(t) => r.bearer_auth(t),
        None => r,
    };
    let resp = r.send().await.expect("the gateway answers");
    let status = resp.status();
    let text = resp.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, v)
}

impl Drop for TestApp {
    /// A test that panics never reaches `stop`: remove its containers and volumes anyway, by
    /// this gateway's instance label, through the docker CLI (no runtime is needed for that).
    fn drop(&mut self) {
        if let Ok(instance) = std::fs::read_to_string(self.settings.data_dir.join("instance-id")) {
            remove_instance_objects(instance.trim());
        }
    }
}

/// Removes an instance's objects from the engine when dropped (a test's gateway in another
/// process, even when the test panics).
pub struct InstanceObjects(pub String);

impl Drop for InstanceObjects {
    fn drop(&mut self) {
        remove_instance_objects(&self.0);
    }
}

/// Whether a Docker engine answers here. Where `VRE_TEST_REQUIRE_DOCKER=1` (CI), a missing
/// engine fails the tests that need it instead of skipping them.
pub fn docker_available() -> bool {
    let ok = std::process::Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok && required("DOCKER") {
        panic!("VRE_TEST_REQUIRE_DOCKER=1 but no Docker engine answers");
    }
    if !ok {
        eprintln!(
            "no Docker engine here: skipping a sandbox test (CI sets VRE_TEST_REQUIRE_DOCKER=1)"
        );
    }
    ok
}

/// Whether the tests run as root, which `what` needs (mounting a file system, starting a
/// Docker engine of the test's own). Where `VRE_TEST_REQUIRE_ROOT=1` (`deploy/dev/test.sh` run
/// as root, and CI), not being root fails the test instead of skipping `what`.
pub fn root_available(what: &str) -> bool {
    // SAFETY: geteuid(2) takes nothing, cannot fail and touches none of our memory.
    #[allow(unsafe_code)]
    let root = unsafe { libc::geteuid() } == 0;
    if !root && required("ROOT") {
        panic!("VRE_TEST_REQUIRE_ROOT=1 but not root: {what} needs root");
    }
    if !root {
        eprintln!("not root: skipping {what} (CI sets VRE_TEST_REQUIRE_ROOT=1)");
    }
    root
}

/// The test image, built by `deploy/images/build-test-image.sh`.
pub const TEST_IMAGE: &str = "vre-test/busybox:latest";

impl TestApp {
    /// Waits (at most two minutes) until the run is in `state`: `finished` is waited for with
    /// the gateway's long poll, others by polling. The run as it is then.
    pub async fn run_reaching(&self, token: &str, id: &str, state: &str) -> Value {
        let wait = if state == "finished" { "?wait=30" } else { "" };
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            let (st, r) = self
                .get(&format!("/api/v1/runs/{id}{wait}"), Some(token))
                .await;
            assert_eq!(st, StatusCode::OK, "{r}");
            if r["state"] == state {
                return r;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "run {id} never reached {state}: {r}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl TestApp {
    /// Stops the gateway gracefully (so its last checkpoint is written) but keeps its data dir
    /// and database, for tests that look at or tamper with what it left behind. `stop` still
    /// cleans up afterwards.
    pub async fn halt(&mut self) {
        self.stop_server().await;
        if self.engine == Engine::Sqlite {
            // Only the last connection to close checkpoints and removes the WAL.
            let wal = self.settings.data_dir.join("vre.db-wal");
            assert!(
                !wal.exists(),
                "a clean stop left {} behind: a connection is still open",
                wal.display()
            );
        }
    }

    /// Tells the server to stop and waits until it has, cleanly.
    async fn stop_server(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(j) = self.join.take() {
            j.await
                .expect("the server task")
                .expect("the server stops cleanly");
        }
    }

    /// The temporary files of the blob store once the removals the gateway started have run
    /// (they run in the background, so an answer does not wait for a large file's unlink):
    /// empty, unless one stays for 10 s.
    pub async fn temp_files_left(&self) -> Vec<PathBuf> {
        let tmp = self.dir.path().join("tmp");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let left: Vec<PathBuf> = std::fs::read_dir(&tmp)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            if left.is_empty() || std::time::Instant::now() > deadline {
                return left;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// Waits until the checkpoint log covers the current head of the audit chain, so that the
    /// signed checkpoints are known exactly (one per commit when called after each write).
    pub async fn settle_checkpoints(&self) {
        let dir = self.settings.checkpoint_dir();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let (seq, hash) =
                sqlx::query_as::<_, (i64, String)>("SELECT seq, hash FROM audit_head WHERE id = 1")
                    .fetch_one(self.state.db.pool())
                    .await
                    .unwrap();
            let last = gateway::audit::read_checkpoints(&dir)
                .unwrap()
                .into_iter()
                .filter_map(Result::ok)
                .next_back();
            if seq == 0 || last.is_some_and(|c| c.seq == seq && c.hash == hash) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no checkpoint for head {seq} after 10 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
}

/// `vre audit verify`'s check, in process, through a fresh connection: for a gateway that has
/// been halted, or a database changed behind its back.
pub async fn verify_offline(settings: &Settings) -> gateway::audit::Report {
    let db = gateway::db::Db::open(&settings.database_url(), 2)
        .await
        .unwrap();
    let public = gateway::keys::PublicKey::load(
        &gateway::keys::DataDir::new(settings.data_dir.clone()).audit_public_key(),
    )
    .unwrap();
    let report = gateway::audit::verify(&db, &settings.checkpoint_dir(), &public)
        .await
        .unwrap();
    db.close().await;
    report
}

/// The `vre` binary built for these tests, without the caller's `VRE_*` variables, so that
/// nothing in a developer's environment (`VRE_URL`, `VRE_TOKEN`, `VRE_CA`, `VRE_CONFIG`,
/// `VRE_DATABASE_URL`, …) points a test at another gateway, database or configuration: each
/// test sets exactly the ones it means. Every test that runs `vre` starts it through this.
pub fn vre_command() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_vre"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("VRE_") {
            c.env_remove(k);
        }
    }
    c.env("VRE_LOG", "warn");
    c
}

/// Runs `vre audit verify --data-dir DIR` (with `VRE_DATABASE_URL` when the database is not
/// SQLite in the data dir); returns the exit code and stdout.
pub fn run_audit_verify(data_dir: &Path, database_url: Option<&str>) -> (i32, String) {
    let mut c = vre_command();
    c.arg("audit").arg("verify").arg("--data-dir").arg(data_dir);
    if let Some(url) = database_url {
        c.env("VRE_DATABASE_URL", url);
    }
    let out = c.output().expect("running vre audit verify");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let code = out
        .status
        .code()
        .expect("vre audit verify exits, not killed");
    assert!(
        code == 0 || code == 1,
        "vre audit verify failed to run ({code}): {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (code, stdout)
}

/// A list walked a page of `size` at a time, following its `x-next-cursor` as `token`: every
/// item of every page, in order, and how many pages there were. Each page but the last is full
/// and has a cursor; the last has none and is not empty (unless the list is).
pub async fn walk_list(app: &TestApp, path: &str, token: &str, size: usize) -> (Vec<Value>, usize) {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut url = format!("{}{path}{sep}limit={size}", app.url);
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let resp = app.http.get(url).bearer_auth(token).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        cursor = resp
            .headers()
            .get("x-next-cursor")
            .map(|v| v.to_str().unwrap().to_owned());
        let page: Vec<Value> = resp.json().await.unwrap();
        pages += 1;
        match &cursor {
            Some(_) => assert_eq!(page.len(), size, "{path}: a page before the last is full"),
            None => assert!(
                !page.is_empty() || items.is_empty(),
                "{path}: the last page is empty: the page before it should have had no cursor"
            ),
        }
        items.extend(page);
        if cursor.is_none() {
            return (items, pages);
        }
        assert!(pages <= 10_000, "{path}: the cursor never ends");
    }
}

/// The values of `key` of the items of a list, as strings.
pub fn keys_of(items: &[Value], key: &str) -> Vec<String> {
    items
        .iter()
        .map(|i| match &i[key] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}
