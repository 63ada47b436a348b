//! Applications to the data-use committee: their kinds, states, decisions and quorum.
//!
//! One machine serves every kind of application. [`next_state`] is the only way a state changes;
//! the gateway loads the facts (state, requester, the votes of the current round), asks here, and
//! stores the answer. Separation of duties lives here too: a requester's vote and a second vote
//! by the same person in one round are refused, whatever the caller does.

use std::fmt;
use std::str::FromStr;

/// What the committee is asked to decide on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// List a dataset in the STORE.
    Listing,
    /// Extend a dataset's restricted-sharing period.
    Extension,
    /// Give a project access to datasets.
    Access,
    /// Bring a program or reference-data archive into the environment.
    Ingress,
    /// Take analysis results out.
    Egress,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Listing,
        Kind::Extension,
        Kind::Access,
        Kind::Ingress,
        Kind::Egress,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Listing => "listing",
            Kind::Extension => "extension",
            Kind::Access => "access",
            Kind::Ingress => "ingress",
            Kind::Egress => "egress",
        }
    }

    /// The state an approved application of this kind ends in once the gateway has carried it
    /// out, if carrying it out is a separate step.
    pub fn final_state(self) -> Option<State> {
        match self {
            Kind::Listing => Some(State::Listed),
            Kind::Extension => Some(State::Extended),
            Kind::Access => None,
            Kind::Ingress => Some(State::Staged),
            Kind::Egress => Some(State::Released),
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown application kind `{0}` (expected listing, extension, access, ingress or egress)")]
pub struct UnknownKind(pub String);

impl FromStr for Kind {
    type Err = UnknownKind;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownKind(s.to_owned()))
    }
}

/// Where an application stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    /// Waiting for its first decision in this round.
    Submitted,
    /// At least one reviewer has voted in this round; the quorum is not reached yet.
    InReview,
    /// The quorum approved it.
    Approved,
    /// A reviewer rejected it. Final.
    Rejected,
    /// A reviewer sent it back; the requester may resubmit it, which opens a new round.
    ChangesRequested,
    /// The requester took it back. Final.
    Withdrawn,
    /// Ingress: staged into a sandbox. Final.
    Staged,
    /// Egress: its release package was built. Final.
    Released,
    /// Listing: the dataset is in the STORE. Final.
    Listed,
    /// Extension: the new end date is in force. Final.
    Extended,
}

impl State {
    pub const ALL: [State; 10] = [
        State::Submitted,
        State::InReview,
        State::Approved,
        State::Rejected,
        State::ChangesRequested,
        State::Withdrawn,
        State::Staged,
        State::Released,
        State::Listed,
        State::Extended,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Submitted => "submitted",
            State::InReview => "in_review",
            State::Approved => "approved",
            State::Rejected => "rejected",
            State::ChangesRequested => "changes_requested",
            State::Withdrawn => "withdrawn",
            State::Staged => "staged",
            State::Released => "released",
            State::Listed => "listed",
            State::Extended => "extended",
        }
    }

    /// Reviewers may still vote.
    pub fn is_open(self) -> bool {
        matches!(self, State::Submitted | State::InReview)
    }

    /// Nothing more can happen to it (`Approved` is not final: it is carried out next, and for
    /// access applications it stays in force).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            State::Rejected
                | State::Withdrawn
                | State::Staged
                | State::Released
                | State::Listed
                | State::Extended
        )
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown application state `{0}`")]
pub struct UnknownState(pub String);

impl FromStr for State {
    type Err = UnknownState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        State::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_owned()))
    }
}

/// One reviewer's vote.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Choice {
    Approve,
    Reject,
    RequestChanges,
}

impl Choice {
    pub const ALL: [Choice; 3] = [Choice::Approve, Choice::Reject, Choice::RequestChanges];
    pub fn as_str(self) -> &'static str {
        match self {
            Choice::Approve => "approve",
            Choice::Reject => "reject",
            Choice::RequestChanges => "request_changes",
        }
    }
}

impl fmt::Display for Choice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown decision `{0}` (expected approve, reject or request_changes)")]
pub struct UnknownChoice(pub String);

impl FromStr for Choice {
    type Err = UnknownChoice;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "approve" => Ok(Choice::Approve),
            "reject" => Ok(Choice::Reject),
            "request_changes" | "request-changes" => Ok(Choice::RequestChanges),
            _ => Err(UnknownChoice(s.to_owned())),
        }
    }
}

/// How many approvals each kind needs. Egress needs two by default: four eyes on what leaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quorum {
    per_kind: [u32; 5],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the quorum for {kind} applications must be at least 1, got {got}")]
pub struct BadQuorum {
    pub kind: Kind,
    pub got: u32,
}

impl Default for Quorum {
    fn default() -> Self {
        Quorum {
            per_kind: [1, 1, 1, 1, 2],
        }
    }
}

impl Quorum {
    pub fn get(&self, kind: Kind) -> u32 {
        self.per_kind[kind as usize]
    }
    /// Sets one kind's quorum; zero would approve without anybody looking, so it is refused.
    pub fn set(&mut self, kind: Kind, approvals: u32) -> Result<(), BadQuorum> {
        if approvals == 0 {
            return Err(BadQuorum { kind, got: 0 });
        }
        self.per_kind[kind as usize] = approvals;
        Ok(())
    }
}

/// A vote already counted in the current round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CastVote<'a> {
    pub voter: &'a str,
    pub choice: Choice,
}

/// What the machine needs to know about an application.
#[derive(Clone, Debug)]
pub struct Facts<'a> {
    pub kind: Kind,
    pub state: State,
    pub requester: &'a str,
    /// Votes of the current round only; a resubmission starts a new round with none.
    pub votes: &'a [CastVote<'a>],
    /// People who may not vote on this application besides the requester (the members of its
    /// project: they share the requester's interest).
    pub conflicted: &'a [&'a str],
}

/// Something that happens to an application.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event<'a> {
    Vote {
        voter: &'a str,
        choice: Choice,
    },
    /// The requester takes it back.
    Withdraw {
        by: &'a str,
    },
    /// The requester answers a request for changes.
    Resubmit {
        by: &'a str,
    },
    /// The gateway carried out an approved application (staged, released, listed, extended).
    Complete,
}

/// Why an event was refused. Each is an ordinary answer, reported to the caller as it is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("nobody decides on their own application")]
    OwnApplication,
    #[error("members of the application's project may not decide on it")]
    ConflictOfInterest,
    #[error("nobody gives the committee's opinion on their own application")]
    OwnOpinion,
    #[error("members of the application's project may not give the committee's opinion on it")]
    ConflictedOpinion,
    #[error("{voter} has already voted in this round")]
    AlreadyVoted { voter: String },
    #[error(
        "the application is {state}; decisions are taken only while it is submitted or in review"
    )]
    NotOpen { state: State },
    #[error("only the requester may {what} an application")]
    NotRequester { what: &'static str },
    #[error("an application that is {state} cannot be {what}")]
    WrongState { state: State, what: &'static str },
    #[error("{kind} applications have no step after approval")]
    NothingToComplete { kind: Kind },
}

/// The outcome of an accepted event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    pub from: State,
    pub to: State,
    /// The event is a vote that must be recorded in the current round.
    pub records_vote: bool,
    /// The event opens a new round (a resubmission).
    pub new_round: bool,
}

/// The single place a state changes.
pub fn next_state(
    facts: &Facts<'_>,
    quorum: &Quorum,
    event: Event<'_>,
) -> Result<Transition, Refusal> {
    let from = facts.state;
    let to_transition = |to, records_vote, new_round| Transition {
        from,
        to,
        records_vote,
        new_round,
    };
    match event {
        Event::Vote { voter, choice } => {
            if !from.is_open() {
                return Err(Refusal::NotOpen { state: from });
            }
            if voter == facts.requester {
                return Err(Refusal::OwnApplication);
            }
            if facts.conflicted.contains(&voter) {
                return Err(Refusal::ConflictOfInterest);
            }
            if facts.votes.iter().any(|v| v.voter == voter) {
                return Err(Refusal::AlreadyVoted {
                    voter: voter.to_owned(),
                });
            }
            let to = match choice {
                Choice::Reject => State::Rejected,
                Choice::RequestChanges => State::ChangesRequested,
                Choice::Approve => {
                    let approvals = counted_approvals(facts) + 1;
                    if approvals >= quorum.get(facts.kind) {
                        State::Approved
                    } else {
                        State::InReview
                    }
                }
            };
            Ok(to_transition(to, true, false))
        }
        Event::Withdraw { by } => {
            if by != facts.requester {
                return Err(Refusal::NotRequester { what: "withdraw" });
            }
            match from {
                State::Submitted | State::InReview | State::ChangesRequested => {
                    Ok(to_transition(State::Withdrawn, false, false))
                }
                _ => Err(Refusal::WrongState {
                    state: from,
                    what: "withdrawn",
                }),
            }
        }
        Event::Resubmit { by } => {
            if by != facts.requester {
                return Err(Refusal::NotRequester { what: "resubmit" });
            }
            if from != State::ChangesRequested {
                return Err(Refusal::WrongState {
                    state: from,
                    what: "resubmitted",
                });
            }
            Ok(to_transition(State::Submitted, false, true))
        }
        Event::Complete => {
            let Some(done) = facts.kind.final_state() else {
                return Err(Refusal::NothingToComplete { kind: facts.kind });
            };
            if from != State::Approved {
                return Err(Refusal::WrongState {
                    state: from,
                    what: "carried out",
                });
            }
            Ok(to_transition(done, false, false))
        }
    }
}

/// Whether `author` may attach the committee's opinion to an application: as with votes, neither
/// its requester nor a member of its project (`conflicted`, as in [`Facts`]) may.
pub fn may_give_opinion(requester: &str, conflicted: &[&str], author: &str) -> Result<(), Refusal> {
    if author == requester {
        return Err(Refusal::OwnOpinion);
    }
    if conflicted.contains(&author) {
        return Err(Refusal::ConflictedOpinion);
    }
    Ok(())
}

impl Refusal {
    /// A refusal on separation of duties (one's own application, one's own project's), which is
    /// audited: somebody tried to judge their own case.
    pub fn is_separation_of_duties(&self) -> bool {
        matches!(
            self,
            Refusal::OwnApplication
                | Refusal::ConflictOfInterest
                | Refusal::OwnOpinion
                | Refusal::ConflictedOpinion
        )
    }
}

/// Approvals in this round that count: distinct voters who are neither the requester nor
/// conflicted. The machine never records such votes, but the count does not trust its input.
pub fn counted_approvals(facts: &Facts<'_>) -> u32 {
    let mut seen: Vec<&str> = Vec::new();
    for v in facts.votes {
        if v.choice == Choice::Approve
            && v.voter != facts.requester
            && !facts.conflicted.contains(&v.voter)
            && !seen.contains(&v.voter)
        {
            seen.push(v.voter);
        }
    }
    seen.len() as u32
}

#[cfg(test)]
mod tests;
