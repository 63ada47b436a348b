//! Benchmark: a page of a list at 10k and at 100k applications (and at 10k and 1M audit
//! events): whether a page costs the same however long the list.
//!
//! Run it with `cargo bench -p gateway --bench lists` (release build). It is a benchmark, not a
//! test: it prints figures and MET/MISS against the target and exits 0 either way. Built as a
//! test (`cargo test --all-targets`), it does nothing.
//!
//! For each engine (SQLite always; PostgreSQL when `VRE_BENCH_POSTGRES_URL` names a server the
//! benchmark may create databases on) it makes a migrated database (`Db::open`), seeds 20
//! projects, the smaller number of applications (`VRE_BENCH_LISTS_APPS`, default
//! `10000,100000`) with two votes each, and the smaller number of audit events
//! (`VRE_BENCH_LISTS_EVENTS`, default `10000,1000000`), in multi-row inserts of 500 rows, a
//! transaction each (then, on PostgreSQL, `ANALYZE`, as autovacuum would). It times pages
//! there, then tops the tables up to the larger numbers and times them again. A page is what `GET /api/v1/applications?limit=100` (or
//! `/api/v1/audit?limit=100`) does below HTTP: a pool connection, the page's query read off the
//! list's index (and, for applications, their votes in one more query), and its cursor; a
//! reviewer's view (every project), and a member's (an analyst in 2 of the 20 projects, whose
//! list merges a page of each of their projects). The first page, and a deep page: the one
//! after the cursor in the middle of the list at that size. 20 reads to warm up, then 200 timed, one after the
//! other; p50 and p99.
//!
//! Target (issue 16): p99 < 20 ms at the larger size, and flat: the larger size's p50 at most
//! 1.5 times the smaller's plus 0.5 ms (the median, as a p99 of 200 reads on a shared machine
//! is one or two stalls of whatever else runs).

mod common;

use std::time::{Duration, Instant};

use gateway::db::Db;
use gateway::service::page::{PageAsk, Window};
use gateway::store;
use sqlx::AnyConnection;

const READS: usize = 200;
const WARMUP: usize = 20;
const PAGE: i64 = 100;
const BATCH: usize = 500;
const TARGET_P99: Duration = Duration::from_millis(20);

fn main() -> anyhow::Result<()> {
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    let sizes = |var: &str, default: &str| -> anyhow::Result<(usize, usize)> {
        let v: Vec<usize> = std::env::var(var)
            .unwrap_or_else(|_| default.into())
            .split(',')
            .map(|s| s.trim().parse())
            .collect::<Result<_, _>>()?;
        anyhow::ensure!(
            v.len() == 2 && v[0] < v[1],
            "{var}: two sizes, smaller first"
        );
        Ok((v[0], v[1]))
    };
    let apps = sizes("VRE_BENCH_LISTS_APPS", "10000,100000")?;
    let events = sizes("VRE_BENCH_LISTS_EVENTS", "10000,1000000")?;
    let rt = tokio::runtime::Runtime::new()?;
    let mut engines = vec![("sqlite", None)];
    if let Ok(url) = std::env::var("VRE_BENCH_POSTGRES_URL") {
        engines.push(("postgres", Some(url)));
    }
    println!("lists: pages of {PAGE}, p50 / p99 of {READS} reads, ms");
    println!(
        "{:<9} {:<13} {:<6} {:>17} {:>17} {:>8}",
        "engine", "list", "page", "small p50/p99", "large p50/p99", "target"
    );
    for (name, pg) in &engines {
        let dir = common::tempdir("lists")?;
        let url = match pg {
            Some(base) => rt.block_on(common::fresh_pg(base, "vre_lists_bench"))?,
            None => format!("sqlite://{}/vre.db?mode=rwc", dir.display()),
        };
        rt.block_on(bench_engine(name, &url, apps, events))?;
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

/// The figures of one list at the smaller size and the larger.
struct Case {
    list: &'static str,
    page: &'static str,
    small: (Duration, Duration),
    large: (Duration, Duration),
}

async fn bench_engine(
    engine: &str,
    url: &str,
    apps: (usize, usize),
    events: (usize, usize),
) -> anyhow::Result<()> {
    let db = Db::open(url, 4).await?;
    let fill = Instant::now();
    seed_projects(&db).await?;
    seed_applications(&db, 0, apps.0).await?;
    seed_events(&db, 0, events.0).await?;
    analyze(&db).await?;
    eprintln!(
        "  ({engine}: seeding the smaller sizes took {:.1} s)",
        fill.elapsed().as_secs_f64()
    );
    let small = pages(&db, apps.0, events.0).await?;
    let fill = Instant::now();
    seed_applications(&db, apps.0, apps.1).await?;
    seed_events(&db, events.0, events.1).await?;
    analyze(&db).await?;
    eprintln!(
        "  ({engine}: topping up to the larger sizes took {:.1} s)",
        fill.elapsed().as_secs_f64()
    );
    let large = pages(&db, apps.1, events.1).await?;
    let names = [
        ("applications", "first"),
        ("applications", "deep"),
        ("member's", "first"),
        ("member's", "deep"),
        ("audit", "first"),
        ("audit", "deep"),
    ];
    for (i, (list, page)) in names.into_iter().enumerate() {
        report(
            engine,
            &Case {
                list,
                page,
                small: small[i],
                large: large[i],
            },
        );
    }
    println!(
        "{:<9} (applications: {} and {}, two votes each; audit events: {} and {})",
        "", apps.0, apps.1, events.0, events.1
    );
    db.close().await;
    Ok(())
}

/// On PostgreSQL, the statistics autovacuum gathers within a minute of a bulk load on a live
/// database (without them, the planner takes fresh tables for tiny ones). SQLite is measured
/// as the gateway leaves it: it never runs `ANALYZE`.
async fn analyze(db: &Db) -> anyhow::Result<()> {
    if db.engine() == gateway::db::Engine::Postgres {
        sqlx::query("ANALYZE").execute(db.pool()).await?;
    }
    Ok(())
}

/// The first page and the middle one of the applications (`apps` of them) and of the audit
/// log (`events`).
async fn pages(db: &Db, apps: usize, events: usize) -> anyhow::Result<[(Duration, Duration); 6]> {
    let app_mid = app_at(db, apps / 2, None).await?;
    let member_mid = app_at(db, apps / MEMBER_SHARE / 2, Some(MEMBER)).await?;
    let event_mid = i64::try_from(events / 2)?;
    Ok([
        timed(|| apps_page(db, None, None)).await?,
        timed(|| apps_page(db, None, Some(&app_mid))).await?,
        timed(|| apps_page(db, Some(MEMBER), None)).await?,
        timed(|| apps_page(db, Some(MEMBER), Some(&member_mid))).await?,
        timed(|| events_page(db, None)).await?,
        timed(|| events_page(db, Some(event_mid))).await?,
    ])
}

fn report(engine: &str, c: &Case) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    // Flat by the median: on a shared machine a p99 of 200 reads is one or two stalls.
    let flat = c.large.0 <= c.small.0.mul_f64(1.5) + Duration::from_micros(500);
    let met = c.large.1 < TARGET_P99 && flat;
    println!(
        "{:<9} {:<13} {:<6} {:>8.2} /{:>7.2} {:>8.2} /{:>7.2} {:>8}",
        engine,
        c.list,
        c.page,
        ms(c.small.0),
        ms(c.small.1),
        ms(c.large.0),
        ms(c.large.1),
        if met { "MET" } else { "MISS" }
    );
}

/// p50 and p99 of [`READS`] reads by `read`, after [`WARMUP`] untimed.
async fn timed<F, Fut>(read: F) -> anyhow::Result<(Duration, Duration)>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<usize>>,
{
    for _ in 0..WARMUP {
        read().await?;
    }
    let mut times = Vec::with_capacity(READS);
    for _ in 0..READS {
        let start = Instant::now();
        let n = read().await?;
        times.push(start.elapsed());
        anyhow::ensure!(n == PAGE as usize, "a page of {n}, not {PAGE}");
    }
    times.sort();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    Ok((at(0.50), at(0.99)))
}

/// A cursor after the item at `key`, as the list `list` gives it out.
fn cursor_after<K: gateway::service::page::Key + Clone>(list: &'static str, key: K) -> String {
    let ask = PageAsk {
        limit: Some(1),
        cursor: None,
    };
    let w = Window::<K>::of(list, &ask).expect("a window");
    w.page(vec![key.clone(), key], Clone::clone)
        .next
        .expect("a cursor")
}

/// A page of applications as the service reads it: for a reviewer (two queries), or for a
/// `member` of some projects (three: their projects, a page of each, the votes).
async fn apps_page(
    db: &Db,
    member: Option<&str>,
    after: Option<&(String, String)>,
) -> anyhow::Result<usize> {
    let ask = PageAsk {
        limit: Some(PAGE),
        cursor: after.map(|k| cursor_after("applications", k.clone())),
    };
    let w = Window::<(String, String)>::of("applications", &ask)?;
    let mut conn = db.pool().acquire().await?;
    let filter = store::AppFilter {
        visible_to: member.map(str::to_owned),
        after: w.after.clone(),
        limit: w.fetch(),
        ..Default::default()
    };
    let rows = store::applications(&mut conn, &filter).await?;
    let page = w.page(rows, |r| (r.created_at.clone(), r.id.clone()));
    let ids: Vec<&str> = page.items.iter().map(|r| r.id.as_str()).collect();
    let votes = store::decisions_of(&mut conn, &ids).await?;
    anyhow::ensure!(votes.len() == ids.len(), "votes of every application");
    Ok(page.items.len())
}

/// A page of the audit log as the service reads it: one query.
async fn events_page(db: &Db, after: Option<i64>) -> anyhow::Result<usize> {
    let ask = PageAsk {
        limit: Some(PAGE),
        cursor: after.map(|k| cursor_after("audit", k)),
    };
    let w = Window::<i64>::of("audit", &ask)?;
    let mut conn = db.pool().acquire().await?;
    let rows = gateway::audit::events(&mut conn, w.after.unwrap_or(0), None, w.fetch()).await?;
    Ok(w.page(rows, |e| e.seq).items.len())
}

/// The position `(created_at, id)` of the application `n` places from the newest (of those
/// `member` sees, given one).
async fn app_at(db: &Db, n: usize, member: Option<&str>) -> anyhow::Result<(String, String)> {
    let within = match member {
        Some(m) => format!(
            "WHERE project_id IN (SELECT project_id FROM project_members WHERE subject = '{m}')"
        ),
        None => String::new(),
    };
    let row: (String, String) = sqlx::query_as(&format!(
        "SELECT created_at, id FROM applications {within} ORDER BY created_at DESC, id DESC LIMIT 1 OFFSET {n}"
    ))
    .fetch_one(db.pool())
    .await?;
    Ok(row)
}

/// A bound value of a seeded row.
enum V {
    T(String),
    I(i64),
}

/// Inserts `rows` into `table` (`columns`), [`BATCH`] rows a statement and a transaction.
async fn insert(db: &Db, table: &str, columns: &[&str], rows: Vec<Vec<V>>) -> anyhow::Result<()> {
    let mut it = rows.into_iter().peekable();
    while it.peek().is_some() {
        let batch: Vec<Vec<V>> = it.by_ref().take(BATCH).collect();
        let mut n = 0;
        let tuples: Vec<String> = batch
            .iter()
            .map(|r| {
                let marks: Vec<String> = r
                    .iter()
                    .map(|_| {
                        n += 1;
                        format!("${n}")
                    })
                    .collect();
                format!("({})", marks.join(", "))
            })
            .collect();
        let sql = format!(
            "INSERT INTO {table} ({}) VALUES {}",
            columns.join(", "),
            tuples.join(", ")
        );
        let mut q = sqlx::query(&sql);
        for v in batch.into_iter().flatten() {
            q = match v {
                V::T(s) => q.bind(s),
                V::I(i) => q.bind(i),
            };
        }
        let mut tx = db.pool().begin().await?;
        q.execute(&mut *tx as &mut AnyConnection).await?;
        tx.commit().await?;
    }
    Ok(())
}

/// The time of the `i`th seeded item: one a second from the start of 2026.
fn at(i: usize) -> String {
    let secs = 1_767_225_600 + i64::try_from(i).unwrap_or(0);
    gateway::time::format(time::OffsetDateTime::from_unix_timestamp(secs).expect("a time"))
}

/// An analyst, member of two of the 20 projects: a tenth of the applications are theirs.
const MEMBER: &str = "ana";
const MEMBER_SHARE: usize = 10;

async fn seed_projects(db: &Db) -> anyhow::Result<()> {
    let rows = (0..20)
        .map(|p| {
            vec![
                V::T(format!("bench-{p:02}")),
                V::T(format!("Project {p}")),
                V::T(at(0)),
                V::T("root".into()),
                V::T("approved".into()),
            ]
        })
        .collect();
    let cols = ["id", "title", "created_at", "created_by", "commands"];
    insert(db, "projects", &cols, rows).await?;
    let members = ["bench-00", "bench-01"]
        .map(|p| {
            vec![
                V::T(p.into()),
                V::T(MEMBER.into()),
                V::T("analyst".into()),
                V::T(at(0)),
                V::T("root".into()),
            ]
        })
        .into();
    let cols = ["project_id", "subject", "role", "added_at", "added_by"];
    insert(db, "project_members", &cols, members).await
}

/// Applications `from..to`, each with two votes.
async fn seed_applications(db: &Db, from: usize, to: usize) -> anyhow::Result<()> {
    let id = |i: usize| format!("app-{i:012}");
    let apps = (from..to)
        .map(|i| {
            vec![
                V::T(id(i)),
                V::T("access".into()),
                V::T(format!("bench-{:02}", i % 20)),
                V::T(format!("analyst-{}", i % 50)),
                V::T("Access to the cohort".into()),
                V::T("For the study of the protocol".into()),
                V::T("{}".into()),
                V::T(if i % 3 == 0 { "approved" } else { "in_review" }.into()),
                V::I(1),
                V::T(at(i)),
                V::T(at(i)),
            ]
        })
        .collect();
    let cols = store_app_columns();
    insert(db, "applications", &cols, apps).await?;
    let votes = (from..to)
        .flat_map(|i| {
            ["rev-a", "rev-b"].map(|r| {
                vec![
                    V::T(id(i)),
                    V::I(1),
                    V::T(r.into()),
                    V::T("approve".into()),
                    V::T("fine".into()),
                    V::T(at(i)),
                ]
            })
        })
        .collect();
    let cols = [
        "application_id",
        "round",
        "reviewer",
        "choice",
        "comment",
        "decided_at",
    ];
    insert(db, "decisions", &cols, votes).await
}

fn store_app_columns() -> [&'static str; 11] {
    [
        "id",
        "kind",
        "project_id",
        "requester",
        "title",
        "description",
        "payload",
        "state",
        "round",
        "created_at",
        "updated_at",
    ]
}

/// Audit events with sequence numbers `from + 1 ..= to` (their hashes are not a chain: the
/// list does not read them).
async fn seed_events(db: &Db, from: usize, to: usize) -> anyhow::Result<()> {
    let hash = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    let detail = r#"{"project":"genome-1","entries":42,"checks":"pass","comment":"the figures agree with the published tables"}"#;
    let rows = (from + 1..=to)
        .map(|seq| {
            vec![
                V::I(i64::try_from(seq).unwrap_or(i64::MAX)),
                V::T(at(seq)),
                V::T("bench".into()),
                V::T("application.decision".into()),
                V::T(format!("app-{:012}", seq % 100_000)),
                V::T(detail.into()),
                V::T(hash.into()),
                V::T(hash.into()),
            ]
        })
        .collect();
    let cols = [
        "seq",
        "at",
        "actor",
        "action",
        "subject",
        "detail",
        "prev_hash",
        "hash",
    ];
    insert(db, "audit_events", &cols, rows).await
}
