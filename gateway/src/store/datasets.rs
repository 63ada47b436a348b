//! SQL for datasets: their records and DMPs (`datasets`).

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

/// A dataset as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatasetRow {
    pub id: String,
    pub title: String,
    /// The data-providing institution's identifier.
    pub institution: String,
    /// The AMED management category (`policy::dmp::Category`'s spelling).
    pub category: String,
    /// The end of restricted sharing, `YYYY-MM-DD`, for the restricted categories.
    pub restricted_until: Option<String>,
    /// The category that follows restricted sharing.
    pub category_after: Option<String>,
    /// The checked DMP, as our own JSON.
    pub dmp: String,
    /// `registered` (listing applied for), `approved` (listing approved, content awaited),
    /// `listed` (content in the STORE) or `unlisted` (listing rejected or withdrawn).
    pub state: String,
    pub created_by: String,
    pub created_at: String,
    pub updated_at: String,
}

const COLUMNS: &str = "id, title, institution, category, restricted_until, category_after, dmp, \
                       state, created_by, created_at, updated_at";

fn dataset_from(r: &AnyRow) -> Result<DatasetRow, sqlx::Error> {
    Ok(DatasetRow {
        id: r.try_get("id")?,
        title: r.try_get("title")?,
        institution: r.try_get("institution")?,
        category: r.try_get("category")?,
        restricted_until: r.try_get("restricted_until")?,
        category_after: r.try_get("category_after")?,
        dmp: r.try_get("dmp")?,
        state: r.try_get("state")?,
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

pub async fn insert(conn: &mut AnyConnection, d: &DatasetRow) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "INSERT INTO datasets ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
    ))
    .bind(&d.id)
    .bind(&d.title)
    .bind(&d.institution)
    .bind(&d.category)
    .bind(&d.restricted_until)
    .bind(&d.category_after)
    .bind(&d.dmp)
    .bind(&d.state)
    .bind(&d.created_by)
    .bind(&d.created_at)
    .bind(&d.updated_at)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn dataset(
    conn: &mut AnyConnection,
    id: &str,
) -> Result<Option<DatasetRow>, sqlx::Error> {
    sqlx::query(&format!("SELECT {COLUMNS} FROM datasets WHERE id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await?
        .as_ref()
        .map(dataset_from)
        .transpose()
}

/// Datasets newest first, all of them or one institution's; at most `limit`.
pub async fn datasets(
    conn: &mut AnyConnection,
    institution: Option<&str>,
    after: Option<&(String, String)>,
    limit: i64,
) -> Result<Vec<DatasetRow>, sqlx::Error> {
    // Off `datasets_by_created` or `datasets_by_institution` (migration 0011).
    let mut q = super::list::ListSql::new(COLUMNS, "datasets", "1 = 1");
    q.and_some("institution = ?", institution)
        .after_created(after, super::list::Order::Newest);
    q.fetch(
        conn,
        (&["created_at", "id"][..], super::list::Order::Newest),
        limit,
        dataset_from,
    )
    .await
}

/// Moves a dataset from state `from` to `to`; false when it was not in `from` (another
/// transaction moved it first).
pub async fn set_state(
    conn: &mut AnyConnection,
    id: &str,
    from: &str,
    to: &str,
    at: &str,
) -> Result<bool, sqlx::Error> {
    let done =
        sqlx::query("UPDATE datasets SET state = $1, updated_at = $2 WHERE id = $3 AND state = $4")
            .bind(to)
            .bind(at)
            .bind(id)
            .bind(from)
            .execute(conn)
            .await?;
    Ok(done.rows_affected() == 1)
}

/// A listed dataset's content: what was uploaded, and the summary of its manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContentRow {
    pub dataset_id: String,
    pub files: i64,
    /// The files' bytes, summed.
    pub bytes: i64,
    /// SHA-256 of the manifest as `sha256sum` prints it, sorted by path.
    pub manifest_sha256: String,
    pub upload_sha256: String,
    pub upload_bytes: i64,
    pub tar_sha256: String,
    /// `tar` or `tar.zst`.
    pub format: String,
    pub uploaded_by: String,
    pub uploaded_at: String,
}

const CONTENT_COLUMNS: &str = "dataset_id, files, bytes, manifest_sha256, upload_sha256, \
                               upload_bytes, tar_sha256, format, uploaded_by, uploaded_at";

pub async fn insert_content(conn: &mut AnyConnection, c: &ContentRow) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "INSERT INTO dataset_contents ({CONTENT_COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
    ))
    .bind(&c.dataset_id)
    .bind(c.files)
    .bind(c.bytes)
    .bind(&c.manifest_sha256)
    .bind(&c.upload_sha256)
    .bind(c.upload_bytes)
    .bind(&c.tar_sha256)
    .bind(&c.format)
    .bind(&c.uploaded_by)
    .bind(&c.uploaded_at)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn content(
    conn: &mut AnyConnection,
    dataset: &str,
) -> Result<Option<ContentRow>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {CONTENT_COLUMNS} FROM dataset_contents WHERE dataset_id = $1"
    ))
    .bind(dataset)
    .fetch_optional(conn)
    .await?;
    row.map(|r| {
        Ok(ContentRow {
            dataset_id: r.try_get("dataset_id")?,
            files: r.try_get("files")?,
            bytes: r.try_get("bytes")?,
            manifest_sha256: r.try_get("manifest_sha256")?,
            upload_sha256: r.try_get("upload_sha256")?,
            upload_bytes: r.try_get("upload_bytes")?,
            tar_sha256: r.try_get("tar_sha256")?,
            format: r.try_get("format")?,
            uploaded_by: r.try_get("uploaded_by")?,
            uploaded_at: r.try_get("uploaded_at")?,
        })
    })
    .transpose()
}

/// Records a dataset's manifest in batches (both engines bound the parameters per statement).
pub async fn insert_files(
    conn: &mut AnyConnection,
    dataset: &str,
    entries: &[super::ingress::ManifestEntry],
) -> Result<(), sqlx::Error> {
    for batch in entries.chunks(500) {
        let mut sql = String::from(
            "INSERT INTO dataset_files (dataset_id, path, kind, size, sha256) VALUES ",
        );
        for i in 0..batch.len() {
            let b = i * 5;
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!(
                "(${}, ${}, ${}, ${}, ${})",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5
            ));
        }
        let mut q = sqlx::query(&sql);
        for e in batch {
            q = q
                .bind(dataset)
                .bind(&e.path)
                .bind(&e.kind)
                .bind(e.size as i64)
                .bind(&e.sha256);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// A dataset's manifest, by path: (path, kind, size, SHA-256).
pub async fn files(
    conn: &mut AnyConnection,
    dataset: &str,
) -> Result<Vec<(String, String, i64, Option<String>)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT path, kind, size, sha256 FROM dataset_files WHERE dataset_id = $1 ORDER BY path",
    )
    .bind(dataset)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("path")?,
                r.try_get("kind")?,
                r.try_get("size")?,
                r.try_get("sha256")?,
            ))
        })
        .collect()
}

/// Datasets whose restricted sharing ended before `today` (`YYYY-MM-DD`): their end day has
/// passed. At most `limit`, earliest end first.
pub async fn restriction_passed(
    conn: &mut AnyConnection,
    today: &str,
    limit: i64,
) -> Result<Vec<DatasetRow>, sqlx::Error> {
    // Off `datasets_by_restricted_until` (migration 0014).
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM datasets WHERE restricted_until IS NOT NULL \
         AND restricted_until < $1 ORDER BY restricted_until, id LIMIT $2"
    ))
    .bind(today)
    .bind(limit)
    .fetch_all(conn)
    .await?
    .iter()
    .map(dataset_from)
    .collect()
}

/// Moves a dataset whose restricted sharing ended to the category after it, if it still is in
/// category `from` with the end `until` (a compare-and-set: of two gateways, one moves it).
/// Whether this call moved it.
pub async fn move_category(
    conn: &mut AnyConnection,
    id: &str,
    from: &str,
    until: &str,
    to: &str,
    now: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE datasets SET category = $1, restricted_until = NULL, category_after = NULL, \
         updated_at = $2 WHERE id = $3 AND category = $4 AND restricted_until = $5",
    )
    .bind(to)
    .bind(now)
    .bind(id)
    .bind(from)
    .bind(until)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Moves a dataset's end of restricted sharing from `from` to `to`, if it still is `from` (a
/// compare-and-set). Whether this call moved it.
pub async fn extend_restriction(
    conn: &mut AnyConnection,
    id: &str,
    from: &str,
    to: &str,
    now: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE datasets SET restricted_until = $1, updated_at = $2 \
         WHERE id = $3 AND restricted_until = $4",
    )
    .bind(to)
    .bind(now)
    .bind(id)
    .bind(from)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

// The public catalog: the search text of each dataset (`catalog_search`, migration 0015), and
// the search itself.

/// Datasets of `categories` whose search text is not written yet, with their DMPs; at most
/// `limit`.
pub async fn catalog_unindexed(
    conn: &mut AnyConnection,
    categories: &[&str],
    limit: i64,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    let marks: Vec<String> = (1..=categories.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT d.id, d.dmp FROM datasets d LEFT JOIN catalog_search c ON c.dataset_id = d.id \
         WHERE c.dataset_id IS NULL AND d.category IN ({}) ORDER BY d.created_at, d.id LIMIT {}",
        marks.join(", "),
        limit.max(1)
    );
    let mut q = sqlx::query(&sql);
    for c in categories {
        q = q.bind(*c);
    }
    q.fetch_all(conn)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("id")?, r.try_get("dmp")?)))
        .collect()
}

/// Writes a dataset's search text, unless it is written already.
pub async fn catalog_index(
    conn: &mut AnyConnection,
    dataset: &str,
    search: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO catalog_search (dataset_id, search) VALUES ($1, $2) \
         ON CONFLICT (dataset_id) DO NOTHING",
    )
    .bind(dataset)
    .bind(search)
    .execute(conn)
    .await?;
    Ok(())
}

/// The datasets of `categories` whose listing the committee approved (`approved` or `listed`:
/// never one registered and waiting, nor one whose listing was refused) and whose search text
/// holds `needle` (folded as the text is; every one when `None`), newest first, after
/// `after`; at most `limit`.
pub async fn catalog_search(
    conn: &mut AnyConnection,
    categories: &[&str],
    needle: Option<&str>,
    after: Option<&(String, String)>,
    limit: i64,
) -> Result<Vec<DatasetRow>, sqlx::Error> {
    if categories.is_empty() {
        return Ok(Vec::new());
    }
    // The categories are `policy`'s own spellings (snake_case), written into the query as
    // literals: nothing a caller sends.
    let listed: Vec<String> = categories
        .iter()
        .filter(|c| c.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        .map(|c| format!("'{c}'"))
        .collect();
    let from = format!(
        "(SELECT d.*, c.search FROM datasets d JOIN catalog_search c ON c.dataset_id = d.id \
         WHERE d.category IN ({}) AND d.state IN ('approved', 'listed')) AS catalog",
        listed.join(", ")
    );
    let mut q = super::list::ListSql::new(COLUMNS, &from, "1 = 1");
    if let Some(n) = needle {
        q.and(
            r"search LIKE ? ESCAPE '\'",
            format!("%{}%", like_escaped(n)),
        );
    }
    q.after_created(after, super::list::Order::Newest);
    q.fetch(
        conn,
        (&["created_at", "id"][..], super::list::Order::Newest),
        limit,
        dataset_from,
    )
    .await
}

/// `s` with LIKE's wildcards and its escape character taken literally.
fn like_escaped(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
