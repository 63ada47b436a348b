//! Searching the audit log: the events of a subject, an actor, an action, a range of days.

use super::{StoredEvent, event_from_row};

/// What a search of the log asks for: each given field narrows it (all of them at once).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Events about this subject.
    pub subject: Option<String>,
    /// Events of this actor.
    pub actor: Option<String>,
    /// Events of this action (`dataset.register`).
    pub action: Option<String>,
    /// Events on or after this day (`YYYY-MM-DD`, UTC).
    pub since: Option<String>,
    /// Events on or before this day (`YYYY-MM-DD`, UTC).
    pub until: Option<String>,
}

/// Events after `after` that `f` admits, oldest first, at most `limit`.
pub async fn search(
    conn: &mut sqlx::AnyConnection,
    after: i64,
    f: &EventFilter,
    limit: i64,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let mut sql = String::from(
        "SELECT seq, at, actor, action, subject, detail, prev_hash, hash FROM audit_events \
         WHERE seq > $1",
    );
    let mut binds: Vec<&str> = Vec::new();
    for (column, value) in [
        ("subject = ", &f.subject),
        ("actor = ", &f.actor),
        ("action = ", &f.action),
        ("substr(at, 1, 10) >= ", &f.since),
        ("substr(at, 1, 10) <= ", &f.until),
    ] {
        if let Some(v) = value {
            binds.push(v);
            sql.push_str(&format!(" AND {column}${}", binds.len() + 1));
        }
    }
    sql.push_str(&format!(" ORDER BY seq LIMIT ${}", binds.len() + 2));
    let mut q = sqlx::query(&sql).bind(after);
    for b in binds {
        q = q.bind(b);
    }
    let rows = q.bind(limit).fetch_all(conn).await?;
    rows.iter().map(event_from_row).collect()
}
