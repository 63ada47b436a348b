//! Who may do what: deny by default.
//!
//! [`authorize`] answers for one caller, one action and the caller's standing towards the object
//! (their roles in its project, whether they asked for it). Every route of the gateway asks here
//! before it touches anything; an action missing from the table below is denied.

use crate::review::Kind;
use crate::roles::{Role, RoleSet};

/// Everything a caller can ask the gateway to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Create a project.
    ProjectCreate,
    /// Add or remove a project's members.
    ProjectManageMembers,
    /// List projects (the list is narrowed to the caller's own unless they see every project).
    ProjectList,
    /// Read one project and its members.
    ProjectRead,
    /// Apply to the committee.
    AppCreate(Kind),
    /// List applications (narrowed as for projects).
    AppList,
    /// Read an application, its votes and its attachments' descriptions.
    AppRead,
    /// Vote on an application.
    AppDecide,
    /// Take one's own application back.
    AppWithdraw,
    /// Answer a request for changes.
    AppResubmit,
    /// Attach the data-providing institution's review result.
    AttachInstitutionReview,
    /// Attach a committee opinion.
    AttachCommitteeOpinion,
    /// Read the content under review: attachment files, files inside archives.
    ReadContent,
    /// Read the audit log.
    AuditRead,
    /// Scrape the gateway's metrics.
    MetricsRead,
    /// Allow an image for sandboxes (pinned by ID).
    ImageAllow,
    /// List the allowed images.
    ImageList,
    /// Create a sandbox for a project.
    SandboxCreate,
    /// Read a sandbox's description and its runs' outcomes (not their logs).
    SandboxRead,
    /// Stage approved ingress into a sandbox, or remove the sandbox.
    SandboxManage,
    /// Run a command in a sandbox.
    RunCreate,
    /// Read a run's logs: they come from the analysis and may hold data.
    RunLogs,
    /// Stop a run, queued or running.
    RunCancel,
}

/// The caller's standing towards the object of an action.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Standing {
    /// The caller's roles in the object's project; empty when not a member or no project.
    pub member_roles: RoleSet,
    /// The caller is the requester of the application concerned.
    pub is_requester: bool,
}

/// The answer to "may they?".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    Allow,
    Deny(Denial),
}

/// Why not, in words a person can act on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    #[error("this needs one of the roles: {0}")]
    MissingRole(RoleSet),
    #[error("this needs the {0} role in the project")]
    NotMember(Role),
    #[error("only the requester may do this")]
    NotRequester,
}

/// Roles that act across every project: they see all projects and applications in lists.
/// Stewards are among them because the applications they attach their institution's review
/// results to come from other projects (an access application names the steward's datasets,
/// not the steward's project).
pub fn sees_every_project(roles: RoleSet) -> bool {
    [
        Role::Admin,
        Role::Reviewer,
        Role::Auditor,
        Role::Operator,
        Role::Steward,
    ]
    .into_iter()
    .any(|r| roles.contains(r))
}

/// The role an applicant of this kind must hold, globally and in the project.
pub fn applicant_role(kind: Kind) -> Role {
    match kind {
        Kind::Listing | Kind::Extension => Role::Steward,
        Kind::Access | Kind::Ingress | Kind::Egress => Role::Analyst,
    }
}

fn any_of(roles: RoleSet, needed: &[Role]) -> Access {
    if needed.iter().any(|r| roles.contains(*r)) {
        Access::Allow
    } else {
        Access::Deny(Denial::MissingRole(needed.iter().copied().collect()))
    }
}

fn member_as(roles: RoleSet, standing: Standing, role: Role) -> Access {
    if !roles.contains(role) {
        return Access::Deny(Denial::MissingRole(RoleSet::EMPTY.with(role)));
    }
    if !standing.member_roles.contains(role) {
        return Access::Deny(Denial::NotMember(role));
    }
    Access::Allow
}

/// Decides one action. `roles` are the caller's global roles, from their token.
pub fn authorize(roles: RoleSet, action: Action, standing: Standing) -> Access {
    use Role::*;
    let member = !standing.member_roles.is_empty();
    match action {
        Action::ProjectCreate | Action::ProjectManageMembers => any_of(roles, &[Admin]),
        Action::ProjectList | Action::AppList => {
            if roles.is_empty() {
                Access::Deny(Denial::MissingRole(Role::ALL.into_iter().collect()))
            } else {
                Access::Allow
            }
        }
        Action::ProjectRead => {
            if member && (roles.contains(Analyst) || roles.contains(Steward)) {
                Access::Allow
            } else {
                any_of(roles, &[Admin, Operator, Reviewer, Auditor])
            }
        }
        Action::AppCreate(kind) => member_as(roles, standing, applicant_role(kind)),
        Action::AppRead => {
            if member && roles.contains(Analyst) {
                Access::Allow
            } else {
                any_of(roles, &[Reviewer, Auditor, Admin, Steward])
            }
        }
        Action::AppDecide => any_of(roles, &[Reviewer]),
        Action::AppWithdraw | Action::AppResubmit => {
            if !standing.is_requester {
                Access::Deny(Denial::NotRequester)
            } else if !member {
                Access::Deny(Denial::NotMember(Analyst))
            } else {
                Access::Allow
            }
        }
        Action::AttachInstitutionReview => any_of(roles, &[Steward]),
        Action::AttachCommitteeOpinion => any_of(roles, &[Reviewer]),
        Action::ReadContent => {
            if member && (roles.contains(Analyst) || roles.contains(Steward)) {
                Access::Allow
            } else {
                any_of(roles, &[Reviewer])
            }
        }
        Action::AuditRead => any_of(roles, &[Auditor, Admin]),
        Action::MetricsRead => any_of(roles, &[Operator, Admin, Auditor]),
        Action::ImageAllow => any_of(roles, &[Operator]),
        Action::ImageList => {
            if roles.is_empty() {
                Access::Deny(Denial::MissingRole(Role::ALL.into_iter().collect()))
            } else {
                Access::Allow
            }
        }
        // Operators provision sandboxes and stop runaway runs; a project's analysts may too.
        Action::SandboxCreate | Action::SandboxManage | Action::RunCancel => {
            if roles.contains(Operator) {
                Access::Allow
            } else {
                member_as(roles, standing, Analyst)
            }
        }
        Action::SandboxRead => {
            if member && roles.contains(Analyst) {
                Access::Allow
            } else {
                any_of(roles, &[Operator, Auditor, Admin])
            }
        }
        // Only the project's analysts run code beside its data, and read what it printed.
        Action::RunCreate | Action::RunLogs => member_as(roles, standing, Analyst),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles(s: &str) -> RoleSet {
        RoleSet::parse_list(s).unwrap()
    }
    fn allowed(r: &str, action: Action, standing: Standing) -> bool {
        authorize(roles(r), action, standing) == Access::Allow
    }
    const NONE: Standing = Standing {
        member_roles: RoleSet::EMPTY,
        is_requester: false,
    };

    #[test]
    fn nobody_without_a_role_gets_anything() {
        let actions = [
            Action::ProjectCreate,
            Action::ProjectManageMembers,
            Action::ProjectList,
            Action::ProjectRead,
            Action::AppCreate(Kind::Access),
            Action::AppList,
            Action::AppRead,
            Action::AppDecide,
            Action::AttachInstitutionReview,
            Action::AttachCommitteeOpinion,
            Action::ReadContent,
            Action::AuditRead,
            Action::MetricsRead,
            Action::ImageAllow,
            Action::ImageList,
            Action::SandboxCreate,
            Action::SandboxRead,
            Action::SandboxManage,
            Action::RunCreate,
            Action::RunLogs,
            Action::RunCancel,
        ];
        for a in actions {
            assert!(!allowed("", a, NONE), "{a:?} allowed with no role");
        }
    }

    #[test]
    fn applying_needs_the_role_and_the_membership() {
        let member = Standing {
            member_roles: roles("analyst"),
            is_requester: false,
        };
        assert!(allowed("analyst", Action::AppCreate(Kind::Ingress), member));
        assert!(!allowed("analyst", Action::AppCreate(Kind::Ingress), NONE));
        assert!(!allowed(
            "reviewer",
            Action::AppCreate(Kind::Ingress),
            member
        ));
        assert!(!allowed(
            "analyst",
            Action::AppCreate(Kind::Listing),
            member
        ));
        let steward = Standing {
            member_roles: roles("steward"),
            is_requester: false,
        };
        assert!(allowed(
            "steward",
            Action::AppCreate(Kind::Listing),
            steward
        ));
        assert!(!allowed("admin", Action::AppCreate(Kind::Listing), steward));
    }

    #[test]
    fn table() {
        let member = Standing {
            member_roles: roles("analyst"),
            is_requester: false,
        };
        let requester = Standing {
            member_roles: roles("analyst"),
            is_requester: true,
        };
        #[rustfmt::skip]
        let cases: &[(&str, Action, Standing, bool)] = &[
            ("admin", Action::ProjectCreate, NONE, true),
            ("operator", Action::ProjectCreate, NONE, false),
            ("analyst", Action::ProjectCreate, member, false),
            ("reviewer", Action::ProjectRead, NONE, true),
            ("analyst", Action::ProjectRead, NONE, false),
            ("analyst", Action::ProjectRead, member, true),
            ("reviewer", Action::AppDecide, NONE, true),
            ("analyst", Action::AppDecide, member, false),
            ("admin", Action::AppDecide, NONE, false),
            ("analyst", Action::AppWithdraw, member, false),
            ("analyst", Action::AppWithdraw, requester, true),
            ("reviewer", Action::AppWithdraw, NONE, false),
            ("auditor", Action::AuditRead, NONE, true),
            ("reviewer", Action::AuditRead, NONE, false),
            ("auditor", Action::ReadContent, NONE, false),
            ("reviewer", Action::ReadContent, NONE, true),
            ("analyst", Action::ReadContent, member, true),
            ("analyst", Action::ReadContent, NONE, false),
            ("steward", Action::AttachInstitutionReview, NONE, true),
            ("reviewer", Action::AttachInstitutionReview, NONE, false),
            ("reviewer", Action::AttachCommitteeOpinion, NONE, true),
            ("operator", Action::AppRead, NONE, false),
            ("steward", Action::AppRead, NONE, true),
            ("operator", Action::SandboxCreate, NONE, true),
            ("analyst", Action::SandboxCreate, member, true),
            ("analyst", Action::SandboxCreate, NONE, false),
            ("operator", Action::RunCreate, NONE, false),
            ("admin", Action::RunCreate, NONE, false),
            ("analyst", Action::RunCreate, member, true),
            ("operator", Action::RunLogs, NONE, false),
            ("operator", Action::RunCancel, NONE, true),
            ("analyst", Action::RunCancel, member, true),
            ("analyst", Action::RunCancel, NONE, false),
            ("reviewer", Action::RunCancel, NONE, false),
            ("auditor", Action::RunCancel, NONE, false),
            ("auditor", Action::SandboxRead, NONE, true),
            ("reviewer", Action::SandboxRead, NONE, false),
            ("analyst", Action::ImageAllow, member, false),
            ("steward", Action::ReadContent, NONE, false),
        ];
        for (r, a, s, want) in cases {
            assert_eq!(allowed(r, *a, *s), *want, "{r} {a:?} {s:?}");
        }
    }
}
