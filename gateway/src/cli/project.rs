//! `vre project`: projects and their members.

use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use serde_json::{Value, json};

use super::shared::{ClientArgs, print_json, s, urlencode};

#[derive(Subcommand)]
pub(super) enum ProjectCommand {
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

fn parse_member_arg(m: &str) -> anyhow::Result<Value> {
    let (sub, role) = m
        .rsplit_once(':')
        .with_context(|| format!("`{m}` is not SUBJECT:ROLE"))?;
    Ok(json!({"subject": sub, "role": role}))
}

pub(super) async fn project(cmd: ProjectCommand) -> anyhow::Result<ExitCode> {
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
