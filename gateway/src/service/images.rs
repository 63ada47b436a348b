//! Images sandboxes may use: operators allow one by name, and it is pinned by the ID the engine
//! has for it then.

use policy::access::{Action, Standing};
use serde_json::json;

use super::{Error, Result, allow};
use crate::audit::NewEvent;
use crate::auth::Caller;
use crate::error::ErrorCode;
use crate::state::AppState;
use crate::store::sandboxes::{self as sstore, ImageRow};

/// The allowed images.
pub async fn list(state: &AppState, caller: &Caller) -> Result<Vec<ImageRow>> {
    allow(caller, Action::ImageList, Standing::default())?;
    let mut conn = state.db.pool().acquire().await?;
    Ok(sstore::images(&mut conn).await?)
}

/// Allows an image the engine has, pinned by its current ID; operators.
pub async fn allow_image(state: &AppState, caller: &Caller, name: &str) -> Result<ImageRow> {
    allow(caller, Action::ImageAllow, Standing::default())?;
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
    };
    let mut tx = state.db.begin_write().await?;
    sstore::upsert_image(tx.conn(), &row).await?;
    tx.audit(NewEvent {
        actor: caller.sub.as_str(),
        action: "image.allow",
        subject: name,
        detail: json!({"image_id": info.id, "size": info.size, "tags": info.tags}),
    })
    .await?;
    state.commit(tx).await?;
    Ok(row)
}
