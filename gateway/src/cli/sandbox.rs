//! `vre image` and `vre sandbox`: the images sandboxes may use, and the sandboxes themselves.

use std::process::ExitCode;

use clap::Subcommand;
use serde_json::{Value, json};

use super::shared::{ClientArgs, join, print_json, s, urlencode};

#[derive(Subcommand)]
pub(super) enum ImageCommand {
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

pub(super) async fn image(cmd: ImageCommand) -> anyhow::Result<ExitCode> {
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

pub(super) async fn sandbox(cmd: SandboxCommand) -> anyhow::Result<ExitCode> {
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
