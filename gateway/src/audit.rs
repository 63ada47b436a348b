//! The tamper-evident audit log.
//!
//! Every event is one row in `audit_events`, chained: its hash is SHA-256 over a canonical,
//! length-prefixed encoding of its fields and the previous event's hash. Editing, deleting,
//! inserting or reordering rows breaks the chain at the first event touched. The head (sequence
//! number and hash) is signed with the gateway's audit key into checkpoints kept outside the
//! database, so a database restored to an earlier state, or cut short, is caught too.
//! [`verify`] checks all of it offline, from the data dir alone.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use base64::Engine as _;
use futures_util::TryStreamExt;
use sha2::{Digest, Sha256};
use sqlx::{AnyConnection, Row};
use tokio::sync::watch;

use crate::keys::{Ed25519Key, PublicKey};
use crate::workers::Stop;

/// The hash before the first event.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Where the chain ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainHead {
    pub seq: i64,
    pub hash: String,
}

/// An event to append. `detail` is JSON; its keys are sorted on encoding, so the stored text is
/// canonical.
#[derive(Clone, Debug)]
pub struct NewEvent<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub subject: &'a str,
    pub detail: serde_json::Value,
}

/// An event as stored.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct StoredEvent {
    pub seq: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub subject: String,
    /// JSON text, exactly as hashed.
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

fn field(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_be_bytes());
    h.update(bytes);
}

/// The hash of an event: domain-separated, every field length-prefixed.
pub fn event_hash(
    seq: i64,
    at: &str,
    actor: &str,
    action: &str,
    subject: &str,
    detail: &str,
    prev: &str,
) -> String {
    let mut h = Sha256::new();
    h.update(b"vre-audit-event-v1\0");
    h.update(seq.to_be_bytes());
    for f in [at, actor, action, subject, detail, prev] {
        field(&mut h, f.as_bytes());
    }
    hex::encode(h.finalize())
}

pub(crate) async fn append(
    conn: &mut AnyConnection,
    head: &ChainHead,
    event: NewEvent<'_>,
) -> Result<StoredEvent, sqlx::Error> {
    let seq = head.seq + 1;
    let at = crate::time::now();
    let detail = event.detail.to_string();
    let hash = event_hash(
        seq,
        &at,
        event.actor,
        event.action,
        event.subject,
        &detail,
        &head.hash,
    );
    sqlx::query(
        "INSERT INTO audit_events (seq, at, actor, action, subject, detail, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(seq)
    .bind(&at)
    .bind(event.actor)
    .bind(event.action)
    .bind(event.subject)
    .bind(&detail)
    .bind(&head.hash)
    .bind(&hash)
    .execute(&mut *conn)
    .await?;
    Ok(StoredEvent {
        seq,
        at,
        actor: event.actor.to_owned(),
        action: event.action.to_owned(),
        subject: event.subject.to_owned(),
        detail,
        prev_hash: head.hash.clone(),
        hash,
    })
}

pub(crate) fn event_from_row(row: &sqlx::any::AnyRow) -> Result<StoredEvent, sqlx::Error> {
    Ok(StoredEvent {
        seq: row.try_get("seq")?,
        at: row.try_get("at")?,
        actor: row.try_get("actor")?,
        action: row.try_get("action")?,
        subject: row.try_get("subject")?,
        detail: row.try_get("detail")?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

/// The chain's head as the database has it (sequence 0 before the first event).
pub async fn head(conn: &mut sqlx::AnyConnection) -> Result<ChainHead, sqlx::Error> {
    let (seq, hash) =
        sqlx::query_as::<_, (i64, String)>("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_one(conn)
            .await?;
    Ok(ChainHead { seq, hash })
}

/// Events after `after`, oldest first, at most `limit`; only those about `subject` if given.
pub async fn events(
    conn: &mut sqlx::AnyConnection,
    after: i64,
    subject: Option<&str>,
    limit: i64,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let rows =
        match subject {
            Some(s) => sqlx::query(
                "SELECT seq, at, actor, action, subject, detail, prev_hash, hash FROM audit_events \
                 WHERE seq > $1 AND subject = $2 ORDER BY seq LIMIT $3",
            )
            .bind(after)
            .bind(s)
            .bind(limit)
            .fetch_all(conn)
            .await?,
            None => sqlx::query(
                "SELECT seq, at, actor, action, subject, detail, prev_hash, hash FROM audit_events \
                 WHERE seq > $1 ORDER BY seq LIMIT $2",
            )
            .bind(after)
            .bind(limit)
            .fetch_all(conn)
            .await?,
        };
    rows.iter().map(event_from_row).collect()
}

/// One signed checkpoint: a line `seq hash at kid signature` in the checkpoint log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub seq: i64,
    pub hash: String,
    pub at: String,
    pub kid: String,
    pub signature: Vec<u8>,
}

fn checkpoint_message(seq: i64, hash: &str, at: &str) -> Vec<u8> {
    format!("vre-audit-checkpoint-v1\n{seq}\n{hash}\n{at}\n").into_bytes()
}

impl Checkpoint {
    fn line(&self) -> String {
        let sig = base64::engine::general_purpose::STANDARD.encode(&self.signature);
        format!(
            "{} {} {} {} {}\n",
            self.seq, self.hash, self.at, self.kid, sig
        )
    }

    fn parse(line: &str) -> Option<Checkpoint> {
        let mut parts = line.split(' ');
        let cp = Checkpoint {
            seq: parts.next()?.parse().ok()?,
            hash: parts.next()?.to_owned(),
            at: parts.next()?.to_owned(),
            kid: parts.next()?.to_owned(),
            signature: base64::engine::general_purpose::STANDARD
                .decode(parts.next()?)
                .ok()?,
        };
        parts.next().is_none().then_some(cp)
    }
}

/// The checkpoint log: appended to, fsynced, never rewritten (but for a torn last line, cut at
/// start by [`repair_checkpoint_log`]).
pub fn checkpoint_file(dir: &Path) -> PathBuf {
    dir.join("checkpoints.log")
}

/// Signs `head` and appends it to the log in `dir`.
pub fn write_checkpoint(dir: &Path, key: &Ed25519Key, head: &ChainHead) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let at = crate::time::now();
    let cp = Checkpoint {
        seq: head.seq,
        hash: head.hash.clone(),
        signature: key
            .sign(&checkpoint_message(head.seq, &head.hash, &at))
            .to_vec(),
        at,
        kid: key.kid().to_owned(),
    };
    let path = checkpoint_file(dir);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    f.write_all(cp.line().as_bytes())?;
    f.sync_data()?;
    Ok(())
}

/// A last line of the checkpoint log without its end of line: every checkpoint is written as a
/// whole line and fsynced, so this is a write a crash cut short, not a signed line changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// Its line number, from 1.
    pub line: usize,
    /// Where it starts in the file: the length the file is cut to.
    pub offset: u64,
    pub bytes: u64,
    pub sha256: String,
    /// What it holds, as text, at most 512 characters of it.
    pub text: String,
}

impl std::fmt::Display for TornTail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the last line ({}) of the checkpoint log is torn: {} bytes without an end of line, a checkpoint write cut short by a crash rather than a signed checkpoint changed; the gateway cuts it at its next start and records what it cut",
            self.line, self.bytes
        )
    }
}

/// The checkpoint log read line by line (memory flat however long it is): each complete line
/// parsed, then, once they are all read, a torn last line if there is one ([`Self::torn`]).
struct CheckpointLines {
    path: PathBuf,
    reader: Option<std::io::BufReader<std::fs::File>>,
    /// Bytes of complete lines read so far.
    offset: u64,
    line: usize,
    buf: Vec<u8>,
    torn: Option<TornTail>,
}

impl CheckpointLines {
    /// A missing log is an empty one.
    fn open(dir: &Path) -> anyhow::Result<CheckpointLines> {
        let path = checkpoint_file(dir);
        let reader = match std::fs::File::open(&path) {
            Ok(f) => Some(std::io::BufReader::with_capacity(1 << 16, f)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        Ok(CheckpointLines {
            path,
            reader,
            offset: 0,
            line: 0,
            buf: Vec::with_capacity(256),
            torn: None,
        })
    }

    /// The next complete line, parsed; `None` at the end (or at a torn last line).
    fn next_line(&mut self) -> anyhow::Result<Option<Result<Checkpoint, String>>> {
        use std::io::BufRead;
        loop {
            let Some(reader) = self.reader.as_mut() else {
                return Ok(None);
            };
            self.buf.clear();
            let n = reader
                .read_until(b'\n', &mut self.buf)
                .with_context(|| format!("reading {}", self.path.display()))?;
            if n == 0 {
                self.reader = None;
                return Ok(None);
            }
            self.line += 1;
            if self.buf.last() != Some(&b'\n') {
                let tail = &self.buf[..];
                self.torn = Some(TornTail {
                    line: self.line,
                    offset: self.offset,
                    bytes: tail.len() as u64,
                    sha256: hex::encode(Sha256::digest(tail)),
                    text: String::from_utf8_lossy(tail).chars().take(512).collect(),
                });
                self.reader = None;
                return Ok(None);
            }
            self.offset += n as u64;
            let text = String::from_utf8_lossy(&self.buf[..n - 1]);
            if text.is_empty() {
                continue;
            }
            return Ok(Some(Checkpoint::parse(&text).ok_or_else(|| {
                format!(
                    "line {} of {} is not a checkpoint",
                    self.line,
                    self.path.display()
                )
            })));
        }
    }
}

/// The torn last line of the checkpoint log, if it has one, read through without keeping it.
fn torn_tail(dir: &Path) -> anyhow::Result<Option<TornTail>> {
    let mut reader = CheckpointLines::open(dir)?;
    while reader.next_line()?.is_some() {}
    Ok(reader.torn)
}

/// Reads the checkpoint log's complete lines (not a torn last line); a missing log is an empty
/// one.
pub fn read_checkpoints(dir: &Path) -> anyhow::Result<Vec<Result<Checkpoint, String>>> {
    let mut reader = CheckpointLines::open(dir)?;
    let mut lines = Vec::new();
    while let Some(l) = reader.next_line()? {
        lines.push(l);
    }
    Ok(lines)
}

/// Cuts a torn last line off the checkpoint log, at start, before anything is appended to it
/// (a checkpoint written after it would be glued to it), and records the repair, with what was
/// cut, as an audit event. Returns what was cut.
pub async fn repair_checkpoint_log(
    db: &crate::db::Db,
    dir: &Path,
) -> anyhow::Result<Option<TornTail>> {
    let Some(torn) = torn_tail(dir)? else {
        return Ok(None);
    };
    let path = checkpoint_file(dir);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    f.set_len(torn.offset)
        .with_context(|| format!("cutting the torn last line of {}", path.display()))?;
    f.sync_all()?;
    tracing::warn!(
        line = torn.line,
        bytes = torn.bytes,
        "cut a torn last line off the audit checkpoint log"
    );
    let mut tx = db.begin_write().await?;
    tx.audit(NewEvent {
        actor: "gateway",
        action: "audit.checkpoints_repaired",
        subject: "checkpoints.log",
        detail: serde_json::json!({
            "line": torn.line,
            "offset": torn.offset,
            "bytes": torn.bytes,
            "sha256": torn.sha256,
            "text": torn.text,
        }),
    })
    .await?;
    tx.commit().await?;
    Ok(Some(torn))
}

/// Sends new chain heads to the checkpoint writer.
#[derive(Clone)]
pub struct HeadNotifier(watch::Sender<Option<ChainHead>>);

impl HeadNotifier {
    pub fn new() -> (HeadNotifier, watch::Receiver<Option<ChainHead>>) {
        let (tx, rx) = watch::channel(None);
        (HeadNotifier(tx), rx)
    }

    /// Records a committed head. Commits may report out of order; only a newer head replaces
    /// the one waiting to be written.
    pub fn committed(&self, head: ChainHead) {
        self.0.send_if_modified(|cur| match cur {
            Some(c) if c.seq >= head.seq => false,
            _ => {
                *cur = Some(head);
                true
            }
        });
    }
}

/// Writes signed checkpoints of new heads, each head once. Shared by the background writer and
/// the last write at shutdown: the lock is held across a write, so the two never interleave
/// lines nor both sign the same head.
pub struct Checkpointer {
    dir: PathBuf,
    key: Ed25519Key,
    /// The sequence number of the head last written.
    written: std::sync::Mutex<Option<i64>>,
}

impl Checkpointer {
    pub fn new(dir: PathBuf, key: Ed25519Key) -> Checkpointer {
        Checkpointer {
            dir,
            key,
            written: Default::default(),
        }
    }

    /// Writes `head` unless it is the head last written. Blocking (an fsync).
    pub fn write(&self, head: &ChainHead) -> anyhow::Result<()> {
        let mut written = crate::lock(&self.written);
        if *written != Some(head.seq) {
            write_checkpoint(&self.dir, &self.key, head)?;
            *written = Some(head.seq);
        }
        Ok(())
    }

    /// The last checkpoint of a clean stop, of the final head, once nothing else commits: a
    /// clean stop always ends on a checkpoint.
    pub fn write_last(&self, heads: &watch::Receiver<Option<ChainHead>>) {
        let head = heads.borrow().clone();
        if let Some(head) = head {
            if let Err(e) = self.write(&head) {
                tracing::error!(error = %format!("{e:#}"), "writing the last audit checkpoint failed");
            }
        }
    }
}

/// The least time between two checkpoints of the background writer: a burst of commits in
/// between is one checkpoint, of its last head, so the log grows by at most a few lines a
/// second however busy the gateway is. The chain protects the events between two checkpoints,
/// and a clean stop always ends on one ([`Checkpointer::write_last`]).
pub const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(200);

/// Writes a checkpoint of the newest head it is told of, at most one per
/// [`CHECKPOINT_INTERVAL`], until the gateway stops; the last one is
/// [`Checkpointer::write_last`]'s, after every other worker has ended.
pub async fn checkpoint_worker(
    checkpoints: Arc<Checkpointer>,
    mut heads: watch::Receiver<Option<ChainHead>>,
    stop: Stop,
) {
    loop {
        let head = heads.borrow_and_update().clone();
        if let Some(head) = head {
            let cp = checkpoints.clone();
            match tokio::task::spawn_blocking(move || cp.write(&head)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(error = %format!("{e:#}"), "writing an audit checkpoint failed")
                }
                Err(e) => tracing::error!(error = %e, "the checkpoint writer panicked"),
            }
            tokio::select! {
                () = tokio::time::sleep(CHECKPOINT_INTERVAL) => {}
                () = stop.requested() => break,
            }
        }
        tokio::select! {
            changed = heads.changed() => if changed.is_err() { break },
            () = stop.requested() => break,
        }
    }
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub events: i64,
    pub checkpoints: usize,
    /// The first problem, naming the first bad event; `None` when the log is intact.
    pub problem: Option<Problem>,
    /// A torn last line of the checkpoint log. The chain is checked against the complete lines;
    /// when nothing else is wrong, this is the problem reported (event 0: it names no event).
    pub torn_tail: Option<TornTail>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The first event that is not what it should be (or should be there and is not).
    pub seq: i64,
    pub what: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "event {}: {}", self.seq, self.what)
    }
}

/// Checks the chain in the database against itself, its head row and the signed checkpoints.
/// Streams both: the events in one ordered read, the checkpoint log twice (its signatures
/// first, then beside the events), so memory stays flat however long the log is.
pub async fn verify(
    db: &crate::db::Db,
    checkpoint_dir: &Path,
    public: &PublicKey,
) -> anyhow::Result<Report> {
    verify_through(db, checkpoint_dir, public, None).await
}

/// [`verify`] of the chain up to `head` (the head as read before, by a gateway that goes on
/// writing while it checks): events and checkpoints after it are not looked at, and the chain
/// must end at `head` itself. `None`: the whole log, against the head row.
pub async fn verify_through(
    db: &crate::db::Db,
    checkpoint_dir: &Path,
    public: &PublicKey,
    head: Option<&ChainHead>,
) -> anyhow::Result<Report> {
    let through = head.map_or(i64::MAX, |h| h.seq);
    // First every line and every signature: a log that does not parse or verify is reported
    // before anything is compared with it.
    let kid = public.kid();
    let mut lines = CheckpointLines::open(checkpoint_dir)?;
    let mut count = 0usize;
    while let Some(line) = lines.next_line()? {
        let problem = match line {
            Err(what) => Some(Problem { seq: 0, what }),
            Ok(cp)
                if cp.kid != kid
                    || !public
                        .verify(&checkpoint_message(cp.seq, &cp.hash, &cp.at), &cp.signature) =>
            {
                Some(Problem {
                    seq: cp.seq,
                    what: "a checkpoint's signature does not verify with the audit key".into(),
                })
            }
            Ok(_) => None,
        };
        if let Some(problem) = problem {
            return Ok(Report {
                events: 0,
                checkpoints: count,
                problem: Some(problem),
                torn_tail: None,
            });
        }
        count += 1;
    }
    let torn_tail = lines.torn;

    // Then the chain, event by event, with the checkpoints read beside it. The log is written
    // in the order of the chain; a checkpoint that comes after later ones (two writers sharing
    // the log) is looked up on its own.
    let mut checkpoints = Checkpoints {
        lines: CheckpointLines::open(checkpoint_dir)?,
        next: None,
    };
    checkpoints.advance()?;
    let mut rows = sqlx::query(
        "SELECT seq, at, actor, action, subject, detail, prev_hash, hash FROM audit_events \
         WHERE seq <= $1 ORDER BY seq",
    )
    .bind(through)
    .fetch(db.pool());
    let mut prev = GENESIS.to_owned();
    let mut last = 0i64;
    let mut problem = None;
    while let Some(row) = rows.try_next().await? {
        let e = event_from_row(&row)?;
        let want_seq = last + 1;
        problem = event_problem(&e, want_seq, last, &prev);
        if problem.is_some() {
            break;
        }
        while let Some(cp) = checkpoints.next.take_if(|cp| cp.seq <= e.seq) {
            let matches = if cp.seq == e.seq {
                cp.hash == e.hash
            } else {
                hash_at(db, cp.seq).await?.as_deref() == Some(cp.hash.as_str())
            };
            if !matches {
                problem = Some(Problem {
                    seq: cp.seq,
                    what: "differs from the signed checkpoint: the chain was rewritten from here"
                        .into(),
                });
                break;
            }
            checkpoints.advance()?;
        }
        if problem.is_some() {
            break;
        }
        prev = e.hash;
        last = e.seq;
    }
    drop(rows);
    if problem.is_none() {
        // Whatever checkpoint is left covers an event the database does not have.
        let mut beyond = None;
        while let Some(cp) = checkpoints.next.take() {
            if cp.seq > through {
                // Signed after the head this check started from.
            } else if cp.seq > last {
                beyond = Some(beyond.map_or(cp.seq, |b: i64| b.min(cp.seq)));
            } else if hash_at(db, cp.seq).await?.as_deref() != Some(cp.hash.as_str()) {
                problem = Some(Problem {
                    seq: cp.seq,
                    what: "differs from the signed checkpoint: the chain was rewritten from here"
                        .into(),
                });
                break;
            }
            checkpoints.advance()?;
        }
        if let (None, Some(cp_seq)) = (&problem, beyond) {
            problem = Some(Problem {
                seq: last + 1,
                what: format!(
                    "missing: a signed checkpoint covers event {cp_seq} but the database ends at event {last} (rolled back or cut short)"
                ),
            });
        }
    }
    if problem.is_none() {
        problem = match head {
            None => head_problem(db, last, &prev).await?,
            Some(h) => head_problem_of(Some((h.seq, h.hash.clone())), last, &prev),
        };
    }
    if problem.is_none() {
        problem = torn_tail.as_ref().map(|t| Problem {
            seq: 0,
            what: t.to_string(),
        });
    }
    Ok(Report {
        events: last,
        checkpoints: count,
        problem,
        torn_tail,
    })
}

/// The checkpoint log read beside the chain: the next checkpoint not yet compared.
struct Checkpoints {
    lines: CheckpointLines,
    next: Option<Checkpoint>,
}

impl Checkpoints {
    fn advance(&mut self) -> anyhow::Result<()> {
        // Every line parsed and verified in the first pass.
        self.next = self.lines.next_line()?.and_then(Result::ok);
        Ok(())
    }
}

/// The hash of one event, looked up on its own.
async fn hash_at(db: &crate::db::Db, seq: i64) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar::<_, String>("SELECT hash FROM audit_events WHERE seq = $1")
        .bind(seq)
        .fetch_optional(db.pool())
        .await
}

/// What is wrong with `e`, the event after `last` (whose hash is `prev`), on its own.
fn event_problem(e: &StoredEvent, want_seq: i64, last: i64, prev: &str) -> Option<Problem> {
    if e.seq != want_seq {
        return Some(Problem {
            seq: want_seq,
            what: if e.seq > want_seq {
                format!(
                    "missing: the log jumps from event {last} to event {}",
                    e.seq
                )
            } else {
                format!("out of sequence: found event {} after event {last}", e.seq)
            },
        });
    }
    if e.prev_hash != prev {
        return Some(Problem {
            seq: e.seq,
            what: "does not follow the event before it (its previous hash differs): an event was inserted, removed or moved here".into(),
        });
    }
    let h = event_hash(
        e.seq,
        &e.at,
        &e.actor,
        &e.action,
        &e.subject,
        &e.detail,
        &e.prev_hash,
    );
    if h != e.hash {
        return Some(Problem {
            seq: e.seq,
            what: "its content does not match its hash: the row was edited".into(),
        });
    }
    None
}

/// The chain's recorded head against the last event read (`last`, hashed `prev`).
async fn head_problem(
    db: &crate::db::Db,
    last: i64,
    prev: &str,
) -> anyhow::Result<Option<Problem>> {
    let row = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
        .fetch_optional(db.pool())
        .await?;
    let head = match row {
        Some(r) => Some((r.try_get::<i64, _>("seq")?, r.try_get::<String, _>("hash")?)),
        None => None,
    };
    Ok(head_problem_of(head, last, prev))
}

/// The recorded head `head` against the last event read (`last`, hashed `prev`).
fn head_problem_of(head: Option<(i64, String)>, last: i64, prev: &str) -> Option<Problem> {
    match head {
        Some((seq, hash)) if seq == last && hash == prev => None,
        // Events past the head were added outside the gateway: the first of them is bad.
        Some((seq, _)) if (0..last).contains(&seq) => Some(Problem {
            seq: seq + 1,
            what: format!(
                "not in the chain: its recorded head is event {seq} but the log goes on to event {last} (appended outside the gateway)"
            ),
        }),
        Some((seq, _)) if seq == last => Some(Problem {
            seq: last,
            what: "differs from the chain's recorded head: the last event was rewritten".into(),
        }),
        head => Some(Problem {
            seq: last + 1,
            what: format!(
                "missing: the chain's recorded head is {} but the log ends at event {last}",
                head.map(|(s, _)| s.to_string())
                    .unwrap_or_else(|| "absent".into())
            ),
        }),
    }
}

mod search;
#[cfg(test)]
mod tests;

pub use search::{EventFilter, search};
