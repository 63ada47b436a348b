//! The archives of ingress applications: what was uploaded, and its manifest.

use sqlx::{AnyConnection, Row};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngressRow {
    pub application_id: String,
    pub name: String,
    pub blob_sha256: String,
    pub format: String,
    pub upload_bytes: i64,
    pub tar_sha256: String,
    pub unpacked_bytes: i64,
    pub entry_count: i64,
}

pub async fn insert_archive(conn: &mut AnyConnection, r: &IngressRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO ingress_archives (application_id, name, blob_sha256, format, upload_bytes, tar_sha256, \
         unpacked_bytes, entry_count) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&r.application_id)
    .bind(&r.name)
    .bind(&r.blob_sha256)
    .bind(&r.format)
    .bind(r.upload_bytes)
    .bind(&r.tar_sha256)
    .bind(r.unpacked_bytes)
    .bind(r.entry_count)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn archive(
    conn: &mut AnyConnection,
    app: &str,
) -> Result<Option<IngressRow>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT application_id, name, blob_sha256, format, upload_bytes, tar_sha256, unpacked_bytes, entry_count \
         FROM ingress_archives WHERE application_id = $1",
    )
    .bind(app)
    .fetch_optional(conn)
    .await?;
    row.map(|r| {
        Ok(IngressRow {
            application_id: r.try_get("application_id")?,
            name: r.try_get("name")?,
            blob_sha256: r.try_get("blob_sha256")?,
            format: r.try_get("format")?,
            upload_bytes: r.try_get("upload_bytes")?,
            tar_sha256: r.try_get("tar_sha256")?,
            unpacked_bytes: r.try_get("unpacked_bytes")?,
            entry_count: r.try_get("entry_count")?,
        })
    })
    .transpose()
}

/// One entry of an archive's manifest, as the ingress scan finds it and as it is recorded (the
/// API answers it as it is, hence the wire derives).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ManifestEntry {
    pub path: String,
    /// file or directory
    pub kind: String,
    pub size: u64,
    pub mode: u32,
    /// SHA-256 of the file's content; none for directories.
    pub sha256: Option<String>,
}

/// Inserts a manifest in batches (both engines bound the number of parameters per statement).
pub async fn insert_entries(
    conn: &mut AnyConnection,
    app: &str,
    entries: &[ManifestEntry],
) -> Result<(), sqlx::Error> {
    for batch in entries.chunks(500) {
        let mut sql = String::from(
            "INSERT INTO archive_entries (application_id, path, kind, size, mode, sha256) VALUES ",
        );
        for i in 0..batch.len() {
            let b = i * 6;
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!(
                "(${}, ${}, ${}, ${}, ${}, ${})",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5,
                b + 6
            ));
        }
        let mut q = sqlx::query(&sql);
        for e in batch {
            q = q
                .bind(app)
                .bind(&e.path)
                .bind(&e.kind)
                .bind(e.size as i64)
                .bind(i64::from(e.mode))
                .bind(&e.sha256);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

pub async fn entries(
    conn: &mut AnyConnection,
    app: &str,
) -> Result<Vec<ManifestEntry>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT path, kind, size, mode, sha256 FROM archive_entries WHERE application_id = $1 ORDER BY path",
    )
    .bind(app)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(ManifestEntry {
                path: r.try_get("path")?,
                kind: r.try_get("kind")?,
                size: r.try_get::<i64, _>("size")? as u64,
                mode: r.try_get::<i64, _>("mode")? as u32,
                sha256: r.try_get("sha256")?,
            })
        })
        .collect()
}
