//! Health, identity and the audit log.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::projects::Role;
use super::wire_enum;
pub use crate::audit::StoredEvent;

wire_enum! {
    /// Whether the gateway can serve: `degraded` when its database is unavailable.
    HealthStatus: "health status" {
        Ok = "ok",
        Degraded = "degraded",
    }
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: HealthStatus,
    /// `ok` or `unavailable`.
    pub database: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct WhoAmI {
    pub sub: String,
    pub roles: Vec<Role>,
}

#[derive(Serialize, Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only events after this sequence number (a page's cursor, when given, goes first).
    pub after: Option<i64>,
    /// Only events about this subject (an application or project id).
    pub subject: Option<String>,
    /// Only events of this actor.
    pub actor: Option<String>,
    /// Only events of this action (`application.decision`).
    pub action: Option<String>,
    /// Only events on or after this day (`YYYY-MM-DD`, UTC).
    pub since: Option<String>,
    /// Only events on or before this day (`YYYY-MM-DD`, UTC).
    pub until: Option<String>,
}
