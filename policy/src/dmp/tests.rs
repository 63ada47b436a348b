//! One test per rule, each with good and bad metadata, starting from the example DMP that
//! `vre dataset register` is documented with.

use serde_json::{Value, json};

use super::*;

const EXAMPLE: &str = include_str!("../../../deploy/examples/dmp.json");

fn today() -> Date {
    Date::parse("2026-12-01").unwrap()
}

fn example() -> Value {
    serde_json::from_str(EXAMPLE).unwrap()
}

/// The example with `changes` applied (a `null` removes the field).
fn with(changes: Value) -> Value {
    let mut v = example();
    for (k, c) in changes.as_object().unwrap() {
        let obj = v.as_object_mut().unwrap();
        if c.is_null() {
            obj.remove(k);
        } else {
            obj.insert(k.clone(), c.clone());
        }
    }
    v
}

fn check(v: &Value) -> Result<Dmp, Vec<FieldError>> {
    match from_value(v, &today()) {
        Ok(d) => Ok(d),
        Err(DmpError::Fields(e)) => Err(e),
        Err(e) => panic!("{e}"),
    }
}

/// The fields named by the errors of `v`.
fn bad_fields(v: &Value) -> Vec<String> {
    check(v)
        .err()
        .unwrap_or_default()
        .into_iter()
        .map(|e| e.field)
        .collect()
}

#[test]
fn the_example_is_a_complete_dmp() {
    let d = parse(EXAMPLE, Format::Json, &today()).unwrap();
    assert_eq!(d.management_category, Category::RestrictedClosedSharing);
    assert_eq!(d.providing_institution.id, "tohoku-u");
    // Our own JSON reads back as the same DMP.
    let again = from_value(&serde_json::to_value(&d).unwrap(), &today()).unwrap();
    assert_eq!(again, d);
}

#[test]
fn toml_reads_as_json_does() {
    let d = parse(EXAMPLE, Format::Json, &today()).unwrap();
    let toml_text = toml::to_string(&d).unwrap();
    assert_eq!(parse(&toml_text, Format::Toml, &today()).unwrap(), d);
    // TOML's own dates read as the strings JSON spells them as; a date-time is no date.
    let native = toml_text.replace("date_issued = \"2026-04-01\"", "date_issued = 2026-04-01");
    assert_ne!(native, toml_text);
    assert_eq!(parse(&native, Format::Toml, &today()).unwrap(), d);
    let timed = toml_text.replace(
        "date_issued = \"2026-04-01\"",
        "date_issued = 2026-04-01T10:00:00Z",
    );
    match parse(&timed, Format::Toml, &today()) {
        Err(DmpError::Fields(e)) => assert_eq!(e[0].field, "date_issued"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        parse("title = ", Format::Toml, &today()),
        Err(DmpError::Syntax { format: "TOML", .. })
    ));
    assert!(matches!(
        parse("{", Format::Json, &today()),
        Err(DmpError::Syntax { format: "JSON", .. })
    ));
}

#[test]
fn every_mandatory_field_is_enforced_each_by_name() {
    let mandatory: Vec<&str> = FIELDS
        .iter()
        .filter(|f| f.mandatory && !f.key.contains('.'))
        .map(|f| f.key)
        .collect();
    let mut v = example();
    for k in &mandatory {
        v.as_object_mut().unwrap().remove(*k);
    }
    let bad = bad_fields(&v);
    for k in &mandatory {
        assert!(bad.iter().any(|b| b == k), "{k} not named in {bad:?}");
    }
    // Blank counts as absent.
    assert_eq!(bad_fields(&with(json!({"title": "  "}))), ["title"]);
    // Each alone.
    for k in &mandatory {
        assert_eq!(bad_fields(&with(json!({ *k: null }))), [*k], "{k}");
    }
}

#[test]
fn every_bad_field_gets_its_own_error() {
    let v = with(json!({
        "title": 7,
        "date_issued": "2026-02-30",
        "research_field": "12",
        "access_rights": "public",
        "management_category": "shared",
        "consent": {"obtained": "maybe", "scope": ""},
        "colour": "blue",
    }));
    let mut bad = bad_fields(&v);
    bad.sort();
    assert_eq!(
        bad,
        [
            "access_rights",
            "colour",
            "consent.obtained",
            "consent.scope",
            "date_issued",
            "management_category",
            "research_field",
            "title",
        ]
    );
}

#[test]
fn optional_fields_may_be_left_out() {
    let v = with(json!({
        "funding_stream_code": null, "program_name": null, "approximate_size": null,
        "repository": null, "creators": null, "hosting_institution_id": null,
        "data_manager_erad_number": null, "remarks": null,
    }));
    check(&v).unwrap();
}

#[test]
fn each_error_has_labels_in_both_languages() {
    let errors = check(&with(
        json!({"consent": {"obtained": "yes"}, "title": null}),
    ))
    .unwrap_err();
    let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert!(
        shown.contains(&"title (データの名称 / Title of data): is required".to_owned()),
        "{shown:?}"
    );
    assert!(
        shown.contains(&"consent.scope (同意の範囲 / Consent scope): is required".to_owned()),
        "{shown:?}"
    );
    for f in FIELDS {
        assert!(
            !f.label.ja.is_empty() && !f.label.en.is_empty(),
            "{}",
            f.key
        );
        assert!(!f.label.ja.is_ascii(), "{} has no Japanese label", f.key);
    }
    let labels = Category::ALL
        .iter()
        .map(|c| c.label())
        .chain(AccessRights::ALL.iter().map(|a| a.label()))
        .chain(ConsentObtained::ALL.iter().map(|o| o.label()))
        .chain(ConsentForm::ALL.iter().map(|f| f.label()));
    for l in labels {
        assert!(!l.ja.is_ascii() && !l.en.is_empty(), "{l:?}");
    }
}

#[test]
fn dates_are_real_calendar_days() {
    for good in ["2026-04-01", "2024-02-29", "2000-02-29"] {
        assert!(Date::parse(good).is_some(), "{good}");
    }
    for bad in [
        "2026-4-1",
        "2023-02-29",
        "1900-02-29",
        "2026-13-01",
        "2026-00-10",
        "26-04-01",
        "２０２６-04-01",
        "2026-04-01T00:00:00Z",
    ] {
        assert!(Date::parse(bad).is_none(), "{bad}");
        assert_eq!(
            bad_fields(&with(json!({"date_issued": bad}))),
            ["date_issued"],
            "{bad}"
        );
    }
}

#[test]
fn research_field_is_an_erad_field_code() {
    check(&with(json!({"research_field": "9999"}))).unwrap();
    assert_eq!(
        bad_fields(&with(json!({"research_field": "Life science"}))),
        ["research_field"]
    );
}

#[test]
fn access_rights_are_one_of_four_and_embargo_needs_a_date() {
    for &a in AccessRights::ALL {
        let mut v = with(json!({"access_rights": a.as_str()}));
        if a == AccessRights::Embargoed {
            assert_eq!(bad_fields(&v), ["publication_date"]);
            v["publication_date"] = json!("2027-04-01");
        }
        check(&v).unwrap();
    }
    assert_eq!(
        bad_fields(&with(json!({"access_rights": "Open"}))),
        ["access_rights"]
    );
}

#[test]
fn management_category_is_one_of_amed_four_in_snake_case() {
    let names: Vec<&str> = Category::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(
        names,
        [
            "unshared",
            "restricted_closed_sharing",
            "restricted_open_sharing",
            "unrestricted_open_sharing"
        ]
    );
    for &c in Category::ALL {
        assert_eq!(serde_json::to_value(c).unwrap(), json!(c.as_str()));
        assert_eq!(c.as_str().parse::<Category>().unwrap(), c);
    }
    let labels: Vec<&str> = Category::ALL.iter().map(|c| c.label().ja).collect();
    assert_eq!(labels, ["非共有", "制限共有", "制限公開", "非制限公開"]);
    assert_eq!(
        bad_fields(&with(json!({"management_category": "制限共有"}))),
        ["management_category"]
    );
}

#[test]
fn restricted_categories_need_an_end_date_and_the_category_after() {
    for c in [
        Category::RestrictedClosedSharing,
        Category::RestrictedOpenSharing,
    ] {
        let v = with(
            json!({"management_category": c.as_str(), "restricted_sharing_ends": null, "category_after": null}),
        );
        let mut bad = bad_fields(&v);
        bad.sort();
        assert_eq!(bad, ["category_after", "restricted_sharing_ends"], "{c}");
    }
    let v = with(
        json!({"management_category": "restricted_open_sharing", "category_after": "unrestricted_open_sharing"}),
    );
    check(&v).unwrap();
}

#[test]
fn open_and_unshared_categories_have_no_restricted_period() {
    for c in [Category::Unshared, Category::UnrestrictedOpenSharing] {
        let mut bad = bad_fields(&with(json!({"management_category": c.as_str()})));
        bad.sort();
        assert_eq!(bad, ["category_after", "restricted_sharing_ends"], "{c}");
        check(&with(json!({"management_category": c.as_str(), "restricted_sharing_ends": null, "category_after": null}))).unwrap();
    }
}

#[test]
fn the_category_after_is_more_open() {
    for (now, after, ok) in [
        ("restricted_closed_sharing", "restricted_open_sharing", true),
        (
            "restricted_closed_sharing",
            "unrestricted_open_sharing",
            true,
        ),
        (
            "restricted_closed_sharing",
            "restricted_closed_sharing",
            false,
        ),
        ("restricted_closed_sharing", "unshared", false),
        ("restricted_open_sharing", "unrestricted_open_sharing", true),
        (
            "restricted_open_sharing",
            "restricted_closed_sharing",
            false,
        ),
    ] {
        let v = with(json!({"management_category": now, "category_after": after}));
        assert_eq!(check(&v).is_ok(), ok, "{now} → {after}");
        if !ok {
            assert_eq!(bad_fields(&v), ["category_after"]);
        }
    }
}

#[test]
fn restricted_sharing_ends_after_today_and_after_issue() {
    check(&with(json!({"restricted_sharing_ends": "2026-12-02"}))).unwrap();
    for bad in ["2026-12-01", "2020-01-01"] {
        assert_eq!(
            bad_fields(&with(json!({"restricted_sharing_ends": bad}))),
            ["restricted_sharing_ends"]
        );
    }
    let v = with(json!({"date_issued": "2036-01-01"}));
    assert_eq!(bad_fields(&v), ["restricted_sharing_ends"]);
}

#[test]
fn consent_has_its_answer_and_scope() {
    for o in ConsentObtained::ALL {
        check(&with(
            json!({"consent": {"obtained": o.as_str(), "scope": "research"}}),
        ))
        .unwrap();
    }
    let mut bad = bad_fields(&with(
        json!({"consent": {"obtained": "y", "form": "paper", "scope": " ", "by": "x"}}),
    ));
    bad.sort();
    assert_eq!(
        bad,
        [
            "consent.by",
            "consent.form",
            "consent.obtained",
            "consent.scope"
        ]
    );
    assert_eq!(bad_fields(&with(json!({"consent": "yes"}))), ["consent"]);
}

#[test]
fn the_providing_institution_has_an_id_and_a_name() {
    check(&with(
        json!({"providing_institution": {"id": "kyoto-u", "name": "京都大学"}}),
    ))
    .unwrap();
    let mut bad = bad_fields(&with(
        json!({"providing_institution": {"id": "Kyoto U", "name": ""}}),
    ));
    bad.sort();
    assert_eq!(
        bad,
        ["providing_institution.id", "providing_institution.name"]
    );
    assert_eq!(
        bad_fields(&with(json!({"providing_institution": null}))),
        ["providing_institution"]
    );
}

#[test]
fn contact_needs_organisation_and_email() {
    let mut bad = bad_fields(&with(
        json!({"data_manager_contact": {"email": "not an address"}}),
    ));
    bad.sort();
    assert_eq!(
        bad,
        [
            "data_manager_contact.email",
            "data_manager_contact.organisation"
        ]
    );
    check(&with(
        json!({"data_manager_contact": {"organisation": "x", "email": "a@b.jp"}}),
    ))
    .unwrap();
}

#[test]
fn researcher_numbers_are_eight_digits() {
    assert_eq!(
        bad_fields(&with(json!({"data_manager_erad_number": "1234"}))),
        ["data_manager_erad_number"]
    );
    let v =
        with(json!({"creators": [{"name": "A"}, {"name": "", "erad_researcher_number": "x"}, 3]}));
    let mut bad = bad_fields(&v);
    bad.sort();
    assert_eq!(
        bad,
        [
            "creators[1].erad_researcher_number",
            "creators[1].name",
            "creators[2]"
        ]
    );
    let e = check(&v).unwrap_err();
    assert!(e.iter().any(|e| e.label().en == "Data creator's name"));
}

#[test]
fn repository_url_is_a_url_or_doi() {
    check(&with(
        json!({"repository_url": "https://doi.org/10.1234/x"}),
    ))
    .unwrap();
    check(&with(json!({"repository_url": "doi:10.1234/x"}))).unwrap();
    assert_eq!(
        bad_fields(&with(json!({"repository_url": "file:///etc/passwd"}))),
        ["repository_url"]
    );
}

#[test]
fn texts_are_bounded_and_printable() {
    let long = "x".repeat(read::SHORT + 1);
    assert_eq!(bad_fields(&with(json!({"title": long}))), ["title"]);
    assert_eq!(
        bad_fields(&with(json!({"title": "a\u{1b}[2Jb"}))),
        ["title"]
    );
    check(&with(json!({"description": "line one\nline two"}))).unwrap();
}

#[test]
fn gakunin_export_holds_the_common_items_in_order() {
    let d = parse(EXAMPLE, Format::Json, &today()).unwrap();
    let g = to_gakunin(&d);
    assert_eq!(g["schema"], "e-rad-metadata-1");
    let items = g["items"].as_array().unwrap();
    let numbers: Vec<u64> = items.iter().map(|i| i["item"].as_u64().unwrap()).collect();
    assert!(numbers.windows(2).all(|w| w[0] <= w[1]), "{numbers:?}");
    let title = items.iter().find(|i| i["item"] == 7).unwrap();
    assert_eq!(title["label"], "データの名称|Title of data");
    assert_eq!(title["value"], json!(d.title));
    let access = items.iter().find(|i| i["item"] == 14).unwrap();
    assert_eq!(access["value"], "共有|Restricted");
    // AMED's entries are not common items.
    assert!(items.iter().all(|i| i["key"] != "management_category"));
    // Every common item the example fills is there: all 24 but 15 (no embargo) and 17 (no URL).
    let mut distinct = numbers.clone();
    distinct.dedup();
    assert_eq!(distinct.len(), 22, "{distinct:?}");
}
