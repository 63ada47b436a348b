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

/// The audit log checked as `vre audit verify` checks it, up to the chain's head when asked.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct AuditVerification {
    /// Nothing wrong: the chain is intact, ends at its recorded head and matches every signed
    /// checkpoint.
    pub intact: bool,
    /// The events checked.
    pub events: i64,
    /// The signed checkpoints read.
    pub checkpoints: u64,
    /// The first thing wrong, naming the first bad event (0: the checkpoint log itself).
    pub problem: Option<AuditProblem>,
    /// The checkpoint log's last line is cut short (a crash while it was written).
    pub torn_tail: bool,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct AuditProblem {
    pub seq: i64,
    pub what: String,
}
