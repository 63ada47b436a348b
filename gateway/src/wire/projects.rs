//! Projects and their members.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{same_values, wire_enum};

wire_enum! {
    /// A role a token or a project membership grants.
    Role: "role" {
        Analyst = "analyst",
        Reviewer = "reviewer",
        Operator = "operator",
        Steward = "steward",
        Auditor = "auditor",
        Admin = "admin",
    }
}
same_values!(Role <=> policy::roles::Role { Analyst, Reviewer, Operator, Steward, Auditor, Admin });

wire_enum! {
    /// A project's command policy: `approved` runs only programs of staged, approved ingress and
    /// the commands the operator allowed for the image; `any` runs any command the image has.
    CommandPolicy: "command policy" {
        Approved = "approved",
        Any = "any",
    }
}
same_values!(CommandPolicy <=> policy::commands::CommandPolicy { Approved, Any });

wire_enum! {
    /// The roles a project's members hold.
    ProjectRole: "project role" {
        Analyst = "analyst",
        Steward = "steward",
    }
}

/// A member of a project, as the gateway shows it.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub subject: String,
    pub role: Role,
}

/// A member to add. The role is parsed by the handler, so one that is not a project role is
/// answered `bad_member`.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq, Eq)]
pub struct NewMember {
    /// A token's subject: 1 to 256 characters, no whitespace or control characters.
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = r"^[^\s\x00-\x1f\x7f-\x9f]+$"
    )]
    pub subject: String,
    /// `analyst` or `steward`.
    #[schema(value_type = ProjectRole)]
    pub role: String,
}

#[derive(Serialize, Deserialize, ToSchema, Debug)]
pub struct Project {
    pub id: String,
    pub title: String,
    /// The AMED grant number, when there is one.
    pub grant_number: Option<String>,
    pub created_at: String,
    pub created_by: String,
    /// Which programs its runs may start.
    pub commands: CommandPolicy,
    pub members: Vec<Member>,
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProject {
    /// Lowercase letters, digits, `-`, `_`, `.` (starting with a letter or digit, no `..`); at
    /// most 64.
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = r"^(?!.*\.\.)[a-z0-9][a-z0-9._-]*$"
    )]
    pub id: String,
    /// Not blank; at most 500 bytes.
    #[schema(min_length = 1, max_length = 500, pattern = r"\S")]
    pub title: String,
    #[serde(default)]
    pub grant_number: Option<String>,
    #[serde(default)]
    pub members: Vec<NewMember>,
    /// Which programs its runs may start; `[sandbox] commands` when not given.
    #[serde(default)]
    pub commands: Option<CommandPolicy>,
}

#[derive(Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RemoveQuery {
    /// Remove only this role; all of the member's roles otherwise.
    #[param(value_type = Option<ProjectRole>)]
    pub role: Option<String>,
}
