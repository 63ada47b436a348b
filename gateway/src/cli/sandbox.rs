//! `vre image` and `vre sandbox`: the images sandboxes may use, and the sandboxes themselves.

use std::process::ExitCode;

use super::shared::{
    ById, ClientArgs, PageArgs, get_list, or_null, print_as, print_json, print_list, print_with,
    query, urlencode,
};
use crate::wire::sandboxes::{
    AllowImage, Image, LogVisibility, NewSandbox, Run, Sandbox, StageRequest,
};
use clap::Subcommand;

#[derive(Subcommand)]
pub(super) enum ImageCommand {
    /// Allow an image the engine has, pinned by its current ID (operators).
    Allow {
        name: String,
        /// A command runs may start under a project's `approved` policy (a bare name such as
        /// `ls`), repeatable. Allowing an image again replaces the list.
        #[arg(long = "command", value_name = "NAME")]
        commands: Vec<String>,
        /// An interpreter runs may start with a script of a staged ingress (`sh`, `python3`),
        /// repeatable. Allowing an image again replaces the list.
        #[arg(long = "interpreter", value_name = "NAME")]
        interpreters: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List the allowed images.
    List {
        #[command(flatten)]
        page: PageArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand)]
pub(super) enum SandboxCommand {
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
        /// A registered dataset to mount read-only, by id; needs the project's approved access
        /// in force (repeatable).
        #[arg(long = "dataset")]
        datasets: Vec<String>,
        /// `visible` (runs' output shown to the project's analysts) or `hidden` (only its size
        /// and digest; it leaves through egress). Default: the gateway's `[sandbox] logs`.
        #[arg(long)]
        logs: Option<LogVisibility>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List sandboxes.
    List {
        #[arg(long)]
        project: Option<String>,
        #[command(flatten)]
        page: PageArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show a sandbox and all its runs.
    Show(ById),
    /// List a sandbox's runs, oldest first.
    Runs {
        id: String,
        #[command(flatten)]
        page: PageArgs,
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
    Remove(ById),
}

pub(super) async fn image(cmd: ImageCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ImageCommand::Allow {
            name,
            commands,
            interpreters,
            client,
        } => {
            let body = AllowImage {
                name,
                commands,
                interpreters,
            };
            let image: Image = client.client()?.post("/api/v1/images", &body).await?;
            print_as(&client, &image, |i| {
                println!("{}  {}", i.name, i.image_id);
                if !i.commands.is_empty() {
                    println!("  commands: {}", i.commands.join(" "));
                }
                if !i.interpreters.is_empty() {
                    println!("  interpreters: {}", i.interpreters.join(" "));
                }
            });
        }
        ImageCommand::List { page, client } => {
            print_list(&client, "/api/v1/images", &page, |i: &Image| {
                println!("{:<32} {}  {} bytes", i.name, i.image_id, i.size)
            })
            .await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A line about a run, after `lead`.
fn print_run(r: &Run, lead: &str) {
    println!(
        "{lead}{}  {} {} exit {}  {}",
        r.id,
        r.state,
        r.outcome.map(|o| o.as_str()).unwrap_or_default(),
        or_null(&r.exit_code),
        r.cmd.join(" ")
    );
}

fn print_sandbox(client: &ClientArgs, sb: &Sandbox) {
    if client.json {
        print_json(sb);
        return;
    }
    println!(
        "{}  {} in {} ({}, class {})",
        sb.id, sb.state, sb.project, sb.image, sb.resource_class
    );
    for i in &sb.ingress {
        println!(
            "  ingress {}  staged sha256 {}",
            i.application, i.staged_sha256
        );
    }
    for d in &sb.datasets {
        println!("  dataset {d}");
    }
    if sb.logs == LogVisibility::Hidden {
        println!("  run output hidden: its size and digest only; it leaves through egress");
    }
}

pub(super) async fn sandbox(cmd: SandboxCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        SandboxCommand::Create {
            project,
            image,
            class,
            ingress,
            datasets,
            logs,
            client,
        } => {
            let body = NewSandbox {
                project,
                image,
                class,
                ingress,
                datasets,
                logs,
            };
            let sb: Sandbox = client.client()?.post("/api/v1/sandboxes", &body).await?;
            print_sandbox(&client, &sb);
        }
        SandboxCommand::List {
            project,
            page,
            client,
        } => {
            let q = query([("project", project)]);
            print_list(
                &client,
                &format!("/api/v1/sandboxes{q}"),
                &page,
                |sb: &Sandbox| {
                    println!(
                        "{:<18} {:<16} {:<24} {}",
                        sb.id, sb.project, sb.image, sb.resource_class
                    )
                },
            )
            .await?;
        }
        SandboxCommand::Show(ById { id, client }) => {
            let c = client.client()?;
            let sb: Sandbox = c
                .get(&format!("/api/v1/sandboxes/{}", urlencode(&id)))
                .await?;
            let runs: Vec<Run> = get_list(
                &c,
                &format!("/api/v1/sandboxes/{}/runs", urlencode(&id)),
                true,
            )
            .await?;
            print_with(&client, &sb, "runs", Some(&runs), || {
                print_sandbox(&client, &sb);
                runs.iter().for_each(|r| print_run(r, "  run "));
            })?;
        }
        SandboxCommand::Runs { id, page, client } => {
            let path = format!("/api/v1/sandboxes/{}/runs", urlencode(&id));
            print_list(&client, &path, &page, |r: &Run| print_run(r, "")).await?;
        }
        SandboxCommand::Stage {
            id,
            application,
            client,
        } => {
            let sb: Sandbox = client
                .client()?
                .post(
                    &format!("/api/v1/sandboxes/{}/ingress", urlencode(&id)),
                    &StageRequest { application },
                )
                .await?;
            print_sandbox(&client, &sb);
        }
        SandboxCommand::Remove(ById { id, client }) => {
            let sb: Sandbox = client
                .client()?
                .delete(&format!("/api/v1/sandboxes/{}", urlencode(&id)))
                .await?;
            print_sandbox(&client, &sb);
        }
    }
    Ok(ExitCode::SUCCESS)
}
