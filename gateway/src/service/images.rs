//! Images sandboxes may use: operators allow one by name, and it is pinned by the ID the engine
//! has for it then.

use policy::access::{Action, Standing};
use serde_json::json;

use super::page::{Page, PageAsk, Window};
use super::{Error, Result, allow};
use crate::audit::NewEvent;
use crate::auth::Caller;
use crate::error::ErrorCode;
use crate::state::AppState;
use crate::store::sandboxes::{self as sstore, ImageRow};

/// The allowed images, in the order of their names; a page at a time.
pub async fn list(state: &AppState, caller: &Caller, ask: &PageAsk) -> Result<Page<ImageRow>> {
    allow(caller, Action::ImageList, Standing::default())?;
    let window = Window::<String>::of("images", ask)?;
    let mut conn = state.db.pool().acquire().await?;
    let rows = sstore::images(&mut conn, window.after.as_ref(), window.fetch()).await?;
    Ok(window.page(rows, |r| r.name.clone()))
}

/// The most names an image's command or interpreter list holds, and the longest name.
const MAX_NAMES: usize = 64;
const MAX_NAME_LEN: usize = 64;

/// A list of bare program names as given: each without `/`, whitespace or control characters,
/// at most [`MAX_NAME_LEN`] long; at most [`MAX_NAMES`] of them. Duplicates are dropped.
fn program_names(what: &str, names: Vec<String>) -> Result<Vec<String>> {
    if names.len() > MAX_NAMES {
        return Err(Error::invalid(
            ErrorCode::BadImage,
            format!("an image allows at most {MAX_NAMES} {what}s"),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for n in names {
        if n.is_empty()
            || n.len() > MAX_NAME_LEN
            || n.chars()
                .any(|c| c == '/' || c.is_whitespace() || c.is_control())
        {
            return Err(Error::invalid(
                ErrorCode::BadImage,
                format!(
                    "{what} `{}` is not a bare program name (no `/`, no whitespace, at most \
                     {MAX_NAME_LEN} characters)",
                    n.escape_debug()
                ),
            ));
        }
        if !out.contains(&n) {
            out.push(n);
        }
    }
    Ok(out)
}

/// Allows an image the engine has, pinned by its current ID, with the commands and
/// interpreters runs may start in it under a project's `approved` policy; operators. Allowing
/// it again replaces both lists.
pub async fn allow_image(
    state: &AppState,
    caller: &Caller,
    name: &str,
    commands: Vec<String>,
    interpreters: Vec<String>,
) -> Result<ImageRow> {
    allow(caller, Action::ImageAllow, Standing::default())?;
    let commands = program_names("command", commands)?;
    let interpreters = program_names("interpreter", interpreters)?;
    let name = name.trim();
    if name.is_empty()
        || name.len() > 255
        || name.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(Error::invalid(
            ErrorCode::BadImage,
            "an image name has no spaces and at most 255 characters",
        ));
    }
    let info = state
        .sandboxes
        .backend
        .image(name)
        .await?
        .ok_or(Error::NotFound("image on the container engine"))?;
    let row = ImageRow {
        name: name.to_owned(),
        image_id: info.id.clone(),
        size: info.size,
        allowed_by: caller.sub.to_string(),
        allowed_at: crate::time::now(),
        commands,
        interpreters,
    };
    let mut tx = state.db.begin_write().await?;
    sstore::upsert_image(tx.conn(), &row).await?;
    tx.audit(NewEvent {
        actor: caller.sub.as_str(),
        action: "image.allow",
        subject: name,
        detail: json!({
            "image_id": info.id,
            "size": info.size,
            "tags": info.tags,
            "commands": row.commands,
            "interpreters": row.interpreters,
        }),
    })
    .await?;
    state.commit(tx).await?;
    Ok(row)
}
