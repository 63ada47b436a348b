//! The queries of lists: conditions added one by one with their bound values, then the page
//! read off an index in the list's order after the last item of the page before (keyset
//! paging: a deep page costs what the first does).

use std::collections::HashMap;

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

/// Which way a list runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    Oldest,
    Newest,
}

impl Order {
    fn op(self) -> &'static str {
        match self {
            Order::Oldest => ">",
            Order::Newest => "<",
        }
    }

    fn dir(self) -> &'static str {
        match self {
            Order::Oldest => "ASC",
            Order::Newest => "DESC",
        }
    }
}

/// A list's query under construction.
pub(crate) struct ListSql {
    sql: String,
    binds: Vec<String>,
}

impl ListSql {
    /// `SELECT {columns} FROM {from} WHERE {first}`: conditions are added after it.
    pub(crate) fn new(columns: &str, from: &str, first: &str) -> ListSql {
        ListSql {
            sql: format!("SELECT {columns} FROM {from} WHERE {first}"),
            binds: Vec::new(),
        }
    }

    /// Adds ` AND {clause}`, whose `?` is `v`.
    pub(crate) fn and(&mut self, clause: &str, v: impl Into<String>) -> &mut Self {
        self.binds.push(v.into());
        let mark = format!("${}", self.binds.len());
        self.sql.push_str(" AND ");
        self.sql.push_str(&clause.replace('?', &mark));
        self
    }

    /// Adds `clause` when there is a value for it.
    pub(crate) fn and_some(&mut self, clause: &str, v: Option<impl Into<String>>) -> &mut Self {
        if let Some(v) = v {
            self.and(clause, v);
        }
        self
    }

    /// Keeps the rows after `(at, id)` in the order `created_at, id`. Written as a range on
    /// `created_at` and the tie broken by `id`, so both engines start the scan of an index
    /// ending in `(created_at, id)` at the cursor (a plain `OR` would be read as a filter, and
    /// a deep page would scan everything before it).
    pub(crate) fn after_created(
        &mut self,
        after: Option<&(String, String)>,
        o: Order,
    ) -> &mut Self {
        if let Some((at, id)) = after {
            let op = o.op();
            self.and(&format!("created_at {op}= ?"), at.clone());
            self.and(&format!("(created_at {op} ?"), at.clone());
            self.binds.push(id.clone());
            self.sql
                .push_str(&format!(" OR id {op} ${})", self.binds.len()));
        }
        self
    }

    /// Keeps the rows after `key` in the order of the unique column `column`.
    pub(crate) fn after_key(&mut self, column: &str, key: Option<&String>, o: Order) -> &mut Self {
        if let Some(k) = key {
            self.and(&format!("{column} {} ?", o.op()), k.clone());
        }
        self
    }

    /// Reads at most `limit` rows in the order of `columns` (each in the direction `o`), each
    /// made by `row`.
    pub(crate) async fn fetch<T>(
        mut self,
        conn: &mut AnyConnection,
        (columns, o): (&[&str], Order),
        limit: i64,
        row: impl Fn(&AnyRow) -> Result<T, sqlx::Error>,
    ) -> Result<Vec<T>, sqlx::Error> {
        let order: Vec<String> = columns.iter().map(|c| format!("{c} {}", o.dir())).collect();
        self.sql.push_str(&format!(
            " ORDER BY {} LIMIT {}",
            order.join(", "),
            limit.max(1)
        ));
        let mut q = sqlx::query(&self.sql);
        for b in &self.binds {
            q = q.bind(b);
        }
        q.fetch_all(conn).await?.iter().map(row).collect()
    }
}

/// What belongs to each item of a page, read in one query whatever the page's size: the rows
/// of `select` whose `owner` column is one of `owners`, in the order of `order` within each
/// owner's, each made by `row` and grouped by owner.
pub(crate) async fn of_each<T>(
    conn: &mut AnyConnection,
    select: &str,
    owner: &str,
    owners: &[&str],
    order: &str,
    row: impl Fn(&AnyRow) -> Result<T, sqlx::Error>,
) -> Result<HashMap<String, Vec<T>>, sqlx::Error> {
    let mut out: HashMap<String, Vec<T>> = HashMap::new();
    if owners.is_empty() {
        return Ok(out);
    }
    let marks: Vec<String> = (1..=owners.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "{select} WHERE {owner} IN ({}) ORDER BY {owner}, {order}",
        marks.join(", ")
    );
    let mut q = sqlx::query(&sql);
    for o in owners {
        q = q.bind(*o);
    }
    for r in q.fetch_all(conn).await? {
        out.entry(r.try_get(owner)?).or_default().push(row(&r)?);
    }
    Ok(out)
}
