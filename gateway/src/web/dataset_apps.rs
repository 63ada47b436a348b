//! What the application page shows of a dataset's applications, for reviewers to decide on: a
//! listing's dataset and its DMP; an access application's datasets, purpose, asked last day and
//! commercial use, each reviewer's conditions and, once approved, the grants; an extension's
//! current and asked end with its justification.

use policy::review::Kind;
use serde_json::{Value, json};

use super::Page;
use super::datasets::{dataset_facts, dmp_items, grant_json, stored_dmp};
use crate::auth::Caller;
use crate::service::applications::Detail;
use crate::service::datasets as svc;

/// A dataset as the caller may see it: its facts (and with `with_dmp` its DMP's items), or
/// only its id when it is not theirs to open.
async fn dataset(page: &Page, caller: &Caller, id: &str, with_dmp: bool) -> Value {
    match svc::show(&page.state, caller, id).await {
        Ok(d) => {
            let mut v = dataset_facts(&d.dataset, page.lang);
            if with_dmp {
                v["dmp"] = stored_dmp(&d.dataset)
                    .map(|dmp| json!(dmp_items(&dmp, page.lang)))
                    .unwrap_or(Value::Null);
            }
            v
        }
        Err(e) => {
            if matches!(e, crate::service::Error::Internal(_)) {
                tracing::warn!(dataset = id, error = %e, "reading a dataset for an application page");
            }
            json!({ "id": id, "hidden": true })
        }
    }
}

/// The page data of a dataset's application `d` (`dataset_app`), to merge into the
/// application page's; `Null` for other kinds.
pub(super) async fn data(page: &Page, caller: &Caller, d: &Detail) -> Value {
    let payload: Value = serde_json::from_str(&d.row.payload).unwrap_or(Value::Null);
    match d.row.kind {
        Kind::Listing => {
            let Some(id) = d.row.dataset_id.as_deref() else {
                return Value::Null;
            };
            json!({ "listing": { "dataset": dataset(page, caller, id, true).await } })
        }
        Kind::Extension => {
            let Some(id) = d.row.dataset_id.as_deref() else {
                return Value::Null;
            };
            json!({ "extension": {
                "dataset": dataset(page, caller, id, false).await,
                "from": payload["from"],
                "until": payload["until"],
                "justification": d.row.description,
            }})
        }
        Kind::Access => {
            let mut datasets = Vec::new();
            for id in payload["datasets"].as_array().into_iter().flatten() {
                if let Some(id) = id.as_str() {
                    datasets.push(dataset(page, caller, id, false).await);
                }
            }
            json!({ "access": {
                "datasets": datasets,
                "purpose": payload["purpose"],
                "until": payload["until"],
                "commercial": payload["commercial"].as_bool().unwrap_or(false),
                "conditions": d.conditions.iter().map(|c| json!({
                    "round": c.round,
                    "reviewer": c.reviewer,
                    "until": c.until,
                    "no_commercial": c.no_commercial,
                    "logs_hidden": c.logs_hidden,
                })).collect::<Vec<_>>(),
                "grants": d.grants.iter().map(grant_json).collect::<Vec<_>>(),
            }})
        }
        _ => Value::Null,
    }
}
