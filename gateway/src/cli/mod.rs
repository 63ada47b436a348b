//! The command line: `vre server`, offline tools (`token issue`, `audit verify`) and the client
//! commands that talk to a running gateway, one module per command group.

mod access;
mod app;
mod catalog;
mod dataset;
mod egress;
mod extension;
mod ingress;
mod project;
mod runs;
mod sandbox;
mod server;
mod shared;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use access::AccessCommand;
use app::AppCommand;
use catalog::CatalogCommand;
use dataset::DatasetCommand;
use egress::{EgressCommand, KeysCommand, ReleaseCommand};
use ingress::IngressCommand;
use project::ProjectCommand;
use sandbox::{ImageCommand, SandboxCommand};
use server::{AuditCommand, ServerArgs, TokenCommand};
use shared::ClientArgs;

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
    /// Access to datasets: apply for a project's.
    #[command(subcommand)]
    Access(AccessCommand),
    /// Datasets with their DMPs: register (and apply to list), list, show, export the DMP.
    #[command(subcommand)]
    Dataset(DatasetCommand),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Bring programs and reference data into the environment.
    #[command(subcommand)]
    Ingress(IngressCommand),
    /// Take results out: request, resubmit, preview.
    #[command(subcommand)]
    Egress(EgressCommand),
    /// The age key releases are encrypted to.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Releases: download (decrypt and verify) or revoke.
    #[command(subcommand)]
    Release(ReleaseCommand),
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
    /// The public catalog of datasets open to secondary use (no token needed).
    #[command(subcommand)]
    Catalog(CatalogCommand),
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

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Server(args) => server::server(args).await,
        Command::Token(TokenCommand::Issue {
            sub,
            role,
            ttl,
            institution,
            data_dir,
            config,
        }) => server::token_issue(sub, role, ttl, institution, data_dir, config),
        Command::Audit(AuditCommand::Verify { data_dir, config }) => {
            let settings = server::load_settings(config.as_deref(), data_dir)?;
            server::audit_verify(&settings).await
        }
        Command::Audit(AuditCommand::List {
            after,
            subject,
            filter,
            page,
            client,
        }) => server::audit_list(after, subject, filter, page, client).await,
        Command::Whoami(client) => server::whoami(client).await,
        Command::Project(p) => project::project(p).await,
        Command::Image(i) => sandbox::image(i).await,
        Command::Sandbox(sb) => sandbox::sandbox(sb).await,
        Command::Run {
            sandbox,
            timeout,
            detach,
            client,
            cmd,
        } => runs::run_command(sandbox, timeout, detach, client, cmd).await,
        Command::Logs {
            run,
            follow,
            client,
        } => runs::logs(run, follow, client).await,
        Command::Cancel { run, client } => runs::cancel(run, client).await,
        Command::Ingress(IngressCommand::Submit {
            project,
            path,
            name,
            description,
            client,
        }) => ingress::ingress_submit(project, path, name, description, client).await,
        Command::App(a) => app::app(a).await,
        Command::Dataset(d) => dataset::dataset(d).await,
        Command::Access(a) => access::access(a).await,
        Command::Egress(e) => egress::egress(e).await,
        Command::Keys(k) => egress::keys(k).await,
        Command::Release(r) => egress::release(r).await,
        Command::Catalog(c) => catalog::catalog(c).await,
    }
}
