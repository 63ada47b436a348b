//! The datasets' pages over HTTP: a listing application shows its dataset's DMP and takes the
//! vote; the dataset's page shows its DMP in Japanese and English, its category, state,
//! content and history; access and extension applications show what reviewers decide on; a
//! caller who may not see a dataset gets the service's refusal. On every engine.

use policy::archive::tar::EntryKind;
use reqwest::StatusCode;
use serde_json::json;

use super::Browser;
use crate::access::{approve, ask};
use crate::dataset_upload::{tar_of, upload};
use crate::datasets::{INSTITUTION, example_dmp, register};
use crate::support::each_engine;

/// Votes `choice` through the application page's form, as the signed-in reviewer.
async fn vote_on_page(b: &mut Browser, id: &str, choice: &str, comment: &str) {
    let path = format!("/ui/applications/{id}");
    let page = b.get(&path).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let (csrf, nonce) = (page.field("csrf"), page.field("nonce"));
    let a = b
        .post(
            &format!("{path}/decide"),
            &[
                ("csrf", csrf.as_str()),
                ("nonce", nonce.as_str()),
                ("choice", choice),
                ("comment", comment),
            ],
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
}

#[tokio::test]
async fn a_listing_shows_its_dmp_to_reviewers_who_vote_and_the_dataset_page_tells_its_life() {
    each_engine(|app| async move {
        let hana = app.token_for("hana", "steward", Some(INSTITUTION));
        let (ds, listing) = register(&app, &hana, &example_dmp(INSTITUTION)).await;

        // The reviewer reads the listing application: the dataset, its DMP, a link to its page.
        let mut b = Browser::new(&app);
        b.accept_language = Some("en");
        assert_eq!(
            b.sign_in(&app.token("rev", "reviewer")).await.status,
            StatusCode::SEE_OTHER
        );
        let page = b.get(&format!("/ui/applications/{listing}")).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        for shown in [
            "The dataset to list",
            &format!("href=\"/ui/datasets/{ds}\""),
            &format!("href=\"/ui/datasets/{ds}#dmp\""),
            "Data management plan",
            "Title of data",
            "Whole genomes and clinical data (cohort A)",
            "Management category",
            "Restricted closed sharing",
            "Category after restricted sharing",
            "Restricted open sharing",
            "2035-03-31",
            "189 Life science",
            "Data manager contact",
            "dmp@example.ac.jp",
        ] {
            assert!(page.body.contains(shown), "no {shown}: {}", page.body);
        }
        // Reviewers vote from the page.
        vote_on_page(&mut b, &listing, "approve", "the DMP is complete").await;
        let (_, a) = app
            .get(
                &format!("/api/v1/applications/{listing}"),
                Some(&app.token("rev", "reviewer")),
            )
            .await;
        assert_eq!(a["decisions"][0]["reviewer"], "rev", "{a}");
        assert_eq!(a["decisions"][0]["comment"], "the DMP is complete");
        assert_eq!(a["state"], "approved", "one approval lists a dataset: {a}");

        // Its content uploaded: the dataset is listed.
        let tar = tar_of(&[
            ("cohort", EntryKind::Dir, b""),
            ("cohort/a.csv", EntryKind::File, b"id,x\n1,2\n"),
            ("cohort/b.txt", EntryKind::File, b"hello\n"),
        ]);
        let (st, u) = upload(&app, &hana, &ds, tar).await;
        assert_eq!(st, StatusCode::CREATED, "{u}");
        let manifest = u["content"]["manifest_sha256"].as_str().unwrap().to_owned();

        // The list of datasets, then the dataset's page, in English…
        let list = b.get("/ui/datasets").await;
        assert_eq!(list.status, StatusCode::OK, "{}", list.body);
        assert!(
            list.body.contains(&format!("href=\"/ui/datasets/{ds}\""))
                && list.body.contains("Listed"),
            "{}",
            list.body
        );
        let en = b.get(&format!("/ui/datasets/{ds}")).await;
        assert_eq!(en.status, StatusCode::OK, "{}", en.body);
        for shown in [
            "Title of data",
            "Informed consent",
            "Consent scope",
            "Data-providing institution name",
            "Restricted closed sharing",
            "Restricted open sharing",
            "2035-03-31",
            "Listed",
            &manifest,
            "<dt>Files</dt><dd>2</dd>",
            "registered the dataset",
            "voted",
            "<span class=\"who\">rev</span>",
            &format!("href=\"/ui/applications/{listing}\""),
            "the DMP is complete",
        ] {
            assert!(en.body.contains(shown), "no {shown}: {}", en.body);
        }
        // …and in Japanese, the DMP's own labels.
        let ja = b.get(&format!("/ui/datasets/{ds}?lang=ja")).await;
        for shown in [
            "データの名称",
            "データマネジメントプラン",
            "管理区分",
            "制限共有",
            "制限公開",
            "制限共有終了後の管理区分",
            "インフォームド・コンセント",
            "189 ライフサイエンス",
            "取得済み",
            "掲載中",
            "データセットを登録",
        ] {
            assert!(ja.body.contains(shown), "no {shown}: {}", ja.body);
        }
        assert!(!ja.body.contains("Title of data"));

        // A steward of another institution may not see it: the service's refusal, and the
        // list without it; an analyst may not list datasets at all.
        let mut other = Browser::new(&app);
        other.accept_language = Some("en");
        other
            .sign_in(&app.token_for("olga", "steward", Some("other-u")))
            .await;
        let a = other.get(&format!("/ui/datasets/{ds}")).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.body);
        assert!(a.body.contains("not_found") && !a.body.contains("Title of data"));
        let a = other.get("/ui/datasets").await;
        assert_eq!(a.status, StatusCode::OK);
        assert!(!a.body.contains(&ds) && a.body.contains("No datasets to show."));
        let mut ana = Browser::new(&app);
        ana.sign_in(&app.token("ana", "analyst")).await;
        let a = ana.get("/ui/datasets").await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
        let a = ana.get(&format!("/ui/datasets/{ds}")).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.body);
        // Not signed in: to the sign-in page.
        let a = Browser::new(&app).get(&format!("/ui/datasets/{ds}")).await;
        assert_eq!(a.location(), "/ui/sign-in");
        app
    })
    .await;
}

#[tokio::test]
async fn access_and_extension_applications_show_what_reviewers_decide_on() {
    each_engine(|app| async move {
        let hana = app.token_for("hana", "steward", Some(INSTITUTION));
        let (ds, listing) = register(&app, &hana, &example_dmp(INSTITUTION)).await;
        approve(&app, &listing).await;
        app.project("p1", &[("ana", "analyst")]).await;
        let (st, a) = ask(
            &app,
            "p1",
            json!({"datasets": [ds], "purpose": "A study of rare variants in cohort A",
                   "until": "2031-12-31", "commercial": true}),
        )
        .await;
        assert_eq!(st, StatusCode::CREATED, "{a}");
        let access = a["id"].as_str().unwrap().to_owned();

        let mut b = Browser::new(&app);
        b.accept_language = Some("en");
        b.sign_in(&app.token("rev", "reviewer")).await;
        let page = b.get(&format!("/ui/applications/{access}")).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        for shown in [
            "The access asked for",
            &format!("href=\"/ui/datasets/{ds}\""),
            "Whole genomes and clinical data (cohort A)",
            "A study of rare variants in cohort A",
            "<dt>Last day asked for</dt><dd>2031-12-31</dd>",
            "<dt>Commercial use</dt><dd>commercial use allowed</dd>",
        ] {
            assert!(page.body.contains(shown), "no {shown}: {}", page.body);
        }
        assert!(!page.body.contains("Access granted"));

        // Approved, one reviewer tightening it: the conditions granted show.
        let (st, v) = app
            .post(
                &format!("/api/v1/applications/{access}/decisions"),
                Some(&app.token("rev9", "reviewer")),
                &json!({"decision": "approve", "comment": "with conditions",
                        "conditions": {"until": "2029-06-30", "commercial": false, "logs": "hidden"}}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        if v["state"] != "approved" {
            approve(&app, &access).await;
        }
        let page = b.get(&format!("/ui/applications/{access}")).await;
        for shown in [
            "Conditions set by the reviewers",
            "rev9",
            "Access granted",
            "<td>p1</td><td>2029-06-30</td><td>no commercial use</td><td>Yes</td>",
        ] {
            assert!(page.body.contains(shown), "no {shown}: {}", page.body);
        }
        let ja = b.get(&format!("/ui/applications/{access}?lang=ja")).await;
        assert!(
            ja.body.contains("許可された利用") && ja.body.contains("商用利用不可"),
            "{}",
            ja.body
        );
        // The dataset's page lists the grant, linked to its application.
        let d = b.get(&format!("/ui/datasets/{ds}?lang=en")).await;
        assert!(
            d.body.contains(&format!("href=\"/ui/applications/{access}\""))
                && d.body.contains("2029-06-30"),
            "{}",
            d.body
        );

        // An extension: the end now, the end asked for, why.
        let (st, e) = app
            .post(
                &format!("/api/v1/datasets/{ds}/extension"),
                Some(&hana),
                &json!({"until": "2037-03-31", "justification": "the follow-up study needs two more years"}),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{e}");
        let ext = e["id"].as_str().unwrap().to_owned();
        let page = b.get(&format!("/ui/applications/{ext}")).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        for shown in [
            "The extension asked for",
            "<dd class=\"ext-from\">2035-03-31</dd>",
            "<dd class=\"ext-until\">2037-03-31</dd>",
            "the follow-up study needs two more years",
            &format!("href=\"/ui/datasets/{ds}\""),
        ] {
            assert!(page.body.contains(shown), "no {shown}: {}", page.body);
        }
        let ja = b.get(&format!("/ui/applications/{ext}?lang=ja")).await;
        assert!(ja.body.contains("希望する新しい終了日"), "{}", ja.body);
        // Approved, the dataset's page shows the new end and the extension in its history.
        let (st, v) = app.vote(&ext, "rev1", "approve").await;
        assert_eq!((st, &v["state"]), (StatusCode::OK, &json!("extended")), "{v}");
        let d = b.get(&format!("/ui/datasets/{ds}?lang=en")).await;
        assert!(
            d.body.contains("restricted sharing extended: 2035-03-31 → 2037-03-31"),
            "{}",
            d.body
        );
        app
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviewer_follows_a_listing_to_its_dmp_and_approves_and_an_auditor_filters_in_a_browser()
{
    use fantoccini::Locator;

    use super::browser::{
        approve as approve_on_page, browser, closing, css_text, driver, fits_width, shoot, sign_in,
        sign_out,
    };

    let Some(d) = driver() else { return };
    let app = crate::support::TestApp::spawn(crate::support::Engine::Sqlite).await;
    let hana = app.token_for("hana", "steward", Some(INSTITUTION));
    let (ds, listing) = register(&app, &hana, &example_dmp(INSTITUTION)).await;
    let c = browser(&d, "en").await;
    closing(c.clone(), async {
        // The reviewer opens the listing from the queue and follows it to the DMP.
        sign_in(&c, &app.url, &app.token("rev", "reviewer")).await;
        c.goto(&format!("{}/ui/queue?lang=en", app.url))
            .await
            .unwrap();
        c.find(Locator::Css(&format!(
            "a[href='/ui/applications/{listing}']"
        )))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
        assert_eq!(css_text(&c, "#listing-title").await, "The dataset to list");
        c.find(Locator::Css(&format!("a[href='/ui/datasets/{ds}#dmp']")))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        assert_eq!(css_text(&c, "h2#dmp").await, "Data management plan");
        let dmp = css_text(&c, "table.dmp").await;
        assert!(
            dmp.contains("Title of data") && dmp.contains("Restricted closed sharing"),
            "{dmp}"
        );
        assert_eq!(
            c.current_url().await.unwrap().path(),
            format!("/ui/datasets/{ds}")
        );
        shoot(&c, "dataset-en").await;
        super::accessibility::axe_check(&c, "dataset-en").await;
        c.goto(&format!("{}/ui/datasets/{ds}?lang=ja", app.url))
            .await
            .unwrap();
        assert_eq!(css_text(&c, "h2#dmp").await, "データマネジメントプラン");
        assert!(css_text(&c, "table.dmp").await.contains("データの名称"));
        shoot(&c, "dataset-ja").await;
        super::accessibility::axe_check(&c, "dataset-ja").await;
        c.goto(&format!("{}/ui/datasets?lang=en", app.url))
            .await
            .unwrap();
        shoot(&c, "datasets-en").await;
        super::accessibility::axe_check(&c, "datasets-en").await;

        // Back to the application: approved from its page.
        approve_on_page(
            &c,
            &format!("{}/ui/applications/{listing}?lang=en", app.url),
            "The DMP is complete.",
        )
        .await;
        assert_eq!(css_text(&c, "p.ok").await, "Your vote was counted: Approve");
        shoot(&c, "listing-voted-en").await;
        super::accessibility::axe_check(&c, "listing-voted-en").await;
        sign_out(&c).await;

        // An auditor filters the log by one action, through the form.
        sign_in(&c, &app.url, &app.token("aud", "auditor")).await;
        c.goto(&format!("{}/ui/audit?lang=en", app.url))
            .await
            .unwrap();
        assert!(css_text(&c, "#verify").await.starts_with("Verified:"));
        c.find(Locator::Css("input#action"))
            .await
            .unwrap()
            .send_keys("application.decision")
            .await
            .unwrap();
        c.find(Locator::Css("form.filters button[type=submit]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        c.wait()
            .for_url(&{
                let mut u = c.current_url().await.unwrap();
                u.set_query(Some(
                    "lang=en&actor=&action=application.decision&subject=&since=&until=&after=",
                ));
                u
            })
            .await
            .unwrap();
        let mut actions = Vec::new();
        for e in c.find_all(Locator::Css("td.action")).await.unwrap() {
            actions.push(e.text().await.unwrap());
        }
        assert_eq!(actions, ["application.decision"]);
        shoot(&c, "audit-en").await;
        super::accessibility::axe_check(&c, "audit-en").await;
        c.goto(&format!("{}/ui/audit?lang=ja", app.url))
            .await
            .unwrap();
        assert!(css_text(&c, "#verify").await.starts_with("検証済み"));
        shoot(&c, "audit-ja").await;
        super::accessibility::axe_check(&c, "audit-ja").await;

        // At 200 % zoom the pages fit the width.
        c.set_window_size(640, 1000).await.unwrap();
        for (page, name) in [
            (format!("/ui/datasets/{ds}?lang=ja"), "dataset-zoom-ja"),
            ("/ui/audit?lang=en".to_owned(), "audit-zoom-en"),
        ] {
            c.goto(&format!("{}{page}", app.url)).await.unwrap();
            shoot(&c, name).await;
            assert!(fits_width(&c).await, "{page} scrolls sideways at 640 px");
        }
    })
    .await;
    let (st, a) = app
        .get(
            &format!("/api/v1/applications/{listing}"),
            Some(&app.token("rev", "reviewer")),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(a["state"], "approved", "{a}");
    assert_eq!(a["decisions"][0]["comment"], "The DMP is complete.");
    drop(d);
    app.stop().await;
}
