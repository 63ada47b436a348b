//! `vre dataset`: register a dataset with its DMP (which opens its listing application), list,
//! show, export its DMP, and upload its content once the listing is approved.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

use super::shared::{
    ById, ClientArgs, PageArgs, or_null, print_as, print_json, print_list, shown_line, urlencode,
};
use crate::wire::datasets::{
    Content, Dataset, DatasetDetail, DmpFormat, NewDataset, Registered, Uploaded,
};

#[derive(Subcommand)]
pub(super) enum DatasetCommand {
    /// Register a dataset with its DMP (JSON, or TOML for a `.toml` file) and open its listing
    /// application; prints both ids. A steward of the DMP's data-providing institution.
    Register {
        /// The DMP: see deploy/examples/dmp.json.
        #[arg(long)]
        dmp: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List the datasets you may see.
    List {
        #[command(flatten)]
        page: PageArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show a dataset and its applications.
    Show(ById),
    /// Print a dataset's DMP: our own JSON, or GakuNin RDM's common metadata items.
    Dmp {
        id: String,
        #[arg(long, default_value = "json")]
        format: DmpFormat,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Upload a dataset's content into the STORE, once its listing is approved: a directory
    /// (packed as tar.zst on the fly), a .tar or a .tar.zst. A steward of its institution.
    Upload {
        dataset: String,
        path: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Apply to extend a dataset's restricted sharing (a steward of its institution); prints
    /// the extension application's id. Approved, it moves the end of restricted sharing.
    Extend {
        id: String,
        /// The new end of restricted sharing, YYYY-MM-DD: after the current one.
        #[arg(long)]
        until: String,
        /// Why the restriction should last longer.
        #[arg(long)]
        justification: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// A dataset's history: every application and decision with who made it, extensions and
    /// category moves, and the access granted to it.
    History(ById),
}

impl clap::ValueEnum for DmpFormat {
    fn value_variants<'a>() -> &'a [Self] {
        DmpFormat::ALL
    }
    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.as_str()))
    }
}

/// A DMP file as JSON: TOML when its name ends in `.toml`, JSON otherwise. Its fields are
/// checked by the gateway, which names every bad one.
fn read_dmp(path: &Path) -> anyhow::Result<serde_json::Value> {
    use policy::dmp::Format;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the DMP {}", path.display()))?;
    let toml = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("toml"));
    let format = if toml { Format::Toml } else { Format::Json };
    policy::dmp::json_of(&text, format).with_context(|| format!("reading {}", path.display()))
}

fn print_dataset(d: &Dataset) {
    println!(
        "{}  {} {}: {}",
        d.id,
        d.state,
        d.category,
        shown_line(&d.title)
    );
    println!("  institution: {}", d.institution);
    if let Some(until) = &d.restricted_until {
        println!(
            "  restricted until {until}, then {}",
            or_null(&d.category_after)
        );
    }
    println!("  registered by {} at {}", d.created_by, d.created_at);
}

fn print_content(c: &Content) {
    println!(
        "  content: {} files, {} bytes; manifest sha256 {}",
        c.files, c.bytes, c.manifest_sha256
    );
    println!(
        "  uploaded by {} at {} ({}, {} bytes, sha256 {})",
        c.uploaded_by, c.uploaded_at, c.format, c.upload_bytes, c.upload_sha256
    );
}

pub(super) async fn dataset(cmd: DatasetCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        DatasetCommand::Register { dmp, client } => {
            let body = NewDataset {
                dmp: read_dmp(&dmp)?,
            };
            let r: Registered = client.client()?.post("/api/v1/datasets", &body).await?;
            if client.json {
                print_json(&serde_json::json!({"id": r.id, "application": r.application}));
            } else {
                println!("{}", r.id);
                println!("listing application: {}", r.application);
            }
        }
        DatasetCommand::List { page, client } => {
            print_list(&client, "/api/v1/datasets", &page, |d: &Dataset| {
                println!(
                    "{:<16} {:<10} {:<26} {:<16} {}",
                    d.id,
                    d.state,
                    d.category,
                    d.institution,
                    shown_line(&d.title)
                )
            })
            .await?;
        }
        DatasetCommand::Show(ById { id, client }) => {
            let d: DatasetDetail = client
                .client()?
                .get(&format!("/api/v1/datasets/{}", urlencode(&id)))
                .await?;
            print_as(&client, &d, |d| {
                print_dataset(&d.dataset);
                if let Some(c) = &d.content {
                    print_content(c);
                }
                for a in &d.applications {
                    println!("  application: {a}");
                }
            });
            if !client.json {
                super::extension::history(&client, &id).await?;
            }
        }
        DatasetCommand::Upload {
            dataset,
            path,
            client,
        } => {
            let show = !client.json && std::io::stderr().is_terminal();
            let route = format!("/api/v1/datasets/{}/content", urlencode(&dataset));
            let u: Uploaded =
                crate::upload::send(&client.client()?, &route, &path, show, |u: &Uploaded| {
                    &u.content.upload_sha256
                })
                .await?;
            print_as(&client, &u, |u| {
                print_dataset(&u.dataset);
                print_content(&u.content);
            });
        }
        DatasetCommand::Dmp { id, format, client } => {
            let v: serde_json::Value = client
                .client()?
                .get(&format!(
                    "/api/v1/datasets/{}/dmp?format={format}",
                    urlencode(&id)
                ))
                .await?;
            // A DMP is a document: printed whole, as JSON, either way.
            print_json(&v);
        }
        DatasetCommand::Extend {
            id,
            until,
            justification,
            client,
        } => super::extension::extend(&client, &id, until, justification).await?,
        DatasetCommand::History(ById { id, client }) => {
            super::extension::history(&client, &id).await?
        }
    }
    Ok(ExitCode::SUCCESS)
}
