//! The database: one pool over SQLite or PostgreSQL, migrations, and write transactions.
//!
//! The same SQL runs on both engines through sqlx's `Any` driver (portable types only: TEXT and
//! BIGINT, `$n` placeholders). Every write goes through [`Db::begin_write`], which first updates
//! the single `audit_head` row: that takes the write lock on SQLite and a row lock on
//! PostgreSQL, so writers are serialised across threads and replicas, each transaction sees the
//! latest head of the audit chain, and a quorum is counted exactly once.

use std::time::Duration;

use anyhow::Context;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyConnection, AnyPool, Executor, Row, Transaction};

use crate::audit::{self, ChainHead, NewEvent};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Migrations SQLite runs in words of its own (`migrations/sqlite/`), by version: where
/// PostgreSQL alters a table in place and SQLite must rebuild it.
const SQLITE_FORMS: &[(i64, &str)] = &[
    (11, include_str!("../migrations/sqlite/0011_datasets.sql")),
    (
        17,
        include_str!("../migrations/sqlite/0017_quarantine_payloads.sql"),
    ),
];

/// The migrations for one engine: [`MIGRATOR`]'s, with SQLite's own forms in their place.
fn migrator(engine: Engine) -> sqlx::migrate::Migrator {
    use sqlx::migrate::{Migration, Migrator};
    let migrations = MIGRATOR
        .iter()
        .map(
            |m| match SQLITE_FORMS.iter().find(|(v, _)| *v == m.version) {
                Some((_, sql)) if engine == Engine::Sqlite => Migration::new(
                    m.version,
                    m.description.clone(),
                    m.migration_type,
                    std::borrow::Cow::Borrowed(sql),
                    m.no_tx,
                ),
                _ => m.clone(),
            },
        )
        .collect::<Vec<_>>();
    Migrator {
        migrations: std::borrow::Cow::Owned(migrations),
        ..Migrator::DEFAULT
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// A database handle; cheap to clone.
#[derive(Clone, Debug)]
pub struct Db {
    pool: AnyPool,
    engine: Engine,
}

impl Db {
    /// Connects and migrates.
    pub async fn open(url: &str, max_connections: u32) -> anyhow::Result<Db> {
        sqlx::any::install_default_drivers();
        let engine = if url.starts_with("sqlite:") {
            Engine::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Engine::Postgres
        } else {
            anyhow::bail!("database_url must start with sqlite: or postgres:");
        };
        let options: AnyConnectOptions = url.parse().context("parsing database_url")?;
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if engine == Engine::Sqlite {
                        // WAL lets readers go on while one writer writes; FULL makes a commit
                        // durable before it is acknowledged; the busy timeout makes writers
                        // queue for the lock instead of failing.
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = FULL").await?;
                        conn.execute("PRAGMA busy_timeout = 30000").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .context("connecting to the database")?;
        migrate(&pool, engine).await?;
        Ok(Db { pool, engine })
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Whether the database answers (for health checks).
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Sends a notification on a channel to every gateway listening (PostgreSQL's `NOTIFY`;
    /// nothing on SQLite).
    pub async fn notify(&self, channel: &str, payload: &str) -> Result<(), sqlx::Error> {
        if self.engine != Engine::Postgres {
            return Ok(());
        }
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(channel)
            .bind(payload)
            .execute(&self.pool)
            .await
            .map(|_| ())
    }

    /// Starts a write transaction holding the chain lock.
    pub async fn begin_write(&self) -> Result<WriteTx, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query("UPDATE audit_head SET seq = seq WHERE id = 1 RETURNING seq, hash")
            .fetch_one(&mut *tx)
            .await?;
        let head = ChainHead {
            seq: row.try_get("seq")?,
            hash: row.try_get("hash")?,
        };
        Ok(WriteTx {
            tx,
            head,
            dirty: false,
            appended: 0,
        })
    }

    /// Closes every connection. sqlx's `Pool::close` can return while a connection is still on
    /// its way back to the pool, and that one then stays open for good (launchbadge/sqlx#3217):
    /// on SQLite it keeps the database, its WAL and its locks after a clean stop. So close again
    /// until the pool is empty, for a bounded time.
    pub async fn close(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            self.pool.close().await;
            if self.pool.size() == 0 || std::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// A connection of its own listening on a channel of a PostgreSQL database (`LISTEN`).
pub async fn listen(url: &str, channel: &str) -> Result<sqlx::postgres::PgListener, sqlx::Error> {
    let mut listener = sqlx::postgres::PgListener::connect(url).await?;
    listener.listen(channel).await?;
    Ok(listener)
}

/// Runs the migrations. On SQLite they run with foreign keys off, as SQLite's procedure for
/// rebuilding a table asks (a table others refer to cannot be dropped otherwise), and every
/// foreign key is checked before the connection has them on again.
async fn migrate(pool: &AnyPool, engine: Engine) -> anyhow::Result<()> {
    let migrator = migrator(engine);
    if engine == Engine::Postgres {
        return migrator.run(pool).await.context("migrating the database");
    }
    let mut conn = pool.acquire().await?;
    conn.execute("PRAGMA foreign_keys = OFF").await?;
    let ran = migrator.run_direct(&mut *conn).await;
    let broken = sqlx::query("PRAGMA foreign_key_check")
        .fetch_all(&mut *conn)
        .await;
    conn.execute("PRAGMA foreign_keys = ON").await?;
    ran.context("migrating the database")?;
    let broken = broken.context("checking foreign keys after the migrations")?;
    anyhow::ensure!(
        broken.is_empty(),
        "after the migrations, {} row(s) refer to rows that do not exist",
        broken.len()
    );
    Ok(())
}

/// A write transaction. Audit events appended through it commit or vanish with its other writes.
pub struct WriteTx {
    tx: Transaction<'static, Any>,
    head: ChainHead,
    dirty: bool,
    appended: u64,
}

impl WriteTx {
    pub fn conn(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }

    /// Appends one event to the audit chain.
    pub async fn audit(&mut self, event: NewEvent<'_>) -> Result<i64, sqlx::Error> {
        let stored = audit::append(&mut self.tx, &self.head, event).await?;
        self.head = ChainHead {
            seq: stored.seq,
            hash: stored.hash,
        };
        self.dirty = true;
        self.appended += 1;
        Ok(self.head.seq)
    }

    /// How many events this transaction appended so far.
    pub fn pending_events(&self) -> u64 {
        self.appended
    }

    /// Commits; returns the new chain head when events were appended.
    pub async fn commit(mut self) -> Result<Option<ChainHead>, sqlx::Error> {
        if self.dirty {
            sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
                .bind(self.head.seq)
                .bind(&self.head.hash)
                .execute(&mut *self.tx)
                .await?;
        }
        self.tx.commit().await?;
        Ok(self.dirty.then_some(self.head))
    }
}
