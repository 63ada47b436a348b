//! `vre ingress submit`: a directory or archive uploaded as an ingress application.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use super::shared::{ClientArgs, print_as, query};
use crate::wire::ingress::{CheckOutcome, IngressReceipt};

#[derive(Subcommand)]
pub(super) enum IngressCommand {
    /// Upload a directory (packed as tar.zst on the fly), a .tar or a .tar.zst and apply for
    /// its ingress.
    Submit {
        #[arg(long)]
        project: String,
        path: PathBuf,
        /// A name for the archive (default: the file or directory name).
        #[arg(long)]
        name: Option<String>,
        /// Why it is needed, for the committee.
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub(super) async fn ingress_submit(
    project: String,
    path: PathBuf,
    name: Option<String>,
    description: Option<String>,
    client: ClientArgs,
) -> anyhow::Result<ExitCode> {
    let c = client.client()?;
    let name = match name {
        Some(n) => n,
        None => std::fs::canonicalize(&path)
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "archive".into()),
    };
    let show = !client.json && std::io::stderr().is_terminal();
    let q = format!(
        "/api/v1/ingress{}",
        query([
            ("project", Some(project)),
            ("name", Some(name)),
            ("description", description),
        ])
    );
    let receipt: IngressReceipt =
        crate::upload::send(&c, &q, &path, show, |r: &IngressReceipt| &r.archive.sha256).await?;
    let got = &receipt.archive.sha256;
    print_as(&client, &receipt, |receipt| {
        let a = &receipt.archive;
        println!("{}", receipt.application.id);
        println!("  sha256   {}", got);
        println!(
            "  archive  {} ({}), {} bytes sent, {} files, {} bytes unpacked",
            a.name, a.format, a.upload_bytes, a.files, a.unpacked_bytes
        );
        println!(
            "  checks   {}",
            receipt.checks_outcome.as_str().to_uppercase()
        );
        for ch in &receipt.checks {
            if ch.outcome != CheckOutcome::Pass {
                for r in &ch.reasons {
                    println!("    {}: {}", ch.check, r);
                }
            }
        }
    });
    Ok(ExitCode::SUCCESS)
}
