//! The public catalog's page: no sign-in.

use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::Page;
use crate::service::catalog;
use crate::service::page::PageAsk;

#[derive(Deserialize, Default)]
pub(super) struct CatalogQuery {
    #[serde(default)]
    q: String,
    cursor: Option<String>,
}

/// The datasets open to secondary use whose public items hold the search text.
pub(super) async fn catalog(page: Page, Query(q): Query<CatalogQuery>) -> Response {
    let ask = PageAsk {
        limit: Some(50),
        cursor: q.cursor.clone().filter(|c| !c.is_empty()),
    };
    let found = match catalog::search(&page.state, &q.q, &ask).await {
        Ok(p) => p,
        Err(e) => return page.error(e.into()),
    };
    let next = found.next.map(|c| {
        let params = [
            ("q", q.q.as_str()),
            ("cursor", c.as_str()),
            ("lang", page.lang.code()),
        ];
        format!(
            "/ui/catalog?{}",
            serde_urlencoded::to_string(params).unwrap_or_default()
        )
    });
    let items: Vec<serde_json::Value> = found
        .items
        .into_iter()
        .map(|i| {
            let category = i.category.label();
            let mut v = serde_json::to_value(crate::api::catalog::entry_dto(i)).unwrap_or_default();
            v["category_label"] = json!({ "ja": category.ja, "en": category.en });
            v
        })
        .collect();
    page.render(
        StatusCode::OK,
        "catalog.html",
        json!({ "items": items, "q": q.q, "next": next }),
    )
}
