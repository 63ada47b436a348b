//! `vre egress` (request files out of a sandbox, answer a request for changes, preview a file
//! in quarantine), `vre keys init` (the age identity releases are encrypted to) and
//! `vre release` (download and verify, revoke).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

use super::shared::{ById, ClientArgs, print_as, print_json, query, shown, shown_line, urlencode};
use crate::wire::egress::{
    CheckOutcome, EgressDetail, EgressFile, EgressReceipt, EgressResubmission, Key, KeyRegistered,
    NewEgress, Preview, Release,
};

#[derive(Subcommand)]
pub(super) enum EgressCommand {
    /// Ask for files of a sandbox's output folder to leave: they are copied into quarantine,
    /// checked, and sent to the committee. Prints the new application's id.
    Request {
        sandbox: String,
        /// Files or folders, relative to /vre/output.
        #[arg(required = true)]
        paths: Vec<String>,
        /// Why these results should leave.
        #[arg(long)]
        justification: String,
        /// PATH=REASON: send a file that fails a check to the reviewers anyway, with why.
        #[arg(long = "exception", value_name = "PATH=REASON")]
        exceptions: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Answer a request for changes with new files: a new round.
    Resubmit {
        id: String,
        #[arg(required = true)]
        paths: Vec<String>,
        #[arg(long)]
        comment: String,
        #[arg(long)]
        justification: Option<String>,
        #[arg(long = "exception", value_name = "PATH=REASON")]
        exceptions: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Preview a file in quarantine (reviewers from outside the project); audited.
    Preview {
        id: String,
        path: String,
        #[arg(long)]
        round: Option<i64>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand)]
pub(super) enum KeysCommand {
    /// Make an age identity in your config folder and register its recipient with the gateway
    /// (or register an existing recipient with --recipient).
    Init {
        /// Register this existing recipient (age1…) instead of making a new identity.
        #[arg(long)]
        recipient: Option<String>,
        /// Where to keep the identity (default: $XDG_CONFIG_HOME/vre/identity.txt or
        /// ~/.config/vre/identity.txt).
        #[arg(long)]
        identity: Option<PathBuf>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand)]
pub(super) enum ReleaseCommand {
    /// Download a release, decrypt it, unpack it into DIR and verify its SHA256SUMS.
    Download {
        id: String,
        /// The age identity the release is encrypted to.
        #[arg(long)]
        identity: Option<PathBuf>,
        /// An empty (or new) folder to unpack into.
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
        /// Also keep the encrypted package as it came.
        #[arg(long)]
        keep_package: Option<PathBuf>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Revoke a release (operators): it can no longer be downloaded.
    Revoke(super::shared::Revoking),
    /// Show a release's state.
    Show(ById),
}

fn exceptions(raw: Vec<String>) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    raw.into_iter()
        .map(|e| {
            let (path, reason) = e
                .split_once('=')
                .with_context(|| format!("--exception {e}: expected PATH=REASON"))?;
            Ok((path.to_owned(), reason.to_owned()))
        })
        .collect()
}

pub(super) async fn egress(cmd: EgressCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        EgressCommand::Request {
            sandbox,
            paths,
            justification,
            exceptions: ex,
            client,
        } => {
            let body = NewEgress {
                sandbox,
                paths,
                justification,
                exceptions: exceptions(ex)?,
            };
            let r: EgressReceipt = client.client()?.post("/api/v1/egress", &body).await?;
            print_receipt(&client, &r);
        }
        EgressCommand::Resubmit {
            id,
            paths,
            comment,
            justification,
            exceptions: ex,
            client,
        } => {
            let body = EgressResubmission {
                paths,
                comment,
                justification,
                exceptions: exceptions(ex)?,
            };
            let r: EgressReceipt = client
                .client()?
                .post(
                    &format!("/api/v1/applications/{}/egress", urlencode(&id)),
                    &body,
                )
                .await?;
            print_receipt(&client, &r);
        }
        EgressCommand::Preview {
            id,
            path,
            round,
            client,
        } => {
            let p: Preview = client
                .client()?
                .get(&format!(
                    "/api/v1/applications/{}/egress/preview{}",
                    urlencode(&id),
                    query([
                        ("path", Some(path)),
                        ("round", round.map(|r| r.to_string()))
                    ])
                ))
                .await?;
            print_as(&client, &p, print_preview);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_receipt(client: &ClientArgs, r: &EgressReceipt) {
    if client.json {
        print_json(
            &serde_json::json!({"id": r.id, "round": r.round.round, "outcome": r.round.outcome, "files": r.files}),
        );
        return;
    }
    println!("{}", r.id);
    eprintln!(
        "  round {}: {} files, {} bytes, checks {}",
        r.round.round,
        r.files.len(),
        r.round.total_bytes,
        r.round.outcome.as_str().to_uppercase()
    );
    for f in &r.files {
        eprintln!("{}", file_line(f));
    }
}

fn file_line(f: &EgressFile) -> String {
    let mut s = format!(
        "    {:<6} {:>12} {}  {} ({})",
        f.outcome.as_str().to_uppercase(),
        f.size,
        f.sha256,
        shown_line(&f.path),
        f.content_type
    );
    for x in f.findings.iter().take(5) {
        let at = match (x.row, x.column) {
            (Some(r), Some(c)) => format!(" [row {r}, column {c}]"),
            _ => String::new(),
        };
        s.push_str(&format!(
            "\n           {} {}{at}: {}",
            x.outcome.as_str(),
            x.rule,
            shown_line(&x.message)
        ));
    }
    if f.findings.len() > 5 {
        s.push_str(&format!(
            "\n           … and {} more findings (--json lists all)",
            f.findings.len() - 5
        ));
    }
    if let Some(e) = &f.exception {
        s.push_str(&format!("\n           exception: {}", shown_line(e)));
    }
    s
}

/// How many files of the current round `vre app show` previews.
const SHOWN_PREVIEWS: usize = 20;

/// An egress application with previews of its current round's files, as `vre app show`
/// prints it: for reviewers who may read them (each preview is an audited read); the
/// requester and the project's members get the files without.
pub(super) struct Shown {
    pub(super) detail: EgressDetail,
    pub(super) previews: Vec<Preview>,
}

impl serde::Serialize for Shown {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut v = serde_json::to_value(&self.detail).map_err(serde::ser::Error::custom)?;
        v["previews"] = serde_json::to_value(&self.previews).map_err(serde::ser::Error::custom)?;
        v.serialize(s)
    }
}

pub(super) async fn with_previews(
    c: &crate::client::Client,
    id: &str,
) -> anyhow::Result<Option<Shown>> {
    let detail: EgressDetail = match c
        .get(&format!("/api/v1/applications/{}/egress", urlencode(id)))
        .await
    {
        Ok(d) => d,
        Err(e) if refused_with(&e, 404) => return Ok(None),
        Err(e) => return Err(e),
    };
    let round = detail.application.round;
    let mut previews = Vec::new();
    for f in detail
        .files
        .iter()
        .filter(|f| f.round == round)
        .take(SHOWN_PREVIEWS)
    {
        let path = format!(
            "/api/v1/applications/{}/egress/preview{}",
            urlencode(id),
            query([("path", Some(f.path.clone()))])
        );
        match c.get::<Preview>(&path).await {
            Ok(p) => previews.push(p),
            // Not a reviewer from outside the project: no previews at all.
            Err(e) if refused_with(&e, 403) => {
                break;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(Some(Shown { detail, previews }))
}

/// Whether the gateway refused with this status.
fn refused_with(e: &anyhow::Error, status: u16) -> bool {
    e.downcast_ref::<crate::client::Refused>()
        .is_some_and(|r| r.status == status)
}

/// The egress part of `vre app show`.
pub(super) fn print_egress(shown: &Shown) {
    let d = &shown.detail;
    println!("  sandbox {}", d.sandbox);
    for r in &d.rounds {
        println!(
            "  round {} ({}): {} bytes, checks {} (rules {})",
            r.round,
            r.requested_at,
            r.total_bytes,
            r.outcome.as_str().to_uppercase(),
            r.rules_version
        );
        for x in &r.findings {
            println!(
                "      request: {} {}",
                x.outcome.as_str(),
                shown_line(&x.message)
            );
        }
        for f in d.files.iter().filter(|f| f.round == r.round) {
            println!("{}", file_line(f));
        }
    }
    for p in &shown.previews {
        println!();
        print_preview(p);
    }
    if let Some(rel) = &d.release {
        print_release(rel);
    }
    if !d.history.is_empty() {
        println!("  earlier egress of the project:");
        for e in &d.history {
            println!("    {} {} {}", e.application, e.state, e.at);
            for f in &e.files {
                println!("        {}  {}", f.sha256, shown_line(&f.path));
            }
        }
    }
}

fn print_release(r: &Release) {
    println!(
        "  release {} (round {}), to {}, downloaded {} times{}",
        r.state,
        r.round,
        r.recipient,
        r.downloads,
        r.expires_at
            .as_deref()
            .map(|e| format!(", expires {e}"))
            .unwrap_or_default()
    );
    if let Some(sha) = &r.package_sha256 {
        println!(
            "    package sha256 {sha}, {} bytes",
            r.package_size.unwrap_or(0)
        );
    }
    if let Some(d) = &r.detail {
        println!("    {}", shown_line(d));
    }
}

fn print_preview(p: &Preview) {
    println!("{}", file_line(&p.file));
    if let Some(rows) = &p.rows {
        for row in rows {
            let cells: Vec<String> = row
                .iter()
                .map(|c| match c.flagged {
                    Some(CheckOutcome::Fail) => format!("!!{}!!", shown_line(&c.text)),
                    Some(_) => format!("??{}??", shown_line(&c.text)),
                    None => shown_line(&c.text).into_owned(),
                })
                .collect();
            println!("  {}", cells.join(" | "));
        }
        if p.truncated == Some(true) {
            println!("  …");
        }
    }
    if let Some(t) = &p.text {
        print!("{}", shown(t));
        if !t.ends_with('\n') {
            println!();
        }
    }
    if let Some(i) = &p.image {
        println!(
            "  {} {}x{} {}",
            i.format,
            i.width,
            i.height,
            shown_line(&i.detail)
        );
    }
    if let Some(n) = &p.note {
        println!("  {}", shown_line(n));
    }
}

/// Where `vre keys init` keeps the identity.
fn default_identity() -> anyhow::Result<PathBuf> {
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(x) => PathBuf::from(x),
        None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".config"),
    };
    Ok(base.join("vre").join("identity.txt"))
}

pub(super) async fn keys(cmd: KeysCommand) -> anyhow::Result<ExitCode> {
    let KeysCommand::Init {
        recipient,
        identity,
        client,
    } = cmd;
    let c = client.client()?;
    let (recipient, identity) = match recipient {
        Some(r) => (r, None),
        None => {
            let path = match identity {
                Some(p) => p,
                None => default_identity()?,
            };
            let recipient = write_identity(&path)?;
            (recipient, Some(path))
        }
    };
    let registered: KeyRegistered = c.put("/api/v1/keys/me", &Key { recipient }).await?;
    if client.json {
        print_json(&serde_json::json!({
            "identity": identity,
            "recipient": registered.recipient,
            "replaced": registered.replaced,
        }));
    } else {
        if let Some(p) = &identity {
            println!("identity  {}", p.display());
        }
        println!("recipient {}", registered.recipient);
        if let Some(old) = &registered.replaced {
            eprintln!(
                "(replaces {old}; releases approved from now on are encrypted to the new one)"
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Makes a new identity at `path` (mode 0600, its folder 0700); an existing one is kept and
/// its recipient registered again, so no key that releases were encrypted to is lost.
fn write_identity(path: &Path) -> anyhow::Result<String> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Ok(text) = std::fs::read_to_string(path) {
        return recipient_of_identity(&text)
            .with_context(|| format!("{} is not an age identity file", path.display()));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    let (text, recipient) = crate::release::new_identity();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(recipient)
}

pub(super) async fn release(cmd: ReleaseCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ReleaseCommand::Download {
            id,
            identity,
            output,
            keep_package,
            client,
        } => {
            let identity = match identity {
                Some(p) => p,
                None => default_identity()?,
            };
            let key = std::fs::read_to_string(&identity)
                .with_context(|| format!("reading the identity {}", identity.display()))?;
            // Before the download, which the gateway counts and audits: a package that cannot
            // be unpacked here is not fetched.
            ensure_empty_or_absent(&output)?;
            let c = client.client()?;
            let package = match &keep_package {
                Some(p) => p.clone(),
                None => {
                    let dir = output
                        .parent()
                        .filter(|d| !d.as_os_str().is_empty())
                        .map(Path::to_path_buf)
                        .unwrap_or_else(|| PathBuf::from("."));
                    dir.join(format!(".{id}.tar.zst.age.part"))
                }
            };
            let announced = match c
                .download(
                    &format!("/api/v1/applications/{}/release", urlencode(&id)),
                    &package,
                )
                .await
            {
                Ok(a) => a,
                Err(e) => {
                    // What arrived of a transfer cut short is not the package.
                    let _ = std::fs::remove_file(&package);
                    return Err(e);
                }
            };
            let result = tokio::task::spawn_blocking({
                let (package, output) = (package.clone(), output.clone());
                move || -> anyhow::Result<_> {
                    let got = crate::sandboxes::supervisor::sha256_file(&package)?;
                    if let Some(a) = &announced {
                        anyhow::ensure!(
                            *a == got,
                            "the package's SHA-256 is {got}, the gateway announced {a}"
                        );
                    }
                    let f = std::fs::File::open(&package)?;
                    let opened = crate::release::open(std::io::BufReader::new(f), &key, &output)?;
                    Ok((got, opened))
                }
            })
            .await
            .context("unpacking panicked")?;
            if keep_package.is_none() {
                let _ = std::fs::remove_file(&package);
            }
            let (sha, opened) = result?;
            if client.json {
                print_json(&serde_json::json!({
                    "id": id,
                    "package_sha256": sha,
                    "output": output,
                    "files": opened.files.iter().map(|(n, s, z)| serde_json::json!({"path": n, "sha256": s, "size": z})).collect::<Vec<_>>(),
                }));
            } else {
                println!("{}", output.display());
                eprintln!(
                    "  {} files verified against SHA256SUMS; package sha256 {sha}",
                    opened.files.len()
                );
            }
        }
        ReleaseCommand::Revoke(r) => {
            let client = r.client.clone();
            let r: Release = super::shared::revoke("release", r).await?;
            print_as(&client, &r, print_release);
        }
        ReleaseCommand::Show(ById { id, client }) => {
            let d: EgressDetail = client
                .client()?
                .get(&format!("/api/v1/applications/{}/egress", urlencode(&id)))
                .await?;
            match &d.release {
                Some(r) => print_as(&client, r, print_release),
                None => anyhow::bail!("{id} has no release (it is {})", d.application.state),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Refuses an output that `release::open` would refuse: anything but an empty folder or
/// nothing.
fn ensure_empty_or_absent(output: &Path) -> anyhow::Result<()> {
    match std::fs::read_dir(output) {
        Ok(mut entries) => anyhow::ensure!(
            entries.next().is_none(),
            "{} is not empty: name a new or empty folder",
            output.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!(
                "{} is not a folder that can be unpacked into",
                output.display()
            )));
        }
    }
    Ok(())
}

/// The recipient of the X25519 identity in an identity file's text (comments allowed).
fn recipient_of_identity(text: &str) -> anyhow::Result<String> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("AGE-SECRET-KEY-1"))
        .context("no AGE-SECRET-KEY-1 line")?;
    let identity: age::x25519::Identity = line
        .parse()
        .map_err(|e| anyhow::anyhow!("the secret key does not parse: {e}"))?;
    Ok(identity.to_public().to_string())
}
