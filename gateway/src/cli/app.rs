//! `vre app`: applications to the committee, their decisions and attachments.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use base64::Engine as _;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};

use super::shared::{ClientArgs, print_json, s, urlencode};

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
