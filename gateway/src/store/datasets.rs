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
    /// `registered` (listing applied for), `listed` next.
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

/// The datasets of `categories` whose search text holds `needle` (folded as the text is; every
/// one when `None`), newest first, after `after`; at most `limit`.
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
         WHERE d.category IN ({})) AS catalog",
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
