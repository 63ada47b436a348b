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

/// A list's query under construction: its conditions, each with the values of its `?`s.
pub(crate) struct ListSql {
    columns: String,
    from: String,
    conds: Vec<(String, Vec<String>)>,
}

impl ListSql {
    /// `SELECT {columns} FROM {from} WHERE {first}`: conditions are added after it.
    pub(crate) fn new(columns: &str, from: &str, first: &str) -> ListSql {
        ListSql {
            columns: columns.to_owned(),
            from: from.to_owned(),
            conds: vec![(first.to_owned(), Vec::new())],
        }
    }

    /// Adds ` AND {clause}`, whose `?` is `v`.
    pub(crate) fn and(&mut self, clause: &str, v: impl Into<String>) -> &mut Self {
        self.conds.push((clause.to_owned(), vec![v.into()]));
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
            let clause = format!("created_at {op}= ? AND (created_at {op} ? OR id {op} ?)");
            self.conds
                .push((clause, vec![at.clone(), at.clone(), id.clone()]));
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

    /// The query of at most `limit` rows in `order`, with `extra` conditions; its values are
    /// pushed onto `binds` and numbered after those already there.
    fn render(
        &self,
        extra: &[(&str, &str)],
        order: &str,
        limit: i64,
        binds: &mut Vec<String>,
    ) -> String {
        let extra = extra
            .iter()
            .map(|(c, v)| ((*c).to_owned(), vec![(*v).to_owned()]));
        let mut conds = Vec::new();
        for (clause, values) in self.conds.iter().cloned().chain(extra) {
            let mut parts = clause.split('?');
            let mut c = parts.next().unwrap_or_default().to_owned();
            for (part, v) in parts.zip(values) {
                binds.push(v);
                c.push_str(&format!("${}{part}", binds.len()));
            }
            conds.push(c);
        }
        format!(
            "SELECT {} FROM {} WHERE {} ORDER BY {order} LIMIT {}",
            self.columns,
            self.from,
            conds.join(" AND "),
            limit.max(1)
        )
    }

    /// Reads at most `limit` rows in the order of `columns` (each in the direction `o`), each
    /// made by `row`.
    pub(crate) async fn fetch<T>(
        self,
        conn: &mut AnyConnection,
        (columns, o): (&[&str], Order),
        limit: i64,
        row: impl Fn(&AnyRow) -> Result<T, sqlx::Error>,
    ) -> Result<Vec<T>, sqlx::Error> {
        let mut binds = Vec::new();
        let sql = self.render(&[], &order_by(columns, o), limit, &mut binds);
        run(conn, &sql, binds, row).await
    }

    /// As [`Self::fetch`], of the rows whose `column` is one of `values` (a caller's projects):
    /// a page of each value's rows, each read off its own index (`column`, then the order), and
    /// the page of them all taken from those. A page costs what one of each costs, however many
    /// rows the values have; no value, no rows.
    pub(crate) async fn fetch_each<T>(
        self,
        conn: &mut AnyConnection,
        (column, values): (&str, &[String]),
        (columns, o): (&[&str], Order),
        limit: i64,
        row: impl Fn(&AnyRow) -> Result<T, sqlx::Error>,
    ) -> Result<Vec<T>, sqlx::Error> {
        if values.is_empty() {
            return Ok(Vec::new());
        }
        let order = order_by(columns, o);
        let clause = format!("{column} = ?");
        let mut binds = Vec::new();
        let arms: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let arm = self.render(&[(&clause, v)], &order, limit, &mut binds);
                format!("SELECT * FROM ({arm}) AS arm{i}")
            })
            .collect();
        let sql = format!(
            "{} ORDER BY {order} LIMIT {}",
            arms.join(" UNION ALL "),
            limit.max(1)
        );
        run(conn, &sql, binds, row).await
    }
}

fn order_by(columns: &[&str], o: Order) -> String {
    let order: Vec<String> = columns.iter().map(|c| format!("{c} {}", o.dir())).collect();
    order.join(", ")
}

async fn run<T>(
    conn: &mut AnyConnection,
    sql: &str,
    binds: Vec<String>,
    row: impl Fn(&AnyRow) -> Result<T, sqlx::Error>,
) -> Result<Vec<T>, sqlx::Error> {
    let mut q = sqlx::query(sql);
    for b in binds {
        q = q.bind(b);
    }
    q.fetch_all(conn).await?.iter().map(row).collect()
}

/// The projects `subject` is a member of, in the order of their ids.
pub(crate) async fn projects_of(
    conn: &mut AnyConnection,
    subject: &str,
) -> Result<Vec<String>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT DISTINCT project_id FROM project_members WHERE subject = $1 ORDER BY project_id",
    )
    .bind(subject)
    .fetch_all(conn)
    .await?;
    rows.iter().map(|r| r.try_get("project_id")).collect()
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
