//! `vre access`: apply for a project's access to registered datasets; revoke one (admins).

use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};
use serde_json::json;

use super::shared::{ClientArgs, Revoking, print_as, print_json};
use crate::wire::applications::{AccessRevoked, Application, NewApplication};

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum YesNo {
    Yes,
    No,
}

#[derive(Subcommand)]
pub(super) enum AccessCommand {
    /// Apply for a project's access to one or more registered datasets; prints the access
    /// application's id. Once the committee approves it, the project's sandboxes may mount them.
    Request {
        #[arg(long)]
        project: String,
        /// A registered dataset's id; once per dataset.
        #[arg(long = "dataset", required = true)]
        datasets: Vec<String>,
        /// What the data is for.
        #[arg(long)]
        purpose: String,
        /// The last day of access, YYYY-MM-DD (UTC); none: until revoked.
        #[arg(long)]
        until: Option<String>,
        /// Whether the use is commercial.
        #[arg(long, default_value = "no")]
        commercial: YesNo,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Revoke an approved access application (admins): the access ends at once and live runs
    /// that mount its datasets are stopped.
    Revoke(Revoking),
}

pub(super) async fn access(cmd: AccessCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AccessCommand::Request {
            project,
            datasets,
            purpose,
            until,
            commercial,
            client,
        } => {
            let mut payload = json!({
                "datasets": datasets,
                "purpose": purpose,
                "commercial": matches!(commercial, YesNo::Yes),
            });
            if let Some(u) = until {
                payload["until"] = json!(u);
            }
            let body = NewApplication {
                kind: "access".into(),
                project,
                title: format!("Access to {}", datasets.join(", ")),
                description: purpose,
                payload: Some(payload),
            };
            let a: Application = client.client()?.post("/api/v1/applications", &body).await?;
            if client.json {
                print_json(&json!({"id": a.id}));
            } else {
                println!("{}", a.id);
            }
        }
        AccessCommand::Revoke(r) => {
            let client = r.client.clone();
            let r: AccessRevoked = super::shared::revoke("access", r).await?;
            print_as(&client, &r, |r| {
                println!("revoked {}: {}", r.application, r.datasets.join(", "));
                for run in &r.cancelled_runs {
                    println!("  stopped run {run}");
                }
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}
