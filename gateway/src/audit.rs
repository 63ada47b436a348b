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

/// The checkpoint log as read: its complete lines, and a torn last line if there is one.
struct CheckpointLog {
    lines: Vec<Result<Checkpoint, String>>,
    torn: Option<TornTail>,
}

fn read_checkpoint_log(dir: &Path) -> anyhow::Result<CheckpointLog> {
    let path = checkpoint_file(dir);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(CheckpointLog {
                lines: Vec::new(),
                torn: None,
            });
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let text = String::from_utf8_lossy(&bytes[..complete]);
    let lines: Vec<Result<Checkpoint, String>> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
        .map(|(i, l)| {
            Checkpoint::parse(l)
                .ok_or_else(|| format!("line {} of {} is not a checkpoint", i + 1, path.display()))
        })
        .collect();
    let tail = &bytes[complete..];
    let torn = (!tail.is_empty()).then(|| TornTail {
        line: text.lines().count() + 1,
        offset: complete as u64,
        bytes: tail.len() as u64,
        sha256: hex::encode(Sha256::digest(tail)),
        text: String::from_utf8_lossy(tail).chars().take(512).collect(),
    });
    Ok(CheckpointLog { lines, torn })
}

/// Reads the checkpoint log's complete lines (not a torn last line); a missing log is an empty
/// one.
pub fn read_checkpoints(dir: &Path) -> anyhow::Result<Vec<Result<Checkpoint, String>>> {
    Ok(read_checkpoint_log(dir)?.lines)
}

/// Cuts a torn last line off the checkpoint log, at start, before anything is appended to it
/// (a checkpoint written after it would be glued to it), and records the repair, with what was
/// cut, as an audit event. Returns what was cut.
pub async fn repair_checkpoint_log(
    db: &crate::db::Db,
    dir: &Path,
) -> anyhow::Result<Option<TornTail>> {
    let Some(torn) = read_checkpoint_log(dir)?.torn else {
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

/// Writes a checkpoint for every new head it is told of, coalescing bursts, until the gateway
/// stops; the last one is [`Checkpointer::write_last`]'s, after every other worker has ended.
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
/// Streams the events, so a long log is not loaded at once.
pub async fn verify(
    db: &crate::db::Db,
    checkpoint_dir: &Path,
    public: &PublicKey,
) -> anyhow::Result<Report> {
    let mut checkpoints = Vec::new();
    let log = read_checkpoint_log(checkpoint_dir)?;
    let torn_tail = log.torn;
    for (i, cp) in log.lines.into_iter().enumerate() {
        match cp {
            Ok(cp) => checkpoints.push(cp),
            Err(e) => {
                return Ok(Report {
                    events: 0,
                    checkpoints: i,
                    problem: Some(Problem { seq: 0, what: e }),
                    torn_tail,
                });
            }
        }
    }
    for cp in &checkpoints {
        if cp.kid != public.kid()
            || !public.verify(&checkpoint_message(cp.seq, &cp.hash, &cp.at), &cp.signature)
        {
            return Ok(Report {
                events: 0,
                checkpoints: checkpoints.len(),
                problem: Some(Problem {
                    seq: cp.seq,
                    what: "a checkpoint's signature does not verify with the audit key".into(),
                }),
                torn_tail,
            });
        }
    }
    // seq -> expected hash, from the checkpoints.
    let mut expected: std::collections::BTreeMap<i64, String> = std::collections::BTreeMap::new();
    for cp in &checkpoints {
        expected.insert(cp.seq, cp.hash.clone());
    }

    let mut rows = sqlx::query("SELECT seq, at, actor, action, subject, detail, prev_hash, hash FROM audit_events ORDER BY seq")
        .fetch(db.pool());
    let mut prev = GENESIS.to_owned();
    let mut last = 0i64;
    let mut problem = None;
    while let Some(row) = rows.try_next().await? {
        let e = event_from_row(&row)?;
        let want_seq = last + 1;
        if e.seq != want_seq {
            problem = Some(Problem {
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
            break;
        }
        if e.prev_hash != prev {
            problem = Some(Problem {
                seq: e.seq,
                what: "does not follow the event before it (its previous hash differs): an event was inserted, removed or moved here".into(),
            });
            break;
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
            problem = Some(Problem {
                seq: e.seq,
                what: "its content does not match its hash: the row was edited".into(),
            });
            break;
        }
        if let Some(want) = expected.get(&e.seq) {
            if *want != e.hash {
                problem = Some(Problem {
                    seq: e.seq,
                    what: "differs from the signed checkpoint: the chain was rewritten from here"
                        .into(),
                });
                break;
            }
        }
        prev = e.hash;
        last = e.seq;
    }
    drop(rows);
    if problem.is_none() {
        if let Some((&cp_seq, _)) = expected.range(last + 1..).next() {
            problem = Some(Problem {
                seq: last + 1,
                what: format!(
                    "missing: a signed checkpoint covers event {cp_seq} but the database ends at event {last} (rolled back or cut short)"
                ),
            });
        }
    }
    if problem.is_none() {
        let row = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_optional(db.pool())
            .await?;
        let head = match row {
            Some(r) => Some((r.try_get::<i64, _>("seq")?, r.try_get::<String, _>("hash")?)),
            None => None,
        };
        problem = match head {
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
        checkpoints: checkpoints.len(),
        problem,
        torn_tail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_length_prefixed() {
        // Moving a byte between fields must change the hash.
        let a = event_hash(1, "t", "ab", "c", "s", "{}", GENESIS);
        let b = event_hash(1, "t", "a", "bc", "s", "{}", GENESIS);
        assert_ne!(a, b);
        assert_eq!(a, event_hash(1, "t", "ab", "c", "s", "{}", GENESIS));
    }

    #[test]
    fn checkpoint_lines_round_trip() {
        let cp = Checkpoint {
            seq: 7,
            hash: GENESIS.into(),
            at: "2026-01-01T00:00:00.000Z".into(),
            kid: "abcd".into(),
            signature: vec![1, 2, 3],
        };
        assert_eq!(Checkpoint::parse(cp.line().trim_end()), Some(cp));
        assert_eq!(Checkpoint::parse("7 x"), None);
    }
}
