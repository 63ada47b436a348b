//! What the benchmarks share: a scratch directory and a fresh PostgreSQL database.

use std::path::PathBuf;

/// A new directory under `$TMPDIR` (or `/tmp`) named `vre-{tag}-bench-…`.
pub(crate) fn tempdir(tag: &str) -> anyhow::Result<PathBuf> {
    let base = std::env::var_os("TMPDIR").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    let mut r = [0u8; 6];
    getrandom::fill(&mut r).map_err(|e| anyhow::anyhow!("{e}"))?;
    let dir = base.join(format!("vre-{tag}-bench-{}", hex::encode(r)));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A database of its own, `name`, on the PostgreSQL server at `base` (made afresh); its URL.
pub(crate) async fn fresh_pg(base: &str, name: &str) -> anyhow::Result<String> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(base).await?;
    sqlx::Executor::execute(
        &mut conn,
        format!("DROP DATABASE IF EXISTS {name}").as_str(),
    )
    .await?;
    sqlx::Executor::execute(&mut conn, format!("CREATE DATABASE {name}").as_str()).await?;
    let (prefix, _) = base.rsplit_once('/').unwrap_or((base, ""));
    Ok(format!("{prefix}/{name}"))
}
