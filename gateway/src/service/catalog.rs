//! The public catalog: the datasets whose DMP allows secondary use and whose listing the
//! committee approved, what their DMPs say in public, searched by anyone, signed in or not.
//!
//! Which datasets it shows is `policy`'s rule (`dmp::catalog::in_catalog`, on the dataset's
//! category now, so an extension that opens a dataset up brings it in), and so is what it
//! shows of each (`dmp::catalog::entry`). A search matches the public items only: the text it
//! runs over (`catalog_search`) is written from the entry when the dataset is registered (and
//! at start for any without one), so a search, public as it is, only reads.

use policy::dmp::catalog::{self, Entry};
use policy::dmp::{Category, Dmp};

use super::page::{Page, PageAsk, Window};
use super::{Error, Result};
use crate::db::WriteTx;
use crate::error::ErrorCode;
use crate::state::AppState;
use crate::store::datasets::{self as dstore, DatasetRow};

/// One dataset as the catalog shows it.
#[derive(Debug, Clone)]
pub struct Item {
    pub id: String,
    pub category: Category,
    pub restricted_until: Option<String>,
    pub category_after: Option<Category>,
    pub registered_at: String,
    pub entry: Entry,
}

/// How many datasets one pass of [`index_missing`] writes the search text of.
const INDEX_BATCH: i64 = 200;

/// The datasets shown in the catalog whose public items hold `q` (any case, either language;
/// every one when `q` is blank), newest first. No caller: the catalog is public.
pub async fn search(state: &AppState, q: &str, ask: &PageAsk) -> Result<Page<Item>> {
    let needle =
        catalog::query(q).map_err(|e| Error::invalid(ErrorCode::TooLong, e.to_string()))?;
    let window = Window::of("catalog", ask)?;
    let categories: Vec<&str> = catalog::catalog_categories()
        .into_iter()
        .map(Category::as_str)
        .collect();
    let mut conn = state.db.pool().acquire().await?;
    let rows = dstore::catalog_search(
        &mut conn,
        &categories,
        needle.as_deref(),
        window.after.as_ref(),
        window.fetch(),
    )
    .await?;
    let page = window.page(rows, |r| (r.created_at.clone(), r.id.clone()));
    let items = page.items.into_iter().map(item).collect::<Result<_>>()?;
    Ok(Page {
        items,
        next: page.next,
    })
}

/// Writes a dataset's search text, in the transaction that registers it: searches only read.
pub(crate) async fn index(tx: &mut WriteTx, id: &str, dmp: &Dmp) -> Result<()> {
    let text = catalog::search_text(&catalog::entry(dmp));
    dstore::catalog_index(tx.conn(), id, &text).await?;
    Ok(())
}

/// Writes the search text of the datasets that have none (registered before the catalog
/// existed), at start; how many.
pub async fn index_missing(db: &crate::db::Db) -> Result<usize> {
    let every: Vec<&str> = Category::ALL.iter().map(|c| c.as_str()).collect();
    let mut done = 0;
    loop {
        let new = {
            let mut conn = db.pool().acquire().await?;
            dstore::catalog_unindexed(&mut conn, &every, INDEX_BATCH).await?
        };
        let mut tx = db.begin_write().await?;
        for (id, dmp) in &new {
            index(&mut tx, id, &dmp_of(id, dmp)?).await?;
        }
        tx.commit().await?;
        done += new.len();
        if (new.len() as i64) < INDEX_BATCH {
            return Ok(done);
        }
    }
}

fn dmp_of(id: &str, dmp: &str) -> Result<Dmp> {
    serde_json::from_str(dmp)
        .map_err(|e| Error::internal(format!("dataset {id}'s stored DMP: {e}")))
}

fn item(d: DatasetRow) -> Result<Item> {
    let category = |c: &str| {
        c.parse::<Category>()
            .map_err(|e| Error::internal(format!("dataset {}: {e}", d.id)))
    };
    Ok(Item {
        category: category(&d.category)?,
        category_after: d.category_after.as_deref().map(category).transpose()?,
        entry: catalog::entry(&dmp_of(&d.id, &d.dmp)?),
        id: d.id,
        restricted_until: d.restricted_until,
        registered_at: d.created_at,
    })
}
