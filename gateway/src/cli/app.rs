//! `vre app`: applications to the committee, their decisions and attachments.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use base64::Engine as _;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};

use serde::Serialize;

use super::shared::{
    ById, ClientArgs, PageArgs, print_as, print_list, print_with, query, shown, shown_line,
    urlencode,
};
use crate::wire::applications::{
    self as wire, Application, ApplicationDetail, ApplicationKind, Attachment, Conditions,
    DecisionChoice, Grant, NewApplication, NewAttachment, NewDecision, Resubmission, Withdrawal,
};
use crate::wire::ingress::Manifest;
use crate::wire::sandboxes::LogVisibility;

#[derive(Clone, Copy, ValueEnum)]
pub(super) enum AttachmentKind {
    InstitutionReview,
    CommitteeOpinion,
}

#[derive(Subcommand)]
pub(super) enum AppCommand {
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
        page: PageArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show an application, its votes and attachments.
    Show(ById),
    /// Vote to approve; on an access application, with conditions that tighten what it asks.
    Approve(ApproveArgs),
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

/// An approval, with the conditions it sets on an access application: the strictest of the
/// approving votes applies.
#[derive(Args)]
pub(super) struct ApproveArgs {
    #[command(flatten)]
    pub(super) decision: DecisionArgs,
    /// An earlier last day of access, YYYY-MM-DD (UTC).
    #[arg(long)]
    pub(super) until: Option<String>,
    /// `no`: no commercial use.
    #[arg(long)]
    pub(super) commercial: Option<super::access::YesNo>,
    /// `hidden`: runs mounting the datasets show the analysts only their output's size and
    /// digest.
    #[arg(long)]
    pub(super) logs: Option<LogVisibility>,
}

#[derive(Args)]
pub(super) struct DecisionArgs {
    pub(super) id: String,
    #[arg(long)]
    pub(super) comment: String,
    #[command(flatten)]
    pub(super) client: ClientArgs,
}

pub(super) async fn app(cmd: AppCommand) -> anyhow::Result<ExitCode> {
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
            let body = NewApplication {
                kind,
                project,
                title,
                description,
                payload: Some(payload),
            };
            let a: Application = client.client()?.post("/api/v1/applications", &body).await?;
            print_app(&client, &a);
        }
        AppCommand::List {
            kind,
            state,
            project,
            page,
            client,
        } => {
            let q = query([("kind", kind), ("state", state), ("project", project)]);
            print_list(
                &client,
                &format!("/api/v1/applications{q}"),
                &page,
                |a: &Application| {
                    println!(
                        "{:<18} {:<9} {:<18} {:<16} {}/{}  {}",
                        a.id,
                        a.kind,
                        a.state,
                        a.belongs_to(),
                        a.approvals,
                        a.quorum,
                        shown_line(&a.title)
                    )
                },
            )
            .await?;
        }
        AppCommand::Show(ById { id, client }) => {
            let c = client.client()?;
            let detail: ApplicationDetail = c
                .get(&format!("/api/v1/applications/{}", urlencode(&id)))
                .await?;
            let manifest: Option<Manifest> = if detail.application.kind == ApplicationKind::Ingress
            {
                Some(
                    c.get(&format!("/api/v1/applications/{}/manifest", urlencode(&id)))
                        .await?,
                )
            } else {
                None
            };
            if detail.application.kind == ApplicationKind::Egress {
                // Stewards outside the project see the application, not its files.
                let egress = super::egress::with_previews(&c, &id).await?;
                print_with(&client, &detail, "egress", egress.as_ref(), || {
                    print_detail(&client, &detail, None);
                    if let Some(e) = &egress {
                        super::egress::print_egress(e);
                    }
                })?;
            } else {
                print_with(&client, &detail, "manifest", manifest.as_ref(), || {
                    print_detail(&client, &detail, manifest.as_ref())
                })?;
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
            // A file under review is shown as it is, except what a terminal would act on
            // (escape sequences, carriage returns, bidirectional overrides): those are made
            // visible, so the file cannot hide a line of itself from its reviewer.
            print!("{}", shown(&text));
        }
        AppCommand::Approve(a) => {
            let conditions = Conditions {
                until: a.until,
                commercial: a.commercial.map(|c| matches!(c, super::access::YesNo::Yes)),
                logs: a.logs,
            };
            let conditions = (conditions != Conditions::default()).then_some(conditions);
            decide(a.decision, DecisionChoice::Approve, conditions).await?
        }
        AppCommand::Reject(d) => decide(d, DecisionChoice::Reject, None).await?,
        AppCommand::RequestChanges(d) => decide(d, DecisionChoice::RequestChanges, None).await?,
        AppCommand::Withdraw {
            id,
            comment,
            client,
        } => act(&client, &id, "withdraw", &Withdrawal { comment }).await?,
        AppCommand::Resubmit {
            id,
            comment,
            description,
            client,
        } => {
            let body = Resubmission {
                comment,
                description,
            };
            act(&client, &id, "resubmit", &body).await?
        }
        AppCommand::Attach {
            id,
            kind,
            text,
            file,
            client,
        } => {
            let kind = match kind {
                AttachmentKind::InstitutionReview => wire::AttachmentKind::InstitutionReview,
                AttachmentKind::CommitteeOpinion => wire::AttachmentKind::CommitteeOpinion,
            };
            let mut body = NewAttachment {
                kind: kind.as_str().to_owned(),
                text,
                file_name: None,
                file_base64: None,
            };
            if let Some(f) = file {
                let bytes =
                    std::fs::read(&f).with_context(|| format!("reading {}", f.display()))?;
                let name = f
                    .file_name()
                    .and_then(|n| n.to_str())
                    .context("the file needs a UTF-8 name")?;
                body.file_name = Some(name.to_owned());
                body.file_base64 = Some(base64::engine::general_purpose::STANDARD.encode(bytes));
            }
            let att: Attachment = client
                .client()?
                .post(
                    &format!("/api/v1/applications/{}/attachments", urlencode(&id)),
                    &body,
                )
                .await?;
            print_as(&client, &att, |att| println!("attached {}", att.id));
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

/// An application for people: its summary, description, votes, checks, the archive's manifest
/// (ingress) and its attachments.
fn print_detail(client: &ClientArgs, detail: &ApplicationDetail, manifest: Option<&Manifest>) {
    print_app(client, &detail.application);
    if !detail.application.description.is_empty() {
        println!("\n{}\n", shown(&detail.application.description));
    }
    for d in &detail.decisions {
        println!(
            "  round {} {:<16} {:<12} {}",
            d.round,
            d.decision,
            d.reviewer,
            shown_line(&d.comment)
        );
        if let Some(c) = &d.conditions {
            println!("          conditions: {}", conditions_line(c));
        }
    }
    for g in &detail.grants {
        println!("  grant {}", grant_line(g));
    }
    for c in &detail.checks {
        println!(
            "  check {:<20} {}",
            c.check,
            c.outcome.as_str().to_uppercase()
        );
        for r in &c.reasons {
            println!("        {}", shown_line(r));
        }
    }
    if let Some(m) = manifest {
        let a = &m.archive;
        println!(
            "  archive {} ({}), {} bytes, sha256 {}",
            shown_line(&a.name),
            a.format,
            a.upload_bytes,
            a.sha256
        );
        for e in m.entries.iter().take(200) {
            println!(
                "    {:>4o} {:>12} {}  {}",
                e.mode,
                e.size,
                e.sha256
                    .as_deref()
                    .map(|h| &h[..16])
                    .unwrap_or("directory       "),
                shown_line(&e.path)
            );
        }
        if m.entries.len() > 200 {
            println!(
                "    … and {} more entries (--json lists all)",
                m.entries.len() - 200
            );
        }
    }
    for a in &detail.attachments {
        println!(
            "  [{}] {} by {}: {}{}",
            a.id,
            a.kind,
            a.author,
            shown_line(&a.text),
            a.file_name
                .as_deref()
                .map(|f| format!(" (file: {})", shown_line(f)))
                .unwrap_or_default()
        );
    }
}

async fn decide(
    d: DecisionArgs,
    decision: DecisionChoice,
    conditions: Option<Conditions>,
) -> anyhow::Result<()> {
    let body = NewDecision {
        decision: decision.as_str().to_owned(),
        comment: d.comment,
        conditions,
    };
    act(&d.client, &d.id, "decisions", &body).await
}

/// Posts `body` to one of an application's actions (`/api/v1/applications/{id}/{action}`) and
/// prints the application it answers with.
async fn act(
    client: &ClientArgs,
    id: &str,
    action: &str,
    body: &impl Serialize,
) -> anyhow::Result<()> {
    let a: Application = client
        .client()?
        .post(
            &format!("/api/v1/applications/{}/{action}", urlencode(id)),
            body,
        )
        .await?;
    print_app(client, &a);
    Ok(())
}

/// A reviewer's conditions, in words.
fn conditions_line(c: &Conditions) -> String {
    let mut parts = Vec::new();
    if let Some(u) = &c.until {
        parts.push(format!("until {u}"));
    }
    match c.commercial {
        Some(false) => parts.push("no commercial use".to_owned()),
        Some(true) => parts.push("commercial use".to_owned()),
        None => {}
    }
    if let Some(l) = c.logs {
        parts.push(format!("run output {l}"));
    }
    parts.join(", ")
}

/// What a grant gives, in words: its dataset, project, last day, commercial use and output.
pub(super) fn grant_line(g: &Grant) -> String {
    format!(
        "{} to {}: {}, {}, run output {}{}",
        g.dataset,
        g.project,
        g.until
            .as_deref()
            .map_or("no last day".to_owned(), |u| format!("until {u}")),
        if g.commercial {
            "commercial use allowed"
        } else {
            "no commercial use"
        },
        g.logs,
        g.revoked_at
            .as_deref()
            .map(|r| format!(" (revoked {r})"))
            .unwrap_or_default()
    )
}

fn print_app(client: &ClientArgs, a: &Application) {
    print_as(client, a, |a| {
        println!(
            "{}  {} {} in {}: {} ({} of {} approvals, round {})",
            a.id,
            a.kind,
            a.state,
            a.belongs_to(),
            shown_line(&a.title),
            a.approvals,
            a.quorum,
            a.round
        )
    });
}
