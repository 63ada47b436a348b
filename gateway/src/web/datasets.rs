//! The datasets' pages: the list of those the signed-in caller may open, and one dataset with
//! its DMP (every item, labelled in the page's language), its category and restricted sharing,
//! its state, its content once listed, its applications and its history, as `vre dataset
//! show` gives them.

use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::Response;
use policy::dmp::{self, AccessRights, Category, ConsentForm, ConsentObtained, Dmp, Label};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Lang, Page};
use crate::error::ApiError;
use crate::service::page::PageAsk;
use crate::service::{datasets as svc, extension};
use crate::store::access::GrantRow;
use crate::store::datasets::DatasetRow;

#[derive(Deserialize, Default)]
pub(super) struct ListQuery {
    cursor: Option<String>,
}

fn label(l: Label, lang: Lang) -> &'static str {
    match lang {
        Lang::Ja => l.ja,
        Lang::En => l.en,
    }
}

/// A stored category's name in `lang` (the stored text itself when it is not one).
pub(super) fn category_label(c: &str, lang: Lang) -> String {
    c.parse::<Category>()
        .map(|c| label(c.label(), lang).to_owned())
        .unwrap_or_else(|_| c.to_owned())
}

/// What the pages show of a dataset's row.
pub(super) fn dataset_facts(d: &DatasetRow, lang: Lang) -> Value {
    json!({
        "id": d.id,
        "title": d.title,
        "institution": d.institution,
        "category": d.category,
        "category_label": category_label(&d.category, lang),
        "restricted_until": d.restricted_until,
        "category_after": d.category_after,
        "category_after_label": d.category_after.as_deref().map(|c| category_label(c, lang)),
        "state": d.state,
        "created_by": d.created_by,
        "created_at": d.created_at,
        "updated_at": d.updated_at,
        "url": format!("/ui/datasets/{}", super::pages::path_segment(&d.id)),
    })
}

/// The datasets the caller may open, newest first, a page at a time (as `GET
/// /api/v1/datasets`).
pub(super) async fn datasets(page: Page, Query(q): Query<ListQuery>) -> Response {
    let Some(caller) = page.caller() else {
        return super::to_sign_in();
    };
    let ask = PageAsk {
        limit: Some(50),
        cursor: q.cursor.clone().filter(|c| !c.is_empty()),
    };
    let found = match svc::list(&page.state, &caller, &ask).await {
        Ok(p) => p,
        Err(e) => return page.error(e.into()),
    };
    let next = found.next.map(|c| {
        let params = [("cursor", c.as_str()), ("lang", page.lang.code())];
        format!(
            "/ui/datasets?{}",
            serde_urlencoded::to_string(params).unwrap_or_default()
        )
    });
    let items: Vec<Value> = found
        .items
        .iter()
        .map(|d| dataset_facts(d, page.lang))
        .collect();
    page.render(
        StatusCode::OK,
        "datasets.html",
        json!({ "items": items, "next": next }),
    )
}

/// The text of an item's value in `lang`: labelled choices by their label, research fields
/// with their name.
fn item_text(key: &str, v: &Value, lang: Lang) -> Option<String> {
    let s = match v {
        Value::Null => return None,
        Value::String(s) => s.clone(),
        Value::Array(_) | Value::Object(_) => return None,
        other => other.to_string(),
    };
    let labelled = match key {
        "management_category" | "category_after" => s.parse::<Category>().ok().map(|c| c.label()),
        "access_rights" => s.parse::<AccessRights>().ok().map(|c| c.label()),
        "consent.obtained" => s.parse::<ConsentObtained>().ok().map(|c| c.label()),
        "consent.form" => s.parse::<ConsentForm>().ok().map(|c| c.label()),
        "research_field" => dmp::fields::RESEARCH_FIELDS
            .iter()
            .find(|(code, _)| *code == s)
            .map(|(_, l)| *l),
        _ => None,
    };
    Some(match labelled {
        Some(l) if key == "research_field" => format!("{s} {}", label(l, lang)),
        Some(l) => label(l, lang).to_owned(),
        None => s,
    })
}

/// The value at a field's key in the DMP's JSON: `consent.scope` nested, `creators[].name`
/// one value per creator.
fn values_at(doc: &Value, key: &str) -> Vec<Value> {
    if let Some((list, rest)) = key.split_once("[].") {
        return doc[list]
            .as_array()
            .map(|xs| xs.iter().flat_map(|x| values_at(x, rest)).collect())
            .unwrap_or_default();
    }
    let mut at = doc;
    for part in key.split('.') {
        at = &at[part];
    }
    vec![at.clone()]
}

/// Every item of the DMP, in the order of the common metadata items and then AMED's, labelled
/// in `lang`: a group's heading (the creators, the contact, consent, the institution) is a row
/// of its own, the items under it after.
pub(super) fn dmp_items(d: &Dmp, lang: Lang) -> Vec<Value> {
    let doc = serde_json::to_value(d).unwrap_or_default();
    dmp::FIELDS
        .iter()
        .map(|f| {
            let group = dmp::FIELDS.iter().any(|g| {
                g.key.starts_with(&format!("{}.", f.key))
                    || g.key.starts_with(&format!("{}[]", f.key))
            });
            let values: Vec<String> = if group {
                Vec::new()
            } else {
                values_at(&doc, f.key)
                    .iter()
                    .filter_map(|v| item_text(f.key, v, lang))
                    .collect()
            };
            json!({
                "key": f.key,
                "item": f.item,
                "label": label(f.label, lang),
                "group": group,
                "nested": f.key.contains('.'),
                "values": values,
            })
        })
        .collect()
}

/// A stored DMP, for the pages.
pub(super) fn stored_dmp(d: &DatasetRow) -> Result<Dmp, ApiError> {
    serde_json::from_str(&d.dmp)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("dataset {}'s stored DMP: {e}", d.id)))
}

/// One history event for the page: its words come from the template by its action.
fn event(e: &crate::audit::StoredEvent, lang: Lang) -> Value {
    let detail: Value = serde_json::from_str(&e.detail).unwrap_or(Value::Null);
    let s = |k: &str| detail[k].as_str().map(str::to_owned);
    let application = Some(e.subject.clone())
        .filter(|s| s.starts_with("app-"))
        .or_else(|| s("application"));
    let what = match e.action.as_str() {
        "dataset.register" => "register",
        "application.submit" => "submit",
        "application.decision" => "vote",
        "application.state" => "state",
        "application.withdraw" => "withdraw",
        "application.resubmit" => "resubmit",
        "dataset.extend" => "extend",
        "dataset.category" => "category",
        "dataset.state" => "dataset_state",
        "dataset.upload" => "upload",
        "access.grant" => "grant",
        _ => "other",
    };
    json!({
        "what": what,
        "seq": e.seq,
        "at": e.at,
        "actor": e.actor,
        "action": e.action,
        "subject": e.subject,
        "application": application,
        "kind": s("kind"),
        "decision": s("decision"),
        "comment": s("comment"),
        "from": s("from"),
        "to": s("to"),
        "category": s("category").map(|c| category_label(&c, lang)),
        "from_category": s("from").map(|c| category_label(&c, lang)),
        "to_category": s("to").map(|c| category_label(&c, lang)),
        "restricted_until": s("restricted_until"),
        "detail": if detail.is_null() { e.detail.clone() } else { detail.to_string() },
    })
}

/// What the pages show of an access grant.
pub(super) fn grant_json(g: &GrantRow) -> Value {
    json!({
        "application": g.application_id,
        "dataset": g.dataset_id,
        "project": g.project_id,
        "until": g.until,
        "commercial": g.commercial,
        "logs_hidden": g.logs_hidden,
        "granted_at": g.granted_at,
        "revoked_at": g.revoked_at,
    })
}

/// One dataset: its facts, its DMP, its content once listed, its applications and history.
pub(super) async fn dataset(page: Page, Path(id): Path<String>) -> Response {
    let Some(caller) = page.caller() else {
        return super::to_sign_in();
    };
    let d = match svc::show(&page.state, &caller, &id).await {
        Ok(d) => d,
        Err(e) => return page.error(e.into()),
    };
    let h = match extension::history(&page.state, &caller, &id).await {
        Ok(h) => h,
        Err(e) => return page.error(e.into()),
    };
    let dmp = match stored_dmp(&d.dataset) {
        Ok(dmp) => dmp,
        Err(e) => return page.error(e),
    };
    let lang = page.lang;
    page.render(
        StatusCode::OK,
        "dataset.html",
        json!({
            "ds": dataset_facts(&d.dataset, lang),
            "dmp": dmp_items(&dmp, lang),
            "stored": d.content.as_ref().map(|c| json!({
                "files": c.files,
                "bytes": c.bytes,
                "manifest_sha256": c.manifest_sha256,
                "upload_sha256": c.upload_sha256,
                "upload_bytes": c.upload_bytes,
                "format": c.format,
                "uploaded_by": c.uploaded_by,
                "uploaded_at": c.uploaded_at,
            })),
            "applications": d.applications.iter().map(|a| json!({
                "id": a.id,
                "kind": a.kind.as_str(),
                "title": a.title,
                "state": a.state.as_str(),
                "requester": a.requester,
                "created_at": a.created_at,
            })).collect::<Vec<_>>(),
            "events": h.events.iter().map(|e| event(e, lang)).collect::<Vec<_>>(),
            "grants": h.grants.iter().map(grant_json).collect::<Vec<_>>(),
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Dmp {
        let v: Value =
            serde_json::from_str(include_str!("../../../deploy/examples/dmp.json")).unwrap();
        dmp::from_value(&v, &dmp::Date::parse("2026-01-01").unwrap()).unwrap()
    }

    fn row<'a>(items: &'a [Value], key: &str) -> &'a Value {
        items.iter().find(|i| i["key"] == key).unwrap()
    }

    #[test]
    fn every_item_of_the_dmp_is_a_row_labelled_in_the_page_s_language() {
        let d = example();
        let ja = dmp_items(&d, Lang::Ja);
        let en = dmp_items(&d, Lang::En);
        assert_eq!(ja.len(), dmp::FIELDS.len());
        assert_eq!(row(&ja, "title")["label"], "データの名称");
        assert_eq!(row(&en, "title")["label"], "Title of data");
        assert_eq!(row(&en, "title")["item"], 7);
        assert_eq!(row(&en, "title")["values"], json!([d.title]));
        // Choices by their labels, research fields with their names.
        assert_eq!(
            row(&ja, "management_category")["values"],
            json!(["制限共有"])
        );
        assert_eq!(
            row(&en, "category_after")["values"],
            json!(["Restricted open sharing"])
        );
        assert_eq!(row(&en, "access_rights")["values"], json!(["Restricted"]));
        assert_eq!(row(&ja, "consent.obtained")["values"], json!(["取得済み"]));
        assert_eq!(row(&en, "consent.form")["values"], json!(["AMED's form"]));
        assert_eq!(
            row(&en, "research_field")["values"],
            json!(["189 Life science"])
        );
        // Groups head their items; lists give one value per entry; absent items none.
        assert_eq!(row(&en, "consent")["group"], true);
        assert_eq!(row(&en, "consent.scope")["nested"], true);
        assert_eq!(
            row(&en, "creators[].name")["values"],
            json!(["山田 花子 / Hanako Yamada"])
        );
        assert_eq!(
            row(&en, "data_manager_contact.email")["values"],
            json!(["dmp@example.ac.jp"])
        );
        assert_eq!(row(&en, "publication_date")["values"], json!([]));
    }
}
