//! Benchmark: what a run through the gateway costs, next to the engine doing the same work.
//!
//! Run it with `cargo bench -p gateway --bench runs` (release build; needs the Docker engine
//! and the test image `vre-test/busybox:latest`, made by `deploy/images/build-test-image.sh`).
//! It is a benchmark, not a test: it prints figures and PASS/MISS against the targets, and exits
//! 0 whether they are met or not. Built as a test (`cargo test --all-targets`), it does nothing.
//!
//! In one run, side by side, each over the same trivial command (`true`):
//!
//! 1. gateway  — `POST /api/v1/sandboxes/{id}/runs {"cmd":["true"]}` on an in-process gateway
//!    over HTTPS on loopback, then `GET /api/v1/runs/{id}?wait=60`, which answers once the end
//!    is recorded (as `vre run` learns of it): the time from sending the POST to seeing
//!    `finished`. Three series:
//!    - *container ready*: the default configuration, its sandbox's container started ahead
//!      and running (the run waits `SETTLE` first, untimed), as when an analyst's next run
//!      comes seconds after the last;
//!    - *the next run right after*: a second run as soon as the first is seen finished, while
//!      the engine is still starting the container for it;
//!    - *nothing started ahead*: a second gateway with `standby_containers = 0`, each run
//!      creating and starting its own container.
//! 2. bollard  — the bare engine cycle, `create_container` / `start_container` /
//!    `wait_container(..).next()` / `remove_container(force)`, with the create request the
//!    gateway sends where it cannot use its launcher (`sandbox_runner::hardening::run_container`),
//!    on the same sandbox's volumes.
//! 3. docker run --rm — the CLI: `docker run --rm --network none --read-only --cap-drop ALL
//!    --security-opt no-new-privileges -u 65534:65534 vre-test/busybox:latest true`.
//!    Next to it, for the analyst's view, `vre run SANDBOX -- true` (container ready): the
//!    gateway's own CLI (a new process, TLS handshake, POST, following the log, waiting for the
//!    end), shown but not part of the targets, which are about the gateway.
//! 4. throughput — `RUNS_TOTAL` gateway runs by `CLIENTS` concurrent clients (each POSTs and
//!    waits for the end as above, then starts its next run), with the gateway allowing
//!    `CLIENTS` runs at once, with the CPU time used meanwhile by this process and by the
//!    engine's daemons; both gateways, and the bare bollard cycle at the same concurrency.
//!
//! Each latency series has `WARMUP` discarded runs, then `SAMPLES` measured ones (override with
//! `VRE_BENCH_SAMPLES`); the series are interleaved round by round, so a drift of the
//! machine touches them alike. Splits of the medians show where the time goes: for the
//! gateway, from the run's own timestamps (milliseconds), POST to started (queue, the
//! container, the command handed over), started to the supervisor's end (wait, last output
//! measurement, logs, log digest), and the rest (recording the end, the client learning of
//! it); for the bare cycle, each of its four engine calls.
//!
//! Targets: gateway p50 <= 1.3 x bollard p50, and gateway p50 <= 0.5 x `docker run --rm` p50,
//! for the default configuration (container ready); printed for the other two series too.
//!
//! Everything the bench creates (project, sandbox and its volumes, containers) belongs to a
//! gateway with a temporary data dir; the sandbox is deleted through the API at the end and
//! anything left with that gateway's instance label is removed from the engine.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};
use futures_util::StreamExt;
use gateway::config::Settings;
use gateway::keys::Ed25519Key;
use policy::ids::Subject;
use policy::roles::RoleSet;
use serde_json::{Value, json};

#[path = "../tests/it/engine_objects.rs"]
mod engine_objects;

const IMAGE: &str = "vre-test/busybox:latest";
const WARMUP: usize = 5;
const SAMPLES: usize = 40;
const CLIENTS: usize = 8;
const RUNS_TOTAL: usize = 64;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Res<T> = Result<T, BoxError>;

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    if let Err(e) = rt.block_on(bench()) {
        eprintln!("the benchmark failed: {e}");
        std::process::exit(1);
    }
}

async fn bench() -> Res<()> {
    let samples = std::env::var("VRE_BENCH_SAMPLES")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(SAMPLES);
    preflight()?;
    let mut gw = Gateway::start(Settings::default().sandbox.standby_containers).await?;
    let mut cold = Gateway::start(0).await?;
    let result = match (gw.setup().await, cold.setup().await) {
        (Ok(()), Ok(())) => measure(&gw, &cold, samples).await,
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    // Whatever happened, nothing is left behind on the engine.
    gw.stop().await;
    cold.stop().await;
    let report = result?;
    report.print(samples);
    Ok(())
}

/// The engine answers and the image is there.
fn preflight() -> Res<()> {
    let ok = std::process::Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", IMAGE])
        .output()?
        .status
        .success();
    if !ok {
        return Err(format!(
            "no Docker engine here, or no image {IMAGE} (run deploy/images/build-test-image.sh)"
        )
        .into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The gateway, in process.

struct Gateway {
    url: String,
    ca: std::path::PathBuf,
    http: reqwest::Client,
    state: gateway::state::AppState,
    settings: Settings,
    instance: String,
    analyst: String,
    sandbox: Value,
    stop: tokio::sync::oneshot::Sender<()>,
    join: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Gateway {
    /// A gateway on a temporary data dir (SQLite), listening on a free loopback port, keeping
    /// containers started ahead for `standby` sandboxes.
    async fn start(standby: usize) -> Res<Gateway> {
        let dir = tempfile::Builder::new()
            .prefix("vre-bench-runs-")
            .tempdir()?;
        let mut settings = Settings {
            data_dir: dir.path().to_path_buf(),
            listen: "127.0.0.1:0".parse()?,
            ..Default::default()
        };
        settings.sandbox.max_concurrent_runs = CLIENTS;
        settings.sandbox.max_concurrent_runs_per_project = CLIENTS;
        settings.sandbox.standby_containers = standby;
        // The benchmark measures runs of ad-hoc commands, not the command rule.
        settings.sandbox.commands = gateway::wire::projects::CommandPolicy::Any;
        let app = gateway::startup::Application::build(settings.clone()).await?;
        let url = format!("https://127.0.0.1:{}", app.addr().port());
        let state = app.state().clone();
        let ca = app.ca_file().ok_or("the gateway made no CA")?.to_path_buf();
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let join = tokio::spawn(app.run_until_stopped(async move {
            let _ = rx.await;
        }));
        let http = gateway::client::http_client(Some(&ca))?;
        let instance = std::fs::read_to_string(dir.path().join("instance-id"))?
            .trim()
            .to_owned();
        Ok(Gateway {
            url,
            ca: ca.clone(),
            http,
            state,
            settings,
            instance,
            analyst: String::new(),
            sandbox: Value::Null,
            stop,
            join,
            _dir: dir,
        })
    }

    /// A project `bench` with the analyst `ana`, the test image allowed, one sandbox.
    async fn setup(&mut self) -> Res<()> {
        let admin = self.token("root", "admin")?;
        self.analyst = self.token("ana", "analyst")?;
        let op = self.token("op", "operator")?;
        self.call(
            reqwest::Method::POST,
            "/api/v1/projects",
            &admin,
            Some(json!({"id": "bench", "title": "Benchmark",
                        "members": [{"subject": "ana", "role": "analyst"}]})),
        )
        .await?;
        self.call(
            reqwest::Method::POST,
            "/api/v1/images",
            &op,
            Some(json!({"name": IMAGE})),
        )
        .await?;
        let ana = self.analyst.clone();
        self.sandbox = self
            .call(
                reqwest::Method::POST,
                "/api/v1/sandboxes",
                &ana,
                Some(json!({"project": "bench", "image": IMAGE})),
            )
            .await?;
        Ok(())
    }

    fn token(&self, sub: &str, roles: &str) -> Res<String> {
        let key = Ed25519Key::load_or_create(&self.settings.data_dir.join("keys/token.pem"))?;
        Ok(gateway::auth::issue(
            &key,
            &self.settings.auth,
            &Subject::parse(sub)?,
            RoleSet::parse_list(roles)?,
            Duration::from_secs(3600),
        )?)
    }

    fn sandbox_id(&self) -> String {
        self.sandbox["id"].as_str().unwrap_or_default().to_owned()
    }

    /// One API call; an answer other than 2xx is an error.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> Res<Value> {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            return Err(format!("{path}: {status}: {text}").into());
        }
        Ok(serde_json::from_str(&text)?)
    }

    /// One run of `true`, from the POST to seeing it finished; returns the time and the run.
    async fn run_true(&self) -> Res<(Duration, Value)> {
        let path = format!("/api/v1/sandboxes/{}/runs", self.sandbox_id());
        let t0 = Instant::now();
        let run = self
            .call(
                reqwest::Method::POST,
                &path,
                &self.analyst,
                Some(json!({"cmd": ["true"]})),
            )
            .await?;
        let get = format!(
            "/api/v1/runs/{}?wait=60",
            run["id"].as_str().unwrap_or_default()
        );
        loop {
            let r = self
                .call(reqwest::Method::GET, &get, &self.analyst, None)
                .await?;
            if r["state"] == "finished" {
                let took = t0.elapsed();
                if r["outcome"] != "exited" || r["exit_code"] != 0 {
                    return Err(format!("the run did not succeed: {r}").into());
                }
                return Ok((took, r));
            }
            // Not supervised (any more) by this gateway: ask again, not in a tight loop.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Deletes the sandbox through the API, stops the gateway, and removes from the engine
    /// anything still labelled with this gateway's instance.
    async fn stop(self) {
        let path = format!("/api/v1/sandboxes/{}", self.sandbox_id());
        if !self.sandbox.is_null() {
            if let Err(e) = self
                .call(reqwest::Method::DELETE, &path, &self.analyst, None)
                .await
            {
                eprintln!("removing the sandbox: {e}");
            }
        }
        let _ = self.stop.send(());
        let _ = self.join.await;
        let (containers, volumes) = engine_objects::remove_instance_objects(&self.instance);
        if containers + volumes > 0 {
            eprintln!("removed {containers} leftover container(s), {volumes} leftover volume(s)");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The bare engine cycle, with the gateway's own create request.

struct Bare {
    docker: Docker,
    instance: String,
    sandbox: sandbox_runner::SandboxSpec,
}

impl Bare {
    async fn new(gw: &Gateway) -> Res<Bare> {
        let docker = Docker::connect_with_local_defaults()?.with_timeout(Duration::from_secs(30));
        let class = gw
            .state
            .sandboxes
            .class(gw.sandbox["resource_class"].as_str().unwrap_or_default())
            .ok_or("the sandbox's class")?;
        // The sandbox the gateway made (no ingress, no dataset): its volumes are mounted.
        let sandbox = sandbox_runner::SandboxSpec {
            id: gw.sandbox_id(),
            project: "bench".into(),
            image_id: gw.sandbox["image_id"].as_str().unwrap_or_default().into(),
            resources: gateway::sandboxes::resources(class),
            ingress: Vec::new(),
            datasets: Vec::new(),
            runtime: gw.settings.sandbox.runtime.clone(),
        };
        Ok(Bare {
            docker,
            instance: gw.instance.clone(),
            sandbox,
        })
    }

    /// create, start, wait, remove: one container running `true`. Returns the whole cycle and
    /// the time of each of the four calls.
    async fn cycle(&self, n: usize) -> Res<(Duration, [Duration; 4])> {
        let run = sandbox_runner::RunSpec {
            id: format!("bench-{n}"),
            sandbox: self.sandbox.clone(),
            cmd: vec!["true".into()],
            env: Vec::new(),
        };
        let name = sandbox_runner::hardening::run_container_name(&run.id);
        let body = sandbox_runner::hardening::run_container(&self.instance, &run);
        let t0 = Instant::now();
        let id = self
            .docker
            .create_container(
                Some(CreateContainerOptionsBuilder::default().name(&name).build()),
                body,
            )
            .await?
            .id;
        let t1 = Instant::now();
        let mut t2 = t1;
        let result: Res<()> = async {
            self.docker.start_container(&id, None).await?;
            t2 = Instant::now();
            match self.docker.wait_container(&id, None).next().await {
                Some(Ok(w)) if w.status_code == 0 => Ok(()),
                other => Err(format!("the container did not exit cleanly: {other:?}").into()),
            }
        }
        .await;
        let t3 = Instant::now();
        self.docker
            .remove_container(
                &id,
                Some(RemoveContainerOptionsBuilder::default().force(true).build()),
            )
            .await?;
        let t4 = Instant::now();
        result?;
        Ok((t4 - t0, [t1 - t0, t2 - t1, t3 - t2, t4 - t3]))
    }
}

// ---------------------------------------------------------------------------------------------
// The docker CLI.

/// `vre run SANDBOX -- true` through the real binary, as an analyst would type it.
fn vre_run(url: &str, ca: &std::path::Path, token: &str, sandbox: &str) -> Res<Duration> {
    let mut vre = std::process::Command::new(env!("CARGO_BIN_EXE_vre"));
    // None of the caller's `VRE_*` variables (another gateway, token or configuration): only
    // the three below.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("VRE_") {
            vre.env_remove(k);
        }
    }
    let t0 = Instant::now();
    let out = vre
        .args(["run", sandbox, "--", "true"])
        .env("VRE_URL", url)
        .env("VRE_CA", ca)
        .env("VRE_TOKEN", token)
        .output()?;
    let took = t0.elapsed();
    if !out.status.success() {
        return Err(format!("vre run failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(took)
}

fn docker_run_rm() -> Res<Duration> {
    let t0 = Instant::now();
    let out = std::process::Command::new("docker")
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            "--read-only",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "-u",
            "65534:65534",
            IMAGE,
            "true",
        ])
        .output()?;
    let took = t0.elapsed();
    if !out.status.success() {
        return Err(format!(
            "docker run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(took)
}

// ---------------------------------------------------------------------------------------------
// The measurements.

/// A series of gateway runs.
#[derive(Default)]
struct Series {
    times: Vec<Duration>,
    /// The split (ms): POST to started (queue, container, command), started to the
    /// supervisor's end (wait, teardown), recording the end and the client seeing it.
    split: [Vec<f64>; 3],
}

struct Report {
    /// The gateway with its container started ahead, ready.
    ready: Series,
    /// The run right after, while that container is still being started.
    next: Series,
    /// A gateway that starts nothing ahead (`standby_containers = 0`).
    none: Series,
    bollard: Vec<Duration>,
    /// Medians of the bare cycle's calls (ms): create, start, wait, remove.
    bollard_split: [f64; 4],
    cli: Vec<Duration>,
    vre_cli: Vec<Duration>,
    gateway_rps: Throughput,
    cold_rps: Throughput,
    bollard_rps: Throughput,
}

/// Runs per second, the wall time, and the CPU time this process (the clients, and the gateway
/// in the gateway's case) and the engine used meanwhile.
struct Throughput {
    rps: f64,
    wall: Duration,
    cpu: f64,
    /// CPU seconds dockerd and containerd used meanwhile.
    engine_cpu: f64,
}

/// User + system CPU seconds of a process so far (`/proc/PID/stat`, in 1/100 s ticks).
fn cpu_of(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) / 100.0
}

/// CPU seconds of this process (the clients, and the in-process gateway).
fn cpu_seconds() -> f64 {
    cpu_of("self")
}

/// CPU seconds of the engine's daemons here (dockerd and containerd; not the per-container
/// shims and runc, which come and go), when they run on this machine.
fn engine_cpu_seconds() -> f64 {
    let pids = std::process::Command::new("pidof")
        .args(["dockerd", "containerd"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    pids.split_whitespace().map(cpu_of).sum()
}

/// Long enough for the container started ahead at a run's start to be running: the engine
/// creates and starts one in about 80 ms.
const SETTLE: Duration = Duration::from_millis(300);

/// One gateway run's time, and its split from the run's own timestamps.
fn gateway_sample(series: &mut Series, took: Duration, run: &Value) {
    let at = |k: &str| ms_of(run[k].as_str().unwrap_or_default());
    let (c, s, f) = (at("created_at"), at("started_at"), at("finished_at"));
    series.split[0].push(s - c);
    series.split[1].push(f - s);
    series.split[2].push(ms(took) - (f - c));
    series.times.push(took);
}

async fn measure(gw: &Gateway, cold: &Gateway, samples: usize) -> Res<Report> {
    let bare = Arc::new(Bare::new(gw).await?);
    let mut n = 0;

    eprintln!(
        "latency: {WARMUP} warm-up + {samples} rounds of (gateway: ready, then right after; \
         gateway with nothing ahead; bollard; docker run; vre run) ..."
    );
    let (mut ready, mut next, mut none) = (Series::default(), Series::default(), Series::default());
    let mut bollard = Vec::new();
    let mut bollard_split: [Vec<f64>; 4] = Default::default();
    let mut cli = Vec::new();
    let mut vre_cli = Vec::new();
    for round in 0..WARMUP + samples {
        let keep = round >= WARMUP;
        // The series are interleaved, in a rotating order, so that a drift of the machine
        // (another load, the engine's state) spreads over all of them alike.
        for k in 0..5 {
            match (round + k) % 5 {
                0 => {
                    // A run when its container is ready (the analyst's usual case: the next
                    // run comes seconds after the last), then one right after it, while the
                    // engine is still starting the container for it.
                    tokio::time::sleep(SETTLE).await;
                    let (took, run) = gw.run_true().await?;
                    let (took2, run2) = gw.run_true().await?;
                    if keep {
                        gateway_sample(&mut ready, took, &run);
                        gateway_sample(&mut next, took2, &run2);
                    }
                }
                1 => {
                    let (took, run) = cold.run_true().await?;
                    if keep {
                        gateway_sample(&mut none, took, &run);
                    }
                }
                2 => {
                    let (took, calls) = bare.cycle(n).await?;
                    n += 1;
                    if keep {
                        for (v, d) in bollard_split.iter_mut().zip(calls) {
                            v.push(ms(d));
                        }
                        bollard.push(took);
                    }
                }
                3 => {
                    let took = tokio::task::spawn_blocking(docker_run_rm).await??;
                    if keep {
                        cli.push(took);
                    }
                }
                _ => {
                    tokio::time::sleep(SETTLE).await;
                    let (url, ca, token) = (gw.url.clone(), gw.ca.clone(), gw.analyst.clone());
                    let sandbox = gw.sandbox_id();
                    let took =
                        tokio::task::spawn_blocking(move || vre_run(&url, &ca, &token, &sandbox))
                            .await??;
                    if keep {
                        vre_cli.push(took);
                    }
                }
            }
        }
    }

    eprintln!("throughput: {RUNS_TOTAL} gateway runs by {CLIENTS} clients, twice ...");
    let gateway_rps = throughput(|_| async { gw.run_true().await.map(|_| ()) }).await?;
    let cold_rps = throughput(|_| async { cold.run_true().await.map(|_| ()) }).await?;
    eprintln!("throughput: {RUNS_TOTAL} bare bollard cycles by {CLIENTS} clients ...");
    let bollard_rps = throughput(|i| {
        let bare = bare.clone();
        async move { bare.cycle(n + i).await.map(|_| ()) }
    })
    .await?;

    Ok(Report {
        ready,
        next,
        none,
        bollard,
        bollard_split: bollard_split.map(|v| median(&v)),
        cli,
        vre_cli,
        gateway_rps,
        cold_rps,
        bollard_rps,
    })
}

/// `RUNS_TOTAL` calls of `one` (given their number) by `CLIENTS` concurrent clients, each
/// starting its next as soon as the last ended; with the CPU used meanwhile.
async fn throughput<F, Fut>(one: F) -> Res<Throughput>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Res<()>>,
{
    let (t0, cpu0, engine0) = (Instant::now(), cpu_seconds(), engine_cpu_seconds());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let client = || async {
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if i >= RUNS_TOTAL {
                return Ok::<_, BoxError>(());
            }
            one(i).await?;
        }
    };
    for r in futures_util::future::join_all((0..CLIENTS).map(|_| client())).await {
        r?;
    }
    let took = t0.elapsed();
    Ok(Throughput {
        rps: RUNS_TOTAL as f64 / took.as_secs_f64(),
        wall: took,
        cpu: cpu_seconds() - cpu0,
        engine_cpu: engine_cpu_seconds() - engine0,
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Milliseconds since the epoch of a gateway timestamp (RFC 3339, milliseconds).
fn ms_of(s: &str) -> f64 {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as f64)
        .unwrap_or(f64::NAN)
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The nearest-rank percentile, in milliseconds.
fn pct(v: &[Duration], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort();
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v.get(rank - 1).copied().map(ms).unwrap_or(f64::NAN)
}

impl Report {
    fn print(&self, samples: usize) {
        let row = |name: &str, v: &[Duration]| {
            println!(
                "{name:<34} {:>9.1} {:>9.1} {:>9.1}",
                pct(v, 50.0),
                pct(v, 90.0),
                pct(v, 100.0)
            );
        };
        println!();
        println!("runs of `true`, {samples} samples each after {WARMUP} warm-up (ms)");
        println!("{:<34} {:>9} {:>9} {:>9}", "", "p50", "p90", "max");
        row("gateway, container ready", &self.ready.times);
        row("gateway, the next run right after", &self.next.times);
        row("gateway, nothing started ahead", &self.none.times);
        row("bare bollard create/start/wait/rm", &self.bollard);
        row("docker run --rm (CLI)", &self.cli);
        row("vre run -- true (CLI, ready)", &self.vre_cli);
        for (name, series) in [
            ("ready", &self.ready),
            ("right after", &self.next),
            ("nothing ahead", &self.none),
        ] {
            let [q, r, rest] = series.split.clone().map(|v| median(&v));
            println!(
                "  gateway split, {name} (medians): POST->started {q:.0}, started->supervisor done {r:.0}, \
                 record + seen {rest:.0}"
            );
        }
        let [c, s, w, rm] = self.bollard_split;
        println!(
            "  bollard split (medians): create {c:.0}, start {s:.0}, wait {w:.0}, remove {rm:.0}"
        );
        println!();
        println!("throughput, {RUNS_TOTAL} runs at {CLIENTS} concurrent");
        let line = |name: &str, t: &Throughput, what: &str| {
            println!(
                "{name:<34} {:>9.1} runs/s  ({:.2} s; CPU-s: {:.2} {what}, {:.2} engine)",
                t.rps,
                t.wall.as_secs_f64(),
                t.cpu,
                t.engine_cpu,
            );
        };
        line("gateway", &self.gateway_rps, "clients + gateway");
        line(
            "gateway, nothing ahead",
            &self.cold_rps,
            "clients + gateway",
        );
        line("bare bollard", &self.bollard_rps, "the client");
        println!();
        let b = pct(&self.bollard, 50.0);
        let c = pct(&self.cli, 50.0);
        let verdict = |ok: bool| if ok { "PASS" } else { "MISS" };
        for (name, series) in [
            ("gateway p50", &self.ready),
            ("  (right after) ", &self.next),
            ("  (nothing ahead)", &self.none),
        ] {
            let g = pct(&series.times, 50.0);
            println!(
                "target {name:<17} <= 1.3 x bollard p50:         {g:.1} <= {:.1}  ({:.2}x)  {}",
                1.3 * b,
                g / b,
                verdict(g <= 1.3 * b)
            );
            println!(
                "target {name:<17} <= 0.5 x docker run --rm p50: {g:.1} <= {:.1}  ({:.2}x)  {}",
                0.5 * c,
                g / c,
                verdict(g <= 0.5 * c)
            );
        }
        let v = pct(&self.vre_cli, 50.0);
        println!(
            "(not a target) CLI to CLI, vre run p50 / docker run --rm p50: {v:.1} / {c:.1}  ({:.2}x)",
            v / c
        );
    }
}
