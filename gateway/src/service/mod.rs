//! The workflows, one module per area, shared by every door into the gateway: the JSON API
//! today, the reviewers' pages and background jobs next.
//!
//! A service function takes the verified [`Caller`], loads the facts, asks `policy` whether the
//! caller may act (and, for applications, what the new state is), writes the answer with its
//! audit events in one [`WriteTx`](crate::db::WriteTx), and returns a domain value (store rows,
//! mostly) or an [`Error`]. It knows nothing of HTTP: a handler parses the request, calls one
//! service function and shapes the answer; a page handler does the same with a template.
//!
//! Access is checked here, not at the door, so no door can forget it. The proofs of a check
//! ([`Seen`] for an object the caller may see, [`Allowed`] for an action they may take) are
//! made only by [`see`] and [`allow`]; the steps that write on a caller's behalf and are shared
//! between services take one, so they cannot be reached on an unchecked path.

pub mod access;
pub mod applications;
pub mod catalog;
pub mod dataset_upload;
pub mod datasets;
pub mod egress;
pub mod extension;
pub mod images;
pub mod ingress;
pub mod mine;
pub mod page;
pub mod projects;
pub mod runs;
pub mod sandboxes;
pub mod sessions;
pub mod system;

use policy::access::{Access, Action, Denial, Resource, Scope, Standing, authorize, scope};

use crate::auth::Caller;
use crate::error::ErrorCode;

/// Why a workflow did not happen. Every variant names what a person can act on; internal
/// failures carry their cause for the log only.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such object, or one the caller may not see: the two are told apart to nobody.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The caller may see the object but not do this to it.
    #[error("{0}")]
    Denied(Denial),
    /// Refused for a reason of its own, other than the caller's roles.
    #[error("{message}")]
    Forbidden { code: ErrorCode, message: String },
    /// The input breaks a rule of the workflow (a length, a name, a class).
    #[error("{message}")]
    Invalid { code: ErrorCode, message: String },
    /// A document's fields break their rules, each named.
    #[error("{message}")]
    InvalidFields {
        code: ErrorCode,
        message: String,
        fields: Vec<crate::wire::errors::FieldProblem>,
    },
    /// The object is not in a state that allows this.
    #[error("{message}")]
    Conflict { code: ErrorCode, message: String },
    /// More than the gateway takes.
    #[error("{0}")]
    TooLarge(String),
    /// The caller already has as much work waiting as they may (a queue is full).
    #[error("{message}")]
    TooMany { code: ErrorCode, message: String },
    /// The content is not of a type this reads (a binary file asked for as text).
    #[error("{message}")]
    Unsupported { code: ErrorCode, message: String },
    /// The content was understood and refused: files that may not leave, checks that failed.
    #[error("{message}")]
    Refused { code: ErrorCode, message: String },
    /// An archive broke one of the archive rules.
    #[error("{message}")]
    Archive {
        code: ErrorCode,
        message: String,
        /// A size limit (entries, bytes, ratio) rather than a malformed or unsafe entry.
        size_limit: bool,
    },
    /// The committee's rules refused a step of an application.
    #[error(transparent)]
    Review(#[from] policy::review::Refusal),
    /// The container engine could not do what was asked.
    #[error(transparent)]
    Engine(#[from] sandbox_runner::Error),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn invalid(code: ErrorCode, message: impl Into<String>) -> Self {
        Error::Invalid {
            code,
            message: message.into(),
        }
    }
    pub fn conflict(code: ErrorCode, message: impl Into<String>) -> Self {
        Error::Conflict {
            code,
            message: message.into(),
        }
    }
    pub fn internal(message: impl std::fmt::Display) -> Self {
        Error::Internal(anyhow::anyhow!("{message}"))
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Error::Internal(anyhow::Error::new(e).context("database"))
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Internal(anyhow::Error::new(e))
    }
}

/// Proof that `policy` allowed the caller one action.
/// Made only by [`allow`] (and [`see`]).
#[derive(Debug, Clone, Copy)]
pub struct Allowed {
    action: Action,
}

impl Allowed {
    /// Fails unless this proof is for `action`: a shared step checks it was handed the right
    /// one, so a proof for one action cannot be spent on another.
    pub(crate) fn expect(&self, action: Action) -> Result<()> {
        if self.action == action {
            Ok(())
        } else {
            Err(Error::internal(format!(
                "a step needing {action:?} was handed a proof for {:?}",
                self.action
            )))
        }
    }
}

/// An object the caller may see, with their standing towards it.
#[derive(Debug, Clone)]
pub struct Seen<T> {
    pub object: T,
    pub standing: Standing,
}

/// Asks the policy; a denial is [`Error::Denied`].
pub fn allow(caller: &Caller, action: Action, standing: Standing) -> Result<Allowed> {
    match authorize(caller.roles, action, standing) {
        Access::Allow => Ok(Allowed { action }),
        Access::Deny(d) => Err(Error::Denied(d)),
    }
}

/// Like [`allow`], for reads of one object: a caller who may not read it is told it does not
/// exist, so identifiers of other projects' objects leak nothing.
pub fn see<T>(
    caller: &Caller,
    action: Action,
    standing: Standing,
    object: Option<T>,
    what: &'static str,
) -> Result<Seen<T>> {
    match (authorize(caller.roles, action, standing), object) {
        (Access::Allow, Some(object)) => Ok(Seen { object, standing }),
        _ => Err(Error::NotFound(what)),
    }
}

/// Which objects a list shows the caller, by the same rule as single reads
/// ([`policy::access::scope`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Narrow<'a> {
    /// Every project's.
    Everything,
    /// Those of the projects this subject is a member of.
    MemberOf(&'a str),
    /// None: the list is empty without asking the database.
    Nothing,
}

pub fn narrow<'a>(caller: &'a Caller, resource: Resource) -> Narrow<'a> {
    match scope(caller.roles, resource) {
        Scope::Every => Narrow::Everything,
        Scope::OwnProjects => Narrow::MemberOf(caller.sub.as_str()),
        Scope::Nothing => Narrow::Nothing,
    }
}

/// The caller's standing in a project (no application concerned).
pub(crate) async fn standing_in(
    conn: &mut sqlx::AnyConnection,
    project: &str,
    caller: &Caller,
) -> Result<Standing> {
    Ok(Standing {
        member_roles: crate::store::member_roles(conn, project, caller.sub.as_str()).await?,
        is_requester: false,
    })
}

/// A bounded text field: required ones must not be blank.
pub(crate) fn check_text(what: &'static str, s: &str, max: usize, required: bool) -> Result<()> {
    if required && s.trim().is_empty() {
        return Err(Error::invalid(
            ErrorCode::MissingText,
            format!("{what} must not be empty"),
        ));
    }
    if s.len() > max {
        return Err(Error::invalid(
            ErrorCode::TooLong,
            format!("{what} is longer than {max} bytes"),
        ));
    }
    Ok(())
}
