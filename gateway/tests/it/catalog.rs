//! The public catalog: without a token, through the API and `vre catalog search`, it shows the
//! datasets whose DMP allows secondary use and nothing at all of an unshared one (not its
//! title, nor its id, nor what its DMP says); searches fold case in both languages, page by
//! cursor, and refuse an over-long text; on every engine.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::datasets::{INSTITUTION, example_dmp, register, register_approved};
use crate::support::{TestApp, assert_refused, each_engine, keys_of};

/// The example DMP with its own title and description, in `category`.
fn dmp(title: &str, description: &str, category: &str) -> Value {
    let mut v = example_dmp(INSTITUTION);
    v["title"] = json!(title);
    v["description"] = json!(description);
    v["management_category"] = json!(category);
    if category == "unshared" || category == "unrestricted_open_sharing" {
        let o = v.as_object_mut().unwrap();
        o.remove("restricted_sharing_ends");
        o.remove("category_after");
    }
    if category == "restricted_open_sharing" {
        v["category_after"] = json!("unrestricted_open_sharing");
    }
    v
}

/// The catalog's answer to `query` (a query string), asked without a token.
async fn search(app: &TestApp, query: &str) -> (StatusCode, Value) {
    app.get(&format!("/api/v1/catalog{query}"), None).await
}

/// The ids a search finds, without a token.
async fn found(app: &TestApp, query: &str) -> Vec<String> {
    let (st, b) = search(app, query).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    keys_of(b.as_array().unwrap(), "id")
}

/// Runs `vre` against the app without a token; success, stdout, stderr.
async fn vre_anonymous(app: &TestApp, args: &[&str]) -> (bool, String, String) {
    crate::datasets::vre_as(app, None, args).await
}

#[tokio::test]
async fn the_catalog_shows_shared_datasets_to_anyone_and_nothing_of_an_unshared_one() {
    each_engine(|app| async move {
        let steward = app.token_for("hana", "steward", Some(INSTITUTION));
        let (secret, _) = register_approved(
            &app,
            &steward,
            &dmp(
                "Secret Cohort Z 秘密のコホート",
                "Unshared whole genomes of cohort Z.",
                "unshared",
            ),
        )
        .await;
        let (shared, _) = register_approved(
            &app,
            &steward,
            &dmp(
                "肺がんコホート / Lung Cancer Cohort B",
                "Clinical data and CT images of lung cancer patients.",
                "restricted_open_sharing",
            ),
        )
        .await;
        let (open, _) = register_approved(
            &app,
            &steward,
            &dmp(
                "Open Survey C",
                "An open questionnaire survey, 健康調査.",
                "unrestricted_open_sharing",
            ),
        )
        .await;

        // Without a token: every shared one, newest first; the unshared one is not there.
        assert_eq!(found(&app, "").await, [open.clone(), shared.clone()]);
        let (_, all) = search(&app, "").await;
        let text = all.to_string();
        for leak in [
            secret.as_str(),
            "Secret Cohort",
            "秘密",
            "cohort Z",
            "dmp@example.ac.jp",
        ] {
            assert!(!text.contains(leak), "the catalog shows `{leak}`: {text}");
        }
        let entry = &all[1];
        assert_eq!(entry["id"], json!(shared));
        assert_eq!(entry["category"], "restricted_open_sharing");
        assert_eq!(entry["institution"], INSTITUTION);
        assert_eq!(entry["title"], "肺がんコホート / Lung Cancer Cohort B");
        assert!(entry.get("dmp").is_none() && entry.get("data_manager_contact").is_none());

        // Searching for the unshared dataset's title, id or words finds nothing.
        for q in [
            "Secret",
            "secret%20cohort",
            "秘密",
            secret.as_str(),
            "cohort%20z",
        ] {
            assert_eq!(
                found(&app, &format!("?q={q}")).await,
                Vec::<String>::new(),
                "{q}"
            );
        }
        // Case folded, either language, title or description or keywords.
        assert_eq!(found(&app, "?q=LUNG%20cancer").await, vec![shared.clone()]);
        assert_eq!(
            found(&app, "?q=%E8%82%BA%E3%81%8C%E3%82%93").await,
            vec![shared.clone()]
        ); // 肺がん
        assert_eq!(
            found(&app, "?q=%E5%81%A5%E5%BA%B7").await,
            vec![open.clone()]
        ); // 健康
        assert_eq!(found(&app, "?q=ct%20IMAGES").await, vec![shared.clone()]);
        assert_eq!(found(&app, "?q=genomic%20DATA").await.len(), 2); // the data type
        // LIKE's wildcards are taken literally.
        assert_eq!(found(&app, "?q=%25").await, Vec::<String>::new());
        assert_eq!(found(&app, "?q=_").await, Vec::<String>::new());

        // A text past the bound is refused.
        let (st, b) = search(&app, &format!("?q={}", "a".repeat(201))).await;
        assert_refused(st, &b, StatusCode::BAD_REQUEST, "too_long");

        // Pages: one at a time, following the cursor, ending without one.
        let resp = app
            .http
            .get(format!("{}/api/v1/catalog?limit=1", app.url))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let cursor = resp.headers()["x-next-cursor"].to_str().unwrap().to_owned();
        let first: Value = resp.json().await.unwrap();
        assert_eq!(keys_of(first.as_array().unwrap(), "id"), vec![open.clone()]);
        let resp = app
            .http
            .get(format!(
                "{}/api/v1/catalog?limit=1&cursor={cursor}",
                app.url
            ))
            .send()
            .await
            .unwrap();
        assert!(resp.headers().get("x-next-cursor").is_none());
        let second: Value = resp.json().await.unwrap();
        assert_eq!(
            keys_of(second.as_array().unwrap(), "id"),
            vec![shared.clone()]
        );
        let (st, b) = search(&app, "?cursor=bm90LWEtY3Vyc29y").await;
        assert_refused(st, &b, StatusCode::BAD_REQUEST, "bad_filter");

        // `vre catalog search` needs no token, follows the pages, and prints JSON too.
        let (ok, out, err) = vre_anonymous(
            &app,
            &["catalog", "search", "", "--limit", "1", "--all", "--json"],
        )
        .await;
        assert!(ok, "{err}");
        let listed: Vec<Value> = serde_json::from_str(&out).unwrap();
        assert_eq!(keys_of(&listed, "id"), [open.clone(), shared.clone()]);
        let (ok, out, err) = vre_anonymous(&app, &["catalog", "search", "lung"]).await;
        assert!(ok, "{err}");
        assert!(
            out.contains(&shared) && out.contains("Lung Cancer Cohort B"),
            "{out}"
        );
        assert!(!out.contains(&open) && !out.contains(&secret), "{out}");
        let (ok, out, err) = vre_anonymous(&app, &["catalog", "search", "Secret"]).await;
        assert!(ok, "{err}");
        assert_eq!(out, "");
        // Other commands still want a token.
        let (ok, _, err) = vre_anonymous(&app, &["dataset", "list"]).await;
        assert!(!ok && err.contains("no token"), "{err}");
        app
    })
    .await;
}

/// A shared dataset enters the catalog with the committee's approval of its listing: not while
/// the listing waits, never when it was rejected.
#[tokio::test]
async fn only_a_dataset_whose_listing_was_approved_is_in_the_catalog() {
    each_engine(|app| async move {
        let steward = app.token_for("hana", "steward", Some(INSTITUTION));
        let shared = |title: &str| dmp(title, "Shared cohort.", "unrestricted_open_sharing");
        let (waiting, listing) = register(&app, &steward, &shared("Waiting Cohort W")).await;
        let (refused, refused_listing) =
            register(&app, &steward, &shared("Refused Cohort R")).await;
        assert_eq!(found(&app, "").await, Vec::<String>::new());
        assert_eq!(found(&app, "?q=cohort").await, Vec::<String>::new());

        for r in ["rev1", "rev2", "rev3"] {
            let (st, b) = app.vote(&refused_listing, r, "reject").await;
            assert_eq!(st, StatusCode::OK, "{b}");
            if b["state"] == "rejected" {
                break;
            }
        }
        crate::access::approve(&app, &listing).await;
        assert_eq!(found(&app, "").await, vec![waiting.clone()]);
        let (_, all) = search(&app, "?q=refused").await;
        assert!(
            !all.to_string().contains(&refused),
            "a rejected listing is in the catalog: {all}"
        );
        app
    })
    .await;
}

/// A dataset on record without its search text (registered before the catalog existed) is
/// indexed at start, which is what a search then finds; a search itself writes nothing.
#[tokio::test]
async fn datasets_recorded_before_the_catalog_are_indexed_at_start() {
    each_engine(|app| async move {
        app.record_dataset("ds-older", INSTITUTION).await;
        assert_eq!(found(&app, "").await, Vec::<String>::new());
        let indexed = gateway::service::catalog::index_missing(&app.state.db)
            .await
            .unwrap();
        assert_eq!(indexed, 1);
        assert_eq!(found(&app, "").await, vec!["ds-older".to_owned()]);
        let again = gateway::service::catalog::index_missing(&app.state.db)
            .await
            .unwrap();
        assert_eq!(again, 0);
        app
    })
    .await;
}
