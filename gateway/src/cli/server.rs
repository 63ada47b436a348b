//! `vre server`, the offline tools (`token issue`, `audit verify`) and the gateway-wide client
//! commands (`audit list`, `whoami`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::shared::{ClientArgs, PageArgs, print_as, print_list, query};
use crate::config::Settings;
use crate::wire::system::{StoredEvent, WhoAmI};
use clap::{Args, Subcommand};
use policy::ids::Subject;
use policy::roles::RoleSet;

#[derive(Args, Clone)]
pub(super) struct ServerArgs {
    /// A TOML configuration file.
    #[arg(long, env = "VRE_CONFIG")]
    pub(super) config: Option<PathBuf>,
    /// Where the gateway keeps its data (default ./vre-data).
    #[arg(long)]
    pub(super) data_dir: Option<PathBuf>,
    /// Address to listen on (default 127.0.0.1:8443).
    #[arg(long)]
    pub(super) listen: Option<std::net::SocketAddr>,
}

#[derive(Subcommand)]
pub(super) enum TokenCommand {
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
        /// The institution a steward speaks for: the `providing_institution.id` of its DMPs.
        #[arg(long)]
        institution: Option<String>,
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[arg(long, env = "VRE_CONFIG")]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
pub(super) enum AuditCommand {
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
        #[arg(long)]
        subject: Option<String>,
        #[command(flatten)]
        filter: AuditFilterArgs,
        #[command(flatten)]
        page: PageArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// What `vre audit list` narrows the log to, beside its subject.
#[derive(clap::Args, Debug, Default)]
pub(super) struct AuditFilterArgs {
    /// Only events of this actor.
    #[arg(long)]
    actor: Option<String>,
    /// Only events of this action (`application.decision`).
    #[arg(long)]
    action: Option<String>,
    /// Only events on or after this day (YYYY-MM-DD, UTC).
    #[arg(long)]
    since: Option<String>,
    /// Only events on or before this day (YYYY-MM-DD, UTC).
    #[arg(long)]
    until: Option<String>,
}

pub(super) fn load_settings(
    config: Option<&Path>,
    data_dir: Option<PathBuf>,
) -> anyhow::Result<Settings> {
    let (mut settings, warnings) = Settings::load(config, std::env::vars())?;
    for w in warnings {
        tracing::warn!("{w}");
    }
    if let Some(d) = data_dir {
        settings.data_dir = d;
    }
    Ok(settings)
}

pub(super) async fn server(args: ServerArgs) -> anyhow::Result<ExitCode> {
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

pub(super) async fn audit_verify(settings: &Settings) -> anyhow::Result<ExitCode> {
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
        // Only the checkpoint file's last line is cut short (a crash while it was written):
        // the chain checks out against every complete line, and the next start repairs it.
        Some(p) if p.seq == 0 && report.torn_tail.is_some() => {
            println!(
                "audit log intact up to a torn last checkpoint line ({p}): {} events, {} signed \
                 checkpoints; the gateway cuts it at its next start",
                report.events, report.checkpoints
            );
            Ok(ExitCode::from(1))
        }
        Some(p) => {
            println!("audit log TAMPERED: {p}");
            Ok(ExitCode::from(1))
        }
    }
}

pub(super) fn token_issue(
    sub: String,
    role: String,
    ttl: String,
    institution: Option<String>,
    data_dir: Option<PathBuf>,
    config: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let settings = load_settings(config.as_deref(), data_dir)?;
    let sub = Subject::parse(&sub)?;
    let roles = RoleSet::parse_list(&role)?;
    anyhow::ensure!(!roles.is_empty(), "give at least one role with --role");
    let ttl = crate::time::parse_duration(&ttl).map_err(anyhow::Error::msg)?;
    if let Some(i) = &institution {
        policy::ids::ProjectId::parse(i).map_err(|e| {
            anyhow::anyhow!("{}", e.to_string().replace("project id", "institution"))
        })?;
    }
    let data = crate::keys::DataDir::new(settings.data_dir.clone());
    data.create()?;
    let key = crate::keys::Ed25519Key::load_or_create(&data.token_key())?;
    println!(
        "{}",
        crate::auth::issue_for(
            &key,
            &settings.auth,
            &sub,
            roles,
            institution.as_deref(),
            ttl
        )?
    );
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn audit_list(
    after: Option<i64>,
    subject: Option<String>,
    filter: AuditFilterArgs,
    page: PageArgs,
    client: ClientArgs,
) -> anyhow::Result<ExitCode> {
    let q = query([
        ("after", after.map(|a| a.to_string())),
        ("subject", subject),
        ("actor", filter.actor),
        ("action", filter.action),
        ("since", filter.since),
        ("until", filter.until),
    ]);
    print_list(
        &client,
        &format!("/api/v1/audit{q}"),
        &page,
        |e: &StoredEvent| {
            println!(
                "{:>6}  {}  {:<14} {:<30} {}  {}",
                e.seq, e.at, e.actor, e.action, e.subject, e.detail
            )
        },
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn whoami(client: ClientArgs) -> anyhow::Result<ExitCode> {
    let me: WhoAmI = client.client()?.get("/api/v1/whoami").await?;
    print_as(&client, &me, |me| {
        let roles: Vec<&str> = me.roles.iter().map(|r| r.as_str()).collect();
        println!("{} ({})", me.sub, roles.join(","));
    });
    Ok(ExitCode::SUCCESS)
}
