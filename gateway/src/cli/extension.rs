//! `vre dataset extend` and `vre dataset history`: a dataset's restricted sharing over time.

use super::shared::{ClientArgs, print_as, print_json, shown_line, urlencode};
use crate::wire::applications::Application;
use crate::wire::extension::{DatasetHistory, HistoryEvent, NewExtension};

/// Applies for an extension of `dataset`'s restricted sharing; prints the application's id.
pub(super) async fn extend(
    client: &ClientArgs,
    dataset: &str,
    until: String,
    justification: String,
) -> anyhow::Result<()> {
    let body = NewExtension {
        until,
        justification,
    };
    let a: Application = client
        .client()?
        .post(
            &format!("/api/v1/datasets/{}/extension", urlencode(dataset)),
            &body,
        )
        .await?;
    if client.json {
        print_json(&serde_json::json!({"id": a.id}));
    } else {
        println!("{}", a.id);
    }
    Ok(())
}

/// Prints `dataset`'s history: as JSON with `--json`, otherwise a line per event and grant.
pub(super) async fn history(client: &ClientArgs, dataset: &str) -> anyhow::Result<()> {
    let h: DatasetHistory = client
        .client()?
        .get(&format!("/api/v1/datasets/{}/history", urlencode(dataset)))
        .await?;
    print_as(client, &h, print_history);
    Ok(())
}

/// A dataset's history for people.
pub(super) fn print_history(h: &DatasetHistory) {
    println!("  history:");
    for e in &h.events {
        println!("    {} {:<10} {}", e.at, e.actor, event_line(e));
    }
    for g in &h.grants {
        println!("  access: {}", super::app::grant_line(g));
    }
}

/// What an event says, in words.
fn event_line(e: &HistoryEvent) -> String {
    let d = &e.detail;
    let s = |k: &str| d[k].as_str().unwrap_or("none").to_owned();
    match e.action.as_str() {
        "dataset.register" => format!("registered it ({})", s("category")),
        "application.submit" => format!("applied for {} ({})", s("kind"), e.subject),
        "application.decision" => format!(
            "voted {} on {}: {}",
            s("decision"),
            e.subject,
            shown_line(&s("comment"))
        ),
        "application.state" => format!("{} {} -> {}", e.subject, s("from"), s("to")),
        "application.withdraw" => format!("withdrew {}", e.subject),
        "application.resubmit" => format!("resubmitted {}", e.subject),
        "dataset.extend" => format!(
            "restricted sharing extended from {} to {} ({})",
            s("from"),
            s("to"),
            s("application")
        ),
        "dataset.category" => format!(
            "restricted sharing ended {}: category {} -> {}",
            s("restricted_until"),
            s("from"),
            s("to")
        ),
        other => format!("{other} {}", e.subject),
    }
}
