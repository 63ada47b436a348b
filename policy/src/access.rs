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
    /// Take one's own application back (of this kind: the applicant's role is needed still).
    AppWithdraw(Kind),
    /// Answer a request for changes to one's own application of this kind.
    AppResubmit(Kind),
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
    /// Read the files of an egress request in quarantine (previews): reviewers only (and the
    /// gateway refuses the requester and their project), so no door hands quarantined bytes
    /// back.
    QuarantineRead,
    /// Read an egress request's files, checks and release (their names, hashes and findings,
    /// not their bytes): the project's members and the committee's side, not every steward.
    EgressRead,
    /// Register one's own age recipient for releases.
    KeyRegister,
    /// Download a release: its requester only.
    ReleaseDownload,
    /// Revoke a release (it can no longer be downloaded).
    ReleaseRevoke,
    /// Register a dataset with its DMP (and apply to list it), and upload its content once
    /// the listing is approved: a steward of the DMP's data-providing institution.
    DatasetRegister,
    /// List datasets (narrowed as for single reads).
    DatasetList,
    /// Read a dataset's record and its DMP.
    DatasetRead,
    /// Revoke an approved access to datasets: it ends at once, and live runs that mount them
    /// are stopped. Admins.
    AccessRevoke,
}

impl Action {
    /// Every action, each kind of application spelled out: the role tables (here and in the
    /// gateway's authorization test) walk this list, so none can be missed.
    pub const ALL: [Action; 44] = [
        Action::ProjectCreate,
        Action::ProjectManageMembers,
        Action::ProjectList,
        Action::ProjectRead,
        Action::AppCreate(Kind::Listing),
        Action::AppCreate(Kind::Extension),
        Action::AppCreate(Kind::Access),
        Action::AppCreate(Kind::Ingress),
        Action::AppCreate(Kind::Egress),
        Action::AppList,
        Action::AppRead,
        Action::AppDecide,
        Action::AppWithdraw(Kind::Listing),
        Action::AppWithdraw(Kind::Extension),
        Action::AppWithdraw(Kind::Access),
        Action::AppWithdraw(Kind::Ingress),
        Action::AppWithdraw(Kind::Egress),
        Action::AppResubmit(Kind::Listing),
        Action::AppResubmit(Kind::Extension),
        Action::AppResubmit(Kind::Access),
        Action::AppResubmit(Kind::Ingress),
        Action::AppResubmit(Kind::Egress),
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
        Action::QuarantineRead,
        Action::EgressRead,
        Action::KeyRegister,
        Action::ReleaseDownload,
        Action::ReleaseRevoke,
        Action::DatasetRegister,
        Action::DatasetList,
        Action::DatasetRead,
        Action::AccessRevoke,
    ];

    /// A number per variant, kind aside. The match has no wildcard, so a new action cannot
    /// compile without one; the test below then fails until it is in [`Action::ALL`].
    #[cfg(test)]
    fn variant(self) -> usize {
        match self {
            Action::ProjectCreate => 0,
            Action::ProjectManageMembers => 1,
            Action::ProjectList => 2,
            Action::ProjectRead => 3,
            Action::AppCreate(_) => 4,
            Action::AppList => 5,
            Action::AppRead => 6,
            Action::AppDecide => 7,
            Action::AppWithdraw(_) => 8,
            Action::AppResubmit(_) => 9,
            Action::AttachInstitutionReview => 10,
            Action::AttachCommitteeOpinion => 11,
            Action::ReadContent => 12,
            Action::AuditRead => 13,
            Action::MetricsRead => 14,
            Action::ImageAllow => 15,
            Action::ImageList => 16,
            Action::SandboxCreate => 17,
            Action::SandboxRead => 18,
            Action::SandboxManage => 19,
            Action::RunCreate => 20,
            Action::RunLogs => 21,
            Action::RunCancel => 22,
            Action::QuarantineRead => 23,
            Action::KeyRegister => 24,
            Action::ReleaseDownload => 25,
            Action::ReleaseRevoke => 26,
            Action::EgressRead => 27,
            Action::DatasetRegister => 28,
            Action::DatasetList => 29,
            Action::DatasetRead => 30,
            Action::AccessRevoke => 31,
        }
    }
    #[cfg(test)]
    const VARIANTS: usize = 32;
}

/// The caller's standing towards the object of an action.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Standing {
    /// The caller's roles in the object's project; empty when not a member or no project.
    /// For a dataset (and the applications that belong to it), the institution stands for the
    /// project: a steward of the dataset's data-providing institution is its steward member.
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
    #[error("this needs the {0} role in the project (for a dataset: its institution)")]
    NotMember(Role),
    #[error("only the requester may do this")]
    NotRequester,
    /// The object is not one the caller may see; the gateway answers as if it did not exist.
    #[error("not visible to this caller")]
    NotVisible,
}

/// What can be seen, one resource at a time. Lists and single reads both follow [`scope`], so
/// a caller never lists what they cannot open, nor opens what they cannot list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Resource {
    /// A project and its members.
    Project,
    /// An application with its votes, attachments' descriptions and checks.
    Application,
    /// A sandbox and its runs' descriptions (not their logs).
    Sandbox,
    /// A dataset's record and its DMP.
    Dataset,
}

impl Resource {
    pub const ALL: [Resource; 4] = [
        Resource::Project,
        Resource::Application,
        Resource::Sandbox,
        Resource::Dataset,
    ];
}

/// How much of a resource a caller sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every project's.
    Every,
    /// Those of the projects the caller is a member of (datasets: of their institution).
    OwnProjects,
    /// None at all.
    Nothing,
}

impl Scope {
    /// Whether one object, in whose project the caller has `standing`, is seen.
    pub fn sees(self, standing: Standing) -> bool {
        match self {
            Scope::Every => true,
            Scope::OwnProjects => !standing.member_roles.is_empty(),
            Scope::Nothing => false,
        }
    }
}

/// What a caller with these global roles sees of a resource.
///
/// Committee members, auditors and admins see every project and application, stewards every
/// application too (the access applications they attach their institution's review results to
/// come from other projects), and operators and auditors every sandbox. Analysts and stewards
/// see their own projects; analysts their projects' applications and sandboxes. Operators run
/// the host: they see projects and sandboxes, never applications' content. Datasets and their
/// DMPs are the committee's side's (reviewers, auditors, admins) and their own institution's
/// stewards'; no analyst or operator sees them (what a project may use comes with its access).
pub fn scope(roles: RoleSet, resource: Resource) -> Scope {
    use Role::*;
    let (every, own): (&[Role], &[Role]) = match resource {
        Resource::Project => (&[Admin, Operator, Reviewer, Auditor], &[Analyst, Steward]),
        Resource::Application => (&[Reviewer, Auditor, Admin, Steward], &[Analyst]),
        Resource::Sandbox => (&[Operator, Auditor, Admin], &[Analyst]),
        Resource::Dataset => (&[Reviewer, Auditor, Admin], &[Steward]),
    };
    if every.iter().any(|r| roles.contains(*r)) {
        Scope::Every
    } else if own.iter().any(|r| roles.contains(*r)) {
        Scope::OwnProjects
    } else {
        Scope::Nothing
    }
}

fn visible(roles: RoleSet, resource: Resource, standing: Standing) -> Access {
    if scope(roles, resource).sees(standing) {
        Access::Allow
    } else {
        Access::Deny(Denial::NotVisible)
    }
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

/// Whether a caller with these global roles could take `action` on some object: asked with the
/// most favourable standing (a member in every project role, the requester). A `Deny` here
/// holds for every object, so the gateway can refuse before it reads a request's body or looks
/// anything up; an `Allow` still leaves the real decision to [`authorize`].
pub fn could(roles: RoleSet, action: Action) -> Access {
    let best = Standing {
        member_roles: Role::ALL
            .into_iter()
            .filter(|r| r.is_project_role())
            .collect(),
        is_requester: true,
    };
    authorize(roles, action, best)
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
        Action::ProjectRead => visible(roles, Resource::Project, standing),
        Action::AppCreate(kind) => member_as(roles, standing, applicant_role(kind)),
        Action::AppRead => visible(roles, Resource::Application, standing),
        Action::AppDecide => any_of(roles, &[Reviewer]),
        // The requester, still holding the applicant's role, globally and in the project.
        Action::AppWithdraw(kind) | Action::AppResubmit(kind) => {
            if !standing.is_requester {
                Access::Deny(Denial::NotRequester)
            } else {
                member_as(roles, standing, applicant_role(kind))
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
        Action::SandboxRead => visible(roles, Resource::Sandbox, standing),
        // Only the project's analysts run code beside its data, and read what it printed.
        Action::RunCreate | Action::RunLogs => member_as(roles, standing, Analyst),
        // Reviewers; the gateway refuses the requester and the project's members on top, as
        // for votes (`review::may_give_opinion`).
        Action::QuarantineRead => any_of(roles, &[Reviewer]),
        Action::EgressRead => {
            if member {
                Access::Allow
            } else {
                match any_of(roles, &[Reviewer, Auditor, Admin]) {
                    Access::Allow => Access::Allow,
                    Access::Deny(_) => Access::Deny(Denial::NotVisible),
                }
            }
        }
        Action::KeyRegister => any_of(roles, &[Analyst]),
        Action::ReleaseDownload => {
            if !standing.is_requester {
                Access::Deny(Denial::NotRequester)
            } else {
                member_as(roles, standing, Analyst)
            }
        }
        Action::ReleaseRevoke => any_of(roles, &[Operator, Admin]),
        Action::DatasetRegister => member_as(roles, standing, Steward),
        Action::DatasetList => match scope(roles, Resource::Dataset) {
            Scope::Nothing => Access::Deny(Denial::MissingRole(
                [Reviewer, Auditor, Admin, Steward].into_iter().collect(),
            )),
            _ => Access::Allow,
        },
        Action::DatasetRead => visible(roles, Resource::Dataset, standing),
        Action::AccessRevoke => any_of(roles, &[Admin]),
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
        for a in Action::ALL {
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
        let steward = Standing {
            member_roles: roles("steward"),
            is_requester: false,
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
            ("analyst", Action::AppWithdraw(Kind::Access), member, false),
            ("analyst", Action::AppWithdraw(Kind::Access), requester, true),
            ("analyst", Action::AppResubmit(Kind::Ingress), requester, true),
            // The applicant's role is needed still: a requester who lost it, or an analyst
            // requester of a steward's kind, may not.
            ("reviewer", Action::AppWithdraw(Kind::Access), requester, false),
            ("analyst", Action::AppWithdraw(Kind::Listing), requester, false),
            ("analyst", Action::AppResubmit(Kind::Listing), requester, false),
            ("reviewer", Action::AppWithdraw(Kind::Egress), NONE, false),
            ("auditor", Action::AuditRead, NONE, true),
            ("reviewer", Action::AuditRead, NONE, false),
            ("auditor", Action::ReadContent, NONE, false),
            ("reviewer", Action::ReadContent, NONE, true),
            ("analyst", Action::ReadContent, member, true),
            ("reviewer", Action::QuarantineRead, NONE, true),
            ("steward", Action::EgressRead, NONE, false),
            ("auditor", Action::EgressRead, NONE, true),
            ("analyst", Action::EgressRead, member, true),
            ("analyst", Action::QuarantineRead, member, false),
            ("auditor", Action::QuarantineRead, NONE, false),
            ("analyst", Action::KeyRegister, NONE, true),
            ("reviewer", Action::KeyRegister, NONE, false),
            ("analyst", Action::ReleaseDownload, requester, true),
            ("analyst", Action::ReleaseDownload, member, false),
            ("admin", Action::ReleaseDownload, NONE, false),
            ("operator", Action::ReleaseRevoke, NONE, true),
            ("analyst", Action::ReleaseRevoke, requester, false),
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
            // Datasets: a steward of the DMP's institution registers and reads; one of another
            // institution does neither; the committee's side reads; analysts and operators
            // see none.
            ("steward", Action::DatasetRegister, steward, true),
            ("steward", Action::DatasetRegister, NONE, false),
            ("admin", Action::DatasetRegister, steward, false),
            ("analyst", Action::DatasetRegister, member, false),
            ("steward", Action::DatasetRead, steward, true),
            ("steward", Action::DatasetRead, NONE, false),
            ("reviewer", Action::DatasetRead, NONE, true),
            ("auditor", Action::DatasetRead, NONE, true),
            ("admin", Action::DatasetRead, NONE, true),
            ("analyst", Action::DatasetRead, member, false),
            ("operator", Action::DatasetRead, NONE, false),
            ("admin", Action::AccessRevoke, NONE, true),
            ("operator", Action::AccessRevoke, NONE, false),
            ("reviewer", Action::AccessRevoke, NONE, false),
            ("steward", Action::AccessRevoke, steward, false),
            ("analyst", Action::AccessRevoke, requester, false),
            ("steward", Action::DatasetList, NONE, true),
            ("analyst", Action::DatasetList, member, false),
            ("operator", Action::DatasetList, NONE, false),
        ];
        for (r, a, s, want) in cases {
            assert_eq!(allowed(r, *a, *s), *want, "{r} {a:?} {s:?}");
        }
    }

    #[test]
    fn every_action_is_listed_once() {
        let mut seen = [0usize; Action::VARIANTS];
        for a in Action::ALL {
            seen[a.variant()] += 1;
        }
        for (i, n) in seen.iter().enumerate() {
            assert!(*n > 0, "action variant {i} is missing from Action::ALL");
        }
        for k in Kind::ALL {
            for a in [
                Action::AppCreate(k),
                Action::AppWithdraw(k),
                Action::AppResubmit(k),
            ] {
                assert_eq!(Action::ALL.iter().filter(|x| **x == a).count(), 1, "{a:?}");
            }
        }
        assert_eq!(
            Action::ALL.len(),
            Action::VARIANTS + 3 * (Kind::ALL.len() - 1)
        );
    }

    /// Single reads follow the scope, for every role and standing: what a list shows (the
    /// scope) and what a read allows cannot drift apart.
    #[test]
    fn reads_follow_the_scope() {
        let reads = [
            (Resource::Project, Action::ProjectRead),
            (Resource::Application, Action::AppRead),
            (Resource::Sandbox, Action::SandboxRead),
            (Resource::Dataset, Action::DatasetRead),
        ];
        let standings = [
            NONE,
            Standing {
                member_roles: roles("analyst"),
                is_requester: false,
            },
            Standing {
                member_roles: roles("steward"),
                is_requester: false,
            },
        ];
        for bits in 0..(1u32 << Role::ALL.len()) {
            let rs: RoleSet = Role::ALL
                .into_iter()
                .enumerate()
                .filter(|(i, _)| bits & (1 << i) != 0)
                .map(|(_, r)| r)
                .collect();
            for (resource, action) in reads {
                for st in standings {
                    assert_eq!(
                        authorize(rs, action, st) == Access::Allow,
                        scope(rs, resource).sees(st),
                        "{rs} {action:?} {st:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn scopes() {
        #[rustfmt::skip]
        let cases: &[(&str, Resource, Scope)] = &[
            ("reviewer", Resource::Project, Scope::Every),
            ("operator", Resource::Project, Scope::Every),
            ("steward", Resource::Project, Scope::OwnProjects),
            ("analyst", Resource::Project, Scope::OwnProjects),
            ("steward", Resource::Application, Scope::Every),
            ("operator", Resource::Application, Scope::Nothing),
            ("analyst", Resource::Application, Scope::OwnProjects),
            ("analyst,operator", Resource::Application, Scope::OwnProjects),
            ("reviewer", Resource::Sandbox, Scope::Nothing),
            ("steward", Resource::Sandbox, Scope::Nothing),
            ("auditor", Resource::Sandbox, Scope::Every),
            ("steward", Resource::Dataset, Scope::OwnProjects),
            ("reviewer", Resource::Dataset, Scope::Every),
            ("analyst", Resource::Dataset, Scope::Nothing),
            ("operator", Resource::Dataset, Scope::Nothing),
            ("", Resource::Project, Scope::Nothing),
        ];
        for (r, res, want) in cases {
            assert_eq!(scope(roles(r), *res), *want, "{r} {res:?}");
        }
    }

    /// `could` never refuses what `authorize` would allow for some standing: a refusal before
    /// the body is read is never one the object would have changed.
    #[test]
    fn could_refuses_only_what_no_standing_allows() {
        let standings: Vec<Standing> = [
            RoleSet::EMPTY,
            roles("analyst"),
            roles("steward"),
            roles("analyst,steward"),
        ]
        .into_iter()
        .flat_map(|m| {
            [false, true].map(|r| Standing {
                member_roles: m,
                is_requester: r,
            })
        })
        .collect();
        for bits in 0..(1u32 << Role::ALL.len()) {
            let rs: RoleSet = Role::ALL
                .into_iter()
                .enumerate()
                .filter(|(i, _)| bits & (1 << i) != 0)
                .map(|(_, r)| r)
                .collect();
            for a in Action::ALL {
                let some = standings
                    .iter()
                    .any(|s| authorize(rs, a, *s) == Access::Allow);
                assert_eq!(could(rs, a) == Access::Allow, some, "{rs} {a:?}");
            }
        }
    }
}
