//! `vre project`: projects and their members.

use std::process::ExitCode;

use super::shared::{
    ById, ClientArgs, PageArgs, print_as, print_list, query, shown_line, urlencode,
};
use crate::wire::projects::{CommandPolicy, NewMember, NewProject, Project};
use anyhow::Context;
use clap::Subcommand;

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
        /// Which programs its runs may start: `approved` (programs of staged, approved ingress
        /// and the commands the operator allowed for the image) or `any`. Default: the
        /// gateway's `[sandbox] commands`.
        #[arg(long)]
        commands: Option<CommandPolicy>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List projects.
    List {
        #[command(flatten)]
        page: PageArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show a project and its members.
    Show(ById),
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

fn parse_member_arg(m: &str) -> anyhow::Result<NewMember> {
    let (sub, role) = m
        .rsplit_once(':')
        .with_context(|| format!("`{m}` is not SUBJECT:ROLE"))?;
    Ok(NewMember {
        subject: sub.to_owned(),
        role: role.to_owned(),
    })
}

pub(super) async fn project(cmd: ProjectCommand) -> anyhow::Result<ExitCode> {
    let (client, p): (ClientArgs, Project) = match cmd {
        ProjectCommand::Create {
            id,
            title,
            grant,
            members,
            commands,
            client,
        } => {
            let members = members
                .iter()
                .map(|m| parse_member_arg(m))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let body = NewProject {
                id,
                title,
                grant_number: grant,
                members,
                commands,
            };
            let p = client.client()?.post("/api/v1/projects", &body).await?;
            (client, p)
        }
        ProjectCommand::List { page, client } => {
            print_list(&client, "/api/v1/projects", &page, |p: &Project| {
                println!("{:<24} {}", p.id, shown_line(&p.title))
            })
            .await?;
            return Ok(ExitCode::SUCCESS);
        }
        ProjectCommand::Show(ById { id, client }) => {
            let p = client
                .client()?
                .get(&format!("/api/v1/projects/{}", urlencode(&id)))
                .await?;
            (client, p)
        }
        ProjectCommand::AddMember { id, member, client } => {
            let body = parse_member_arg(&member)?;
            let p = client
                .client()?
                .post(
                    &format!("/api/v1/projects/{}/members", urlencode(&id)),
                    &body,
                )
                .await?;
            (client, p)
        }
        ProjectCommand::RemoveMember {
            id,
            subject,
            role,
            client,
        } => {
            let path = format!(
                "/api/v1/projects/{}/members/{}{}",
                urlencode(&id),
                urlencode(&subject),
                query([("role", role)])
            );
            let p = client.client()?.delete(&path).await?;
            (client, p)
        }
    };
    print_as(&client, &p, |p| {
        println!("{}  {}", p.id, shown_line(&p.title));
        if let Some(g) = &p.grant_number {
            println!("  grant: {g}");
        }
        println!("  commands: {}", p.commands);
        for m in &p.members {
            println!("  {:<10} {}", m.role, m.subject);
        }
    });
    Ok(ExitCode::SUCCESS)
}
