//! Roles a person holds, globally (from their token) or within a project (from its membership).

use std::fmt;
use std::str::FromStr;

/// What a person does in the research environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Brings programs in, runs them, asks for results to go out.
    Analyst,
    /// A data-use committee member: decides on applications.
    Reviewer,
    /// Runs the host: images, sandboxes, the engine.
    Operator,
    /// Speaks for a data-providing institution: lists datasets, attaches its review results.
    Steward,
    /// Reads the audit log and every application, changes nothing.
    Auditor,
    /// Manages projects and their members.
    Admin,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Analyst,
        Role::Reviewer,
        Role::Operator,
        Role::Steward,
        Role::Auditor,
        Role::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Analyst => "analyst",
            Role::Reviewer => "reviewer",
            Role::Operator => "operator",
            Role::Steward => "steward",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }

    /// Roles that make sense as a membership of one project. Committee members, operators,
    /// auditors and admins act across projects and are never project members by role.
    pub fn is_project_role(self) -> bool {
        matches!(self, Role::Analyst | Role::Steward)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown role `{0}` (expected one of analyst, reviewer, operator, steward, auditor, admin)"
)]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

/// A small set of roles.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct RoleSet(u8);

impl RoleSet {
    pub const EMPTY: RoleSet = RoleSet(0);

    pub fn contains(self, role: Role) -> bool {
        self.0 & role.bit() != 0
    }
    pub fn insert(&mut self, role: Role) {
        self.0 |= role.bit();
    }
    pub fn with(mut self, role: Role) -> Self {
        self.insert(role);
        self
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn iter(self) -> impl Iterator<Item = Role> {
        Role::ALL.into_iter().filter(move |r| self.contains(*r))
    }
    /// Parses a comma-separated list such as `analyst,reviewer`; unknown names are an error.
    pub fn parse_list(s: &str) -> Result<Self, UnknownRole> {
        let mut set = RoleSet::EMPTY;
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            set.insert(part.parse()?);
        }
        Ok(set)
    }
}

impl FromIterator<Role> for RoleSet {
    fn from_iter<T: IntoIterator<Item = Role>>(iter: T) -> Self {
        let mut set = RoleSet::EMPTY;
        for r in iter {
            set.insert(r);
        }
        set
    }
}

impl fmt::Debug for RoleSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl fmt::Display for RoleSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(Role::as_str).collect();
        f.write_str(&names.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_round_trips_every_role() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
        }
        assert!("root".parse::<Role>().is_err());
        assert!(
            "Analyst".parse::<Role>().is_err(),
            "role names are case-sensitive"
        );
    }

    #[test]
    fn role_lists() {
        let set = RoleSet::parse_list("analyst, reviewer").unwrap();
        assert!(set.contains(Role::Analyst) && set.contains(Role::Reviewer));
        assert!(!set.contains(Role::Admin));
        assert_eq!(set.to_string(), "analyst,reviewer");
        assert!(RoleSet::parse_list("analyst,god").is_err());
        assert!(RoleSet::parse_list("").unwrap().is_empty());
    }
}
