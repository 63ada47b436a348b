//! The command line: `vre server`, offline tools (`token issue`, `audit verify`) and the client
//! commands that talk to a running gateway.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use base64::Engine as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use policy::ids::Subject;
use policy::roles::RoleSet;
use serde_json::{Value, json};
use sha2::Digest;

use crate::client::Client;
use crate::config::Settings;

#[derive(Parser)]
#[command(
    name = "vre",
    version,
    about = "VRE Gateway: bring programs to sensitive data, take out only approved results"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Server(ServerArgs),
    /// Mint tokens with the gateway's own key (offline).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Projects and their members.
    #[command(subcommand)]
    Project(ProjectCommand),
    /// Applications to the committee.
    #[command(subcommand)]
    App(AppCommand),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Bring programs and reference data into the environment.
    #[command(subcommand)]
    Ingress(IngressCommand),
    /// Images sandboxes may use.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Sandboxes: a project's hardened workspaces.
    #[command(subcommand)]
    Sandbox(SandboxCommand),
    /// Run a command in a fresh hardened container of a sandbox; streams its output and exits
    /// with its exit code.
    Run {
        sandbox: String,
        /// Kill the run after this long (30s, 10m, 2h).
        #[arg(long)]
        timeout: Option<String>,
        /// Return at once with the run's id instead of following it.
        #[arg(long)]
        detach: bool,
        #[command(flatten)]
        client: ClientArgs,
        /// The command and its arguments (after `--`).
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
    /// A run's output (stdout and stderr) so far; with --follow, until it ends, exiting with
    /// its exit code.
    Logs {
        run: String,
        /// Keep streaming until the run ends, and exit with its code (Ctrl-C stops following;
        /// the run goes on).
        #[arg(long, short)]
        follow: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Cancel a run, queued or running: it is killed and recorded as cancelled.
    Cancel {
        run: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show who the token says you are.
    Whoami(ClientArgs),
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Allow an image the engine has, pinned by its current ID (operators).
    Allow {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List the allowed images.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand)]
enum SandboxCommand {
    /// Create a sandbox for a project, staging approved ingress.
    Create {
        #[arg(long)]
        project: String,
        /// An allowed image (see `vre image list`).
        #[arg(long)]
        image: String,
        /// A resource class from the configuration.
        #[arg(long)]
        class: Option<String>,
        /// An approved ingress application to stage (repeatable).
        #[arg(long = "ingress")]
        ingress: Vec<String>,
        /// A dataset to mount read-only (repeatable).
        #[arg(long = "dataset")]
        datasets: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List sandboxes.
    List {
        #[arg(long)]
        project: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show a sandbox and its runs.
    Show {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Stage another approved ingress application.
    Stage {
        id: String,
        application: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Remove a sandbox and its volumes.
    Remove {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand)]
enum IngressCommand {
    /// Upload a directory (packed as tar.zst on the fly), a .tar or a .tar.zst and apply for
    /// its ingress.
    Submit {
        #[arg(long)]
        project: String,
        path: PathBuf,
        /// A name for the archive (default: the file or directory name).
        #[arg(long)]
        name: Option<String>,
        /// Why it is needed, for the committee.
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Args, Clone)]
struct ServerArgs {
    /// A TOML configuration file.
    #[arg(long, env = "VRE_CONFIG")]
    config: Option<PathBuf>,
    /// Where the gateway keeps its data (default ./vre-data).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address to listen on (default 127.0.0.1:8443).
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
}

/// How to reach the gateway; every client command takes these.
#[derive(Args, Clone)]
struct ClientArgs {
    /// The gateway's URL.
    #[arg(
        long,
        env = "VRE_URL",
        default_value = "https://127.0.0.1:8443",
        global = true
    )]
    url: String,
    /// A bearer token (see `vre token issue`).
    #[arg(long, env = "VRE_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// A CA certificate to trust (default: ./vre-data/tls/ca.pem when present).
    #[arg(long, env = "VRE_CA", global = true)]
    ca: Option<PathBuf>,
    /// Print machine-readable JSON.
    #[arg(long, global = true)]
    json: bool,
}

impl ClientArgs {
    fn client(&self) -> anyhow::Result<Client> {
        let default_ca = PathBuf::from("vre-data/tls/ca.pem");
        let ca = self
            .ca
            .clone()
            .or_else(|| default_ca.exists().then_some(default_ca));
        let token = self.token.clone();
        if token.is_none() {
            anyhow::bail!(
                "no token: pass --token or set VRE_TOKEN (an admin can mint one with `vre token issue`)"
            );
        }
        Client::new(&self.url, token, ca.as_deref())
    }
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Mint a token signed with the gateway's key.
    Issue {
        #[arg(long)]
        sub: String,
        /// One or more roles, comma-separated: analyst, reviewer, operator, steward, auditor, admin.
        #[arg(long)]
        role: String,
        /// How long the token is valid (30m, 8h, 7d).
        #[arg(long, default_value = "8h")]
        ttl: String,
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[arg(long, env = "VRE_CONFIG")]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ProjectCommand {
    /// Create a project.
    Create {
        id: String,
        #[arg(long)]
        title: String,
        /// The AMED grant number.
        #[arg(long)]
        grant: Option<String>,
        /// SUBJECT:ROLE, repeatable (roles: analyst, steward).
        #[arg(long = "member")]
        members: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List projects.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show a project and its members.
    Show {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Add a member: SUBJECT:ROLE.
    AddMember {
        id: String,
        member: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Remove a member (all roles, or one with --role).
    RemoveMember {
        id: String,
        subject: String,
        #[arg(long)]
        role: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum AttachmentKind {
    InstitutionReview,
    CommitteeOpinion,
}

#[derive(Subcommand)]
enum AppCommand {
    /// Apply to the committee (listing, extension or access).
    Create {
        #[arg(long)]
        kind: String,
        #[arg(long)]
        project: String,
        #[arg(long)]
        title: String,
        #[arg(long, default_value = "")]
        description: String,
        /// Kind-specific details as a JSON object.
        #[arg(long)]
        payload: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List applications.
    List {
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        project: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show an application, its votes and attachments.
    Show {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Vote to approve.
    Approve(DecisionArgs),
    /// Vote to reject.
    Reject(DecisionArgs),
    /// Send it back for changes.
    RequestChanges(DecisionArgs),
    /// Take your application back.
    Withdraw {
        id: String,
        #[arg(long, default_value = "")]
        comment: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Resubmit after a request for changes.
    Resubmit {
        id: String,
        #[arg(long)]
        comment: String,
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Attach an institution's review result or a committee opinion.
    Attach {
        id: String,
        #[arg(long, value_enum)]
        kind: AttachmentKind,
        #[arg(long)]
        text: String,
        #[arg(long)]
        file: Option<PathBuf>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print a text file inside an ingress archive (every read is audited).
    Cat {
        id: String,
        path: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Download an attachment's file.
    Attachment {
        id: String,
        attachment: String,
        #[arg(short, long)]
        output: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Args)]
struct DecisionArgs {
    id: String,
    #[arg(long)]
    comment: String,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the audit chain and its signed checkpoints, offline (exit 0 when intact).
    Verify {
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[arg(long, env = "VRE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// List audit events from a running gateway.
    List {
        #[arg(long)]
        after: Option<i64>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long)]
        subject: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let serving = matches!(cli.command, Command::Server(_));
    init_tracing(serving);
    if serving {
        crate::startup::tune_allocator();
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(server: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if server { "info" } else { "warn" };
    let filter = EnvFilter::try_from_env("VRE_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

fn load_settings(config: Option<&Path>, data_dir: Option<PathBuf>) -> anyhow::Result<Settings> {
    let (mut settings, warnings) = Settings::load(config, std::env::vars())?;
    for w in warnings {
        tracing::warn!("{w}");
    }
    if let Some(d) = data_dir {
        settings.data_dir = d;
    }
    Ok(settings)
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Server(args) => server(args).await,
        Command::Token(TokenCommand::Issue {
            sub,
            role,
            ttl,
            data_dir,
            config,
        }) => {
            let settings = load_settings(config.as_deref(), data_dir)?;
            let sub = Subject::parse(&sub)?;
            let roles = RoleSet::parse_list(&role)?;
            anyhow::ensure!(!roles.is_empty(), "give at least one role with --role");
            let ttl = crate::time::parse_duration(&ttl).map_err(anyhow::Error::msg)?;
            let data = crate::keys::DataDir::new(settings.data_dir.clone());
            data.create()?;
            let key = crate::keys::Ed25519Key::load_or_create(&data.token_key())?;
            println!(
                "{}",
                crate::auth::issue(&key, &settings.auth, &sub, roles, ttl)?
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit(AuditCommand::Verify { data_dir, config }) => {
            let settings = load_settings(config.as_deref(), data_dir)?;
            audit_verify(&settings).await
        }
        Command::Audit(AuditCommand::List {
            after,
            limit,
            subject,
            client,
        }) => {
            let c = client.client()?;
            let mut q = format!("/api/v1/audit?limit={limit}");
            if let Some(a) = after {
                q.push_str(&format!("&after={a}"));
            }
            if let Some(s) = subject {
                q.push_str(&format!("&subject={}", urlencode(&s)));
            }
            let v: Value = c.get(&q).await?;
            if client.json {
                print_json(&v);
            } else {
                for e in v.as_array().into_iter().flatten() {
                    println!(
                        "{:>6}  {}  {:<14} {:<30} {}  {}",
                        e["seq"],
                        s(&e["at"]),
                        s(&e["actor"]),
                        s(&e["action"]),
                        s(&e["subject"]),
                        s(&e["detail"])
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Whoami(client) => {
            let v: Value = client.client()?.get("/api/v1/whoami").await?;
            if client.json {
                print_json(&v);
            } else {
                println!("{} ({})", s(&v["sub"]), join(&v["roles"]));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Project(p) => project(p).await,
        Command::Image(i) => image(i).await,
        Command::Sandbox(sb) => sandbox(sb).await,
        Command::Run {
            sandbox,
            timeout,
            detach,
            client,
            cmd,
        } => run_command(sandbox, timeout, detach, client, cmd).await,
        Command::Logs {
            run,
            follow,
            client,
        } => {
            let c = client.client()?;
            if follow {
                return follow_run(&client, &c, &run, false).await;
            }
            let mut out = std::io::stdout();
            c.stream(&format!("/api/v1/runs/{}/logs", urlencode(&run)), |chunk| {
                use std::io::Write as _;
                let _ = out.write_all(chunk);
            })
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Cancel { run, client } => {
            let v = cancel_run(&client, &run).await?;
            if client.json {
                print_json(&v);
            } else {
                println!("{}  {}: cancelling", s(&v["id"]), s(&v["state"]));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Ingress(IngressCommand::Submit {
            project,
            path,
            name,
            description,
            client,
        }) => ingress_submit(project, path, name, description, client).await,
        Command::App(a) => app(a).await,
    }
}

async fn server(args: ServerArgs) -> anyhow::Result<ExitCode> {
    let mut settings = load_settings(args.config.as_deref(), args.data_dir)?;
    if let Some(l) = args.listen {
        settings.listen = l;
    }
    tracing::debug!(?settings, "settings");
    let app = crate::startup::Application::build(settings).await?;
    let addr = app.addr();
    let host = if addr.ip().is_loopback() && addr.is_ipv4() {
        format!("127.0.0.1:{}", addr.port())
    } else {
        addr.to_string()
    };
    println!("VRE Gateway listening on https://{host}");
    if let Some(ca) = app.ca_file() {
        let ca = std::fs::canonicalize(ca).unwrap_or_else(|_| ca.to_path_buf());
        println!("CA certificate: {}", ca.display());
    }
    tracing::info!(%addr, "ready");
    app.run_until_stopped(crate::startup::shutdown_signal())
        .await?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

async fn audit_verify(settings: &Settings) -> anyhow::Result<ExitCode> {
    let data = crate::keys::DataDir::new(settings.data_dir.clone());
    let public_path = data.audit_public_key();
    anyhow::ensure!(
        public_path.exists(),
        "no audit key at {}: is {} a gateway's data dir?",
        public_path.display(),
        settings.data_dir.display()
    );
    let public = crate::keys::PublicKey::load(&public_path)?;
    let url = settings.database_url();
    if url.starts_with("sqlite:") {
        let file = settings.data_dir.join("vre.db");
        anyhow::ensure!(
            !settings.database_url.expose().is_empty() || file.exists(),
            "no database at {}",
            file.display()
        );
    }
    let db = crate::db::Db::open(&url, 2).await?;
    let report = crate::audit::verify(&db, &settings.checkpoint_dir(), &public).await?;
    db.close().await;
    match report.problem {
        None => {
            println!(
                "audit log intact: {} events, {} signed checkpoints",
                report.events, report.checkpoints
            );
            Ok(ExitCode::SUCCESS)
        }
        Some(p) => {
            println!("audit log TAMPERED: {p}");
            Ok(ExitCode::from(1))
        }
    }
}

fn parse_member_arg(m: &str) -> anyhow::Result<Value> {
    let (sub, role) = m
        .rsplit_once(':')
        .with_context(|| format!("`{m}` is not SUBJECT:ROLE"))?;
    Ok(json!({"subject": sub, "role": role}))
}

async fn project(cmd: ProjectCommand) -> anyhow::Result<ExitCode> {
    let (client, v): (ClientArgs, Value) = match cmd {
        ProjectCommand::Create {
            id,
            title,
            grant,
            members,
            client,
        } => {
            let members = members
                .iter()
                .map(|m| parse_member_arg(m))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let body = json!({"id": id, "title": title, "grant_number": grant, "members": members});
            let v = client.client()?.post("/api/v1/projects", &body).await?;
            (client, v)
        }
        ProjectCommand::List { client } => {
            let v: Value = client.client()?.get("/api/v1/projects").await?;
            if !client.json {
                for p in v.as_array().into_iter().flatten() {
                    println!("{:<24} {}", s(&p["id"]), s(&p["title"]));
                }
                return Ok(ExitCode::SUCCESS);
            }
            (client, v)
        }
        ProjectCommand::Show { id, client } => {
            let v = client
                .client()?
                .get(&format!("/api/v1/projects/{}", urlencode(&id)))
                .await?;
            (client, v)
        }
        ProjectCommand::AddMember { id, member, client } => {
            let body = parse_member_arg(&member)?;
            let v = client
                .client()?
                .post(
                    &format!("/api/v1/projects/{}/members", urlencode(&id)),
                    &body,
                )
                .await?;
            (client, v)
        }
        ProjectCommand::RemoveMember {
            id,
            subject,
            role,
            client,
        } => {
            let mut path = format!(
                "/api/v1/projects/{}/members/{}",
                urlencode(&id),
                urlencode(&subject)
            );
            if let Some(r) = role {
                path.push_str(&format!("?role={}", urlencode(&r)));
            }
            let v = client.client()?.delete(&path).await?;
            (client, v)
        }
    };
    if client.json {
        print_json(&v);
    } else {
        println!("{}  {}", s(&v["id"]), s(&v["title"]));
        if let Some(g) = v["grant_number"].as_str() {
            println!("  grant: {g}");
        }
        for m in v["members"].as_array().into_iter().flatten() {
            println!("  {:<10} {}", s(&m["role"]), s(&m["subject"]));
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn app(cmd: AppCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AppCommand::Create {
            kind,
            project,
            title,
            description,
            payload,
            client,
        } => {
            let payload: Value = match payload {
                Some(p) => serde_json::from_str(&p).context("--payload is not JSON")?,
                None => json!({}),
            };
            let body = json!({"kind": kind, "project": project, "title": title, "description": description, "payload": payload});
            let v: Value = client.client()?.post("/api/v1/applications", &body).await?;
            print_app(&client, &v);
        }
        AppCommand::List {
            kind,
            state,
            project,
            client,
        } => {
            let mut q = vec![];
            for (k, v) in [("kind", kind), ("state", state), ("project", project)] {
                if let Some(v) = v {
                    q.push(format!("{k}={}", urlencode(&v)));
                }
            }
            let v: Value = client
                .client()?
                .get(&format!("/api/v1/applications?{}", q.join("&")))
                .await?;
            if client.json {
                print_json(&v);
            } else {
                for a in v.as_array().into_iter().flatten() {
                    println!(
                        "{:<18} {:<9} {:<18} {:<16} {}/{}  {}",
                        s(&a["id"]),
                        s(&a["kind"]),
                        s(&a["state"]),
                        s(&a["project"]),
                        a["approvals"],
                        a["quorum"],
                        s(&a["title"])
                    );
                }
            }
        }
        AppCommand::Show { id, client } => {
            let c = client.client()?;
            let mut v: Value = c
                .get(&format!("/api/v1/applications/{}", urlencode(&id)))
                .await?;
            let manifest: Option<Value> = if v["kind"] == "ingress" {
                Some(
                    c.get(&format!("/api/v1/applications/{}/manifest", urlencode(&id)))
                        .await?,
                )
            } else {
                None
            };
            if client.json {
                if let Some(m) = manifest {
                    v["manifest"] = m;
                }
                print_json(&v);
            } else {
                print_app(&client, &v);
                if !s(&v["description"]).is_empty() {
                    println!("\n{}\n", s(&v["description"]));
                }
                for d in v["decisions"].as_array().into_iter().flatten() {
                    println!(
                        "  round {} {:<16} {:<12} {}",
                        d["round"],
                        s(&d["decision"]),
                        s(&d["reviewer"]),
                        s(&d["comment"])
                    );
                }
                for c in v["checks"].as_array().into_iter().flatten() {
                    println!(
                        "  check {:<20} {}",
                        s(&c["check"]),
                        s(&c["outcome"]).to_uppercase()
                    );
                    for r in c["reasons"].as_array().into_iter().flatten() {
                        println!("        {}", s(r));
                    }
                }
                if let Some(m) = &manifest {
                    let a = &m["archive"];
                    println!(
                        "  archive {} ({}), {} bytes, sha256 {}",
                        s(&a["name"]),
                        s(&a["format"]),
                        a["upload_bytes"],
                        s(&a["sha256"])
                    );
                    let entries = m["entries"].as_array().cloned().unwrap_or_default();
                    for e in entries.iter().take(200) {
                        println!(
                            "    {:>4o} {:>12} {}  {}",
                            e["mode"].as_u64().unwrap_or(0),
                            e["size"],
                            e["sha256"]
                                .as_str()
                                .map(|h| &h[..16])
                                .unwrap_or("directory       "),
                            s(&e["path"])
                        );
                    }
                    if entries.len() > 200 {
                        println!(
                            "    … and {} more entries (--json lists all)",
                            entries.len() - 200
                        );
                    }
                }
                for a in v["attachments"].as_array().into_iter().flatten() {
                    println!(
                        "  [{}] {} by {}: {}{}",
                        s(&a["id"]),
                        s(&a["kind"]),
                        s(&a["author"]),
                        s(&a["text"]),
                        a["file_name"]
                            .as_str()
                            .map(|f| format!(" (file: {f})"))
                            .unwrap_or_default()
                    );
                }
            }
        }
        AppCommand::Cat { id, path, client } => {
            let text = client
                .client()?
                .get_text(&format!(
                    "/api/v1/applications/{}/file?path={}",
                    urlencode(&id),
                    urlencode(&path)
                ))
                .await?;
            print!("{text}");
        }
        AppCommand::Approve(d) => decide(d, "approve").await?,
        AppCommand::Reject(d) => decide(d, "reject").await?,
        AppCommand::RequestChanges(d) => decide(d, "request_changes").await?,
        AppCommand::Withdraw {
            id,
            comment,
            client,
        } => {
            let v: Value = client
                .client()?
                .post(
                    &format!("/api/v1/applications/{}/withdraw", urlencode(&id)),
                    &json!({"comment": comment}),
                )
                .await?;
            print_app(&client, &v);
        }
        AppCommand::Resubmit {
            id,
            comment,
            description,
            client,
        } => {
            let v: Value = client
                .client()?
                .post(
                    &format!("/api/v1/applications/{}/resubmit", urlencode(&id)),
                    &json!({"comment": comment, "description": description}),
                )
                .await?;
            print_app(&client, &v);
        }
        AppCommand::Attach {
            id,
            kind,
            text,
            file,
            client,
        } => {
            let kind = match kind {
                AttachmentKind::InstitutionReview => "institution_review",
                AttachmentKind::CommitteeOpinion => "committee_opinion",
            };
            let mut body = json!({"kind": kind, "text": text});
            if let Some(f) = file {
                let bytes =
                    std::fs::read(&f).with_context(|| format!("reading {}", f.display()))?;
                let name = f
                    .file_name()
                    .and_then(|n| n.to_str())
                    .context("the file needs a UTF-8 name")?;
                body["file_name"] = json!(name);
                body["file_base64"] =
                    json!(base64::engine::general_purpose::STANDARD.encode(bytes));
            }
            let v: Value = client
                .client()?
                .post(
                    &format!("/api/v1/applications/{}/attachments", urlencode(&id)),
                    &body,
                )
                .await?;
            if client.json {
                print_json(&v);
            } else {
                println!("attached {}", s(&v["id"]));
            }
        }
        AppCommand::Attachment {
            id,
            attachment,
            output,
            client,
        } => {
            let sha = client
                .client()?
                .download(
                    &format!(
                        "/api/v1/applications/{}/attachments/{}/file",
                        urlencode(&id),
                        urlencode(&attachment)
                    ),
                    &output,
                )
                .await?;
            let got = crate::sha256_hex(&std::fs::read(&output)?);
            if let Some(want) = sha {
                anyhow::ensure!(
                    got == want,
                    "the download's SHA-256 {got} differs from the gateway's {want}"
                );
            }
            println!("{}  {}", got, output.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn ingress_submit(
    project: String,
    path: PathBuf,
    name: Option<String>,
    description: Option<String>,
    client: ClientArgs,
) -> anyhow::Result<ExitCode> {
    let c = client.client()?;
    let name = match name {
        Some(n) => n,
        None => std::fs::canonicalize(&path)
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "archive".into()),
    };
    let upload = crate::upload::prepare(&path)?;
    let packed = upload.packed;
    let show = !client.json && std::io::stderr().is_terminal();
    let (stream, hasher, bar) = crate::upload::instrument(upload, show);
    let mut q = format!(
        "/api/v1/ingress?project={}&name={}",
        urlencode(&project),
        urlencode(&name)
    );
    if let Some(d) = description {
        q.push_str(&format!("&description={}", urlencode(&d)));
    }
    let content_type = if packed {
        "application/zstd"
    } else {
        "application/x-tar"
    };
    let result: anyhow::Result<Value> = c
        .post_stream(&q, reqwest::Body::wrap_stream(stream), content_type)
        .await;
    bar.finish_and_clear();
    let v = result?;
    let sent = hex::encode(crate::lock(&hasher).clone().finalize());
    let got = s(&v["archive"]["sha256"]);
    anyhow::ensure!(
        sent == got,
        "the gateway recorded SHA-256 {got} but this client sent {sent}"
    );
    if client.json {
        print_json(&v);
    } else {
        let a = &v["archive"];
        println!("{}", s(&v["application"]["id"]));
        println!("  sha256   {}", got);
        println!(
            "  archive  {} ({}), {} bytes sent, {} files, {} bytes unpacked",
            s(&a["name"]),
            s(&a["format"]),
            a["upload_bytes"],
            a["files"],
            a["unpacked_bytes"]
        );
        println!("  checks   {}", s(&v["checks_outcome"]).to_uppercase());
        for ch in v["checks"].as_array().into_iter().flatten() {
            if ch["outcome"] != "pass" {
                for r in ch["reasons"].as_array().into_iter().flatten() {
                    println!("    {}: {}", s(&ch["check"]), s(r));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn image(cmd: ImageCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ImageCommand::Allow { name, client } => {
            let v: Value = client
                .client()?
                .post("/api/v1/images", &json!({"name": name}))
                .await?;
            if client.json {
                print_json(&v);
            } else {
                println!("{}  {}", s(&v["name"]), s(&v["image_id"]));
            }
        }
        ImageCommand::List { client } => {
            let v: Value = client.client()?.get("/api/v1/images").await?;
            if client.json {
                print_json(&v);
            } else {
                for i in v.as_array().into_iter().flatten() {
                    println!(
                        "{:<32} {}  {} bytes",
                        s(&i["name"]),
                        s(&i["image_id"]),
                        i["size"]
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_sandbox(client: &ClientArgs, v: &Value) {
    if client.json {
        print_json(v);
        return;
    }
    println!(
        "{}  {} in {} ({}, class {})",
        s(&v["id"]),
        s(&v["state"]),
        s(&v["project"]),
        s(&v["image"]),
        s(&v["resource_class"])
    );
    for i in v["ingress"].as_array().into_iter().flatten() {
        println!(
            "  ingress {}  staged sha256 {}",
            s(&i["application"]),
            s(&i["staged_sha256"])
        );
    }
    for d in v["datasets"].as_array().into_iter().flatten() {
        println!("  dataset {}", s(d));
    }
}

async fn sandbox(cmd: SandboxCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        SandboxCommand::Create {
            project,
            image,
            class,
            ingress,
            datasets,
            client,
        } => {
            let body = json!({"project": project, "image": image, "class": class, "ingress": ingress, "datasets": datasets});
            let v: Value = client.client()?.post("/api/v1/sandboxes", &body).await?;
            print_sandbox(&client, &v);
        }
        SandboxCommand::List { project, client } => {
            let q = project
                .map(|p| format!("?project={}", urlencode(&p)))
                .unwrap_or_default();
            let v: Value = client
                .client()?
                .get(&format!("/api/v1/sandboxes{q}"))
                .await?;
            if client.json {
                print_json(&v);
            } else {
                for sb in v.as_array().into_iter().flatten() {
                    println!(
                        "{:<18} {:<16} {:<24} {}",
                        s(&sb["id"]),
                        s(&sb["project"]),
                        s(&sb["image"]),
                        s(&sb["resource_class"])
                    );
                }
            }
        }
        SandboxCommand::Show { id, client } => {
            let c = client.client()?;
            let mut v: Value = c
                .get(&format!("/api/v1/sandboxes/{}", urlencode(&id)))
                .await?;
            let runs: Value = c
                .get(&format!("/api/v1/sandboxes/{}/runs", urlencode(&id)))
                .await?;
            if client.json {
                v["runs"] = runs;
                print_json(&v);
            } else {
                print_sandbox(&client, &v);
                for r in runs.as_array().into_iter().flatten() {
                    println!(
                        "  run {}  {} {} exit {}  {}",
                        s(&r["id"]),
                        s(&r["state"]),
                        s(&r["outcome"]),
                        r["exit_code"],
                        join(&r["cmd"]).replace(',', " ")
                    );
                }
            }
        }
        SandboxCommand::Stage {
            id,
            application,
            client,
        } => {
            let v: Value = client
                .client()?
                .post(
                    &format!("/api/v1/sandboxes/{}/ingress", urlencode(&id)),
                    &json!({"application": application}),
                )
                .await?;
            print_sandbox(&client, &v);
        }
        SandboxCommand::Remove { id, client } => {
            let v: Value = client
                .client()?
                .delete(&format!("/api/v1/sandboxes/{}", urlencode(&id)))
                .await?;
            print_sandbox(&client, &v);
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_command(
    sandbox: String,
    timeout: Option<String>,
    detach: bool,
    client: ClientArgs,
    cmd: Vec<String>,
) -> anyhow::Result<ExitCode> {
    let c = client.client()?;
    let timeout_secs = match timeout {
        Some(t) => Some(
            crate::time::parse_duration(&t)
                .map_err(anyhow::Error::msg)?
                .as_secs(),
        ),
        None => None,
    };
    let run: Value = c
        .post(
            &format!("/api/v1/sandboxes/{}/runs", urlencode(&sandbox)),
            &json!({"cmd": cmd, "timeout_secs": timeout_secs}),
        )
        .await?;
    let id = s(&run["id"]);
    if detach {
        if client.json {
            print_json(&run);
        } else {
            println!("{id}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    follow_run(&client, &c, &id, true).await
}

/// Streams a run's output until its end is recorded, then says how it ended (unless it
/// exited by itself) and exits with its code. With `cancel_on_interrupt` (the client that
/// started the run), Ctrl-C cancels the run, which is then followed to its recorded end, and a
/// second one leaves at once (the run goes on stopping without this client); otherwise Ctrl-C
/// only stops following.
async fn follow_run(
    client: &ClientArgs,
    c: &crate::client::Client,
    id: &str,
    cancel_on_interrupt: bool,
) -> anyhow::Result<ExitCode> {
    use std::io::Write as _;
    let interrupts = cancel_on_interrupt.then(|| {
        let (client, id) = (client.clone(), id.to_owned());
        // The client's side, for this one command, aborted when it returns: not one of the
        // server's background workers.
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_err() {
                return;
            }
            eprintln!("vre: cancelling run {id} (Ctrl-C again to stop waiting for it)");
            if let Err(e) = cancel_run(&client, &id).await {
                eprintln!("vre: cancelling run {id} failed: {e:#}");
            }
            let _ = tokio::signal::ctrl_c().await;
            std::process::exit(130);
        })
    });
    let _stop_listening = interrupts.map(AbortOnDrop);
    let mut out = std::io::stdout();
    c.stream(
        &format!("/api/v1/runs/{}/logs?follow=true", urlencode(id)),
        |chunk| {
            let _ = out.write_all(chunk);
            let _ = out.flush();
        },
    )
    .await?;
    // The log ends when the run's end is recorded; a run this gateway no longer supervises
    // (it restarted meanwhile) is waited for again until its end is recorded.
    let status = format!("/api/v1/runs/{}?wait=60", urlencode(id));
    let done = loop {
        let r: Value = c.get(&status).await?;
        if r["state"] == "finished" {
            break r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    if client.json {
        print_json(&done);
    }
    let outcome = s(&done["outcome"]);
    if outcome != "exited" {
        eprintln!(
            "vre: run {id} ended: {outcome}{}",
            done["detail"]
                .as_str()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        );
    }
    let code = done["exit_code"].as_i64().unwrap_or(125);
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}

/// Asks the gateway to cancel a run; the run as it is then.
async fn cancel_run(client: &ClientArgs, run: &str) -> anyhow::Result<Value> {
    client
        .client()?
        .post(
            &format!("/api/v1/runs/{}/cancel", urlencode(run)),
            &json!({}),
        )
        .await
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn decide(d: DecisionArgs, decision: &str) -> anyhow::Result<()> {
    let v: Value = d
        .client
        .client()?
        .post(
            &format!("/api/v1/applications/{}/decisions", urlencode(&d.id)),
            &json!({"decision": decision, "comment": d.comment}),
        )
        .await?;
    print_app(&d.client, &v);
    Ok(())
}

fn print_app(client: &ClientArgs, v: &Value) {
    if client.json {
        print_json(v);
    } else {
        println!(
            "{}  {} {} in {}: {} ({} of {} approvals, round {})",
            s(&v["id"]),
            s(&v["kind"]),
            s(&v["state"]),
            s(&v["project"]),
            s(&v["title"]),
            v["approvals"],
            v["quorum"],
            v["round"]
        );
    }
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn join(v: &Value) -> String {
    v.as_array()
        .map(|a| a.iter().map(s).collect::<Vec<_>>().join(","))
        .unwrap_or_default()
}

/// Percent-encodes a path segment or query value.
fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
