//! Tables and properties of the application state machine.

use proptest::prelude::*;

use super::*;

fn facts<'a>(kind: Kind, state: State, votes: &'a [CastVote<'a>]) -> Facts<'a> {
    Facts {
        kind,
        state,
        requester: "ana",
        votes,
        conflicted: &["colleague"],
    }
}

fn vote(voter: &str, choice: Choice) -> Event<'_> {
    Event::Vote { voter, choice }
}

#[test]
fn single_approval_approves_access_but_egress_needs_two() {
    let q = Quorum::default();
    let t = next_state(
        &facts(Kind::Access, State::Submitted, &[]),
        &q,
        vote("rev1", Choice::Approve),
    )
    .unwrap();
    assert_eq!(t.to, State::Approved);
    let t = next_state(
        &facts(Kind::Egress, State::Submitted, &[]),
        &q,
        vote("rev1", Choice::Approve),
    )
    .unwrap();
    assert_eq!(t.to, State::InReview);
    let first = [CastVote {
        voter: "rev1",
        choice: Choice::Approve,
    }];
    let t = next_state(
        &facts(Kind::Egress, State::InReview, &first),
        &q,
        vote("rev2", Choice::Approve),
    )
    .unwrap();
    assert_eq!(t.to, State::Approved);
}

#[test]
fn separation_of_duties() {
    let q = Quorum::default();
    let f = facts(Kind::Egress, State::Submitted, &[]);
    assert_eq!(
        next_state(&f, &q, vote("ana", Choice::Approve)),
        Err(Refusal::OwnApplication)
    );
    assert_eq!(
        next_state(&f, &q, vote("colleague", Choice::Approve)),
        Err(Refusal::ConflictOfInterest)
    );
    let first = [CastVote {
        voter: "rev1",
        choice: Choice::Approve,
    }];
    let f = facts(Kind::Egress, State::InReview, &first);
    assert!(matches!(
        next_state(&f, &q, vote("rev1", Choice::Approve)),
        Err(Refusal::AlreadyVoted { .. })
    ));
    assert!(matches!(
        next_state(&f, &q, vote("rev1", Choice::Reject)),
        Err(Refusal::AlreadyVoted { .. })
    ));
}

#[test]
fn reject_and_request_changes_end_the_round() {
    let q = Quorum::default();
    let first = [CastVote {
        voter: "rev1",
        choice: Choice::Approve,
    }];
    let f = facts(Kind::Egress, State::InReview, &first);
    assert_eq!(
        next_state(&f, &q, vote("rev2", Choice::Reject)).unwrap().to,
        State::Rejected
    );
    assert_eq!(
        next_state(&f, &q, vote("rev2", Choice::RequestChanges))
            .unwrap()
            .to,
        State::ChangesRequested
    );
}

#[test]
fn transitions_outside_review() {
    let q = Quorum::default();
    // Resubmission only from changes_requested, only by the requester, and it opens a round.
    let f = facts(Kind::Ingress, State::ChangesRequested, &[]);
    let t = next_state(&f, &q, Event::Resubmit { by: "ana" }).unwrap();
    assert_eq!((t.to, t.new_round), (State::Submitted, true));
    assert!(next_state(&f, &q, Event::Resubmit { by: "rev1" }).is_err());
    assert!(
        next_state(
            &facts(Kind::Ingress, State::Rejected, &[]),
            &q,
            Event::Resubmit { by: "ana" }
        )
        .is_err()
    );
    // Withdraw while open or returned, never after a decision.
    for s in [State::Submitted, State::InReview, State::ChangesRequested] {
        assert_eq!(
            next_state(
                &facts(Kind::Ingress, s, &[]),
                &q,
                Event::Withdraw { by: "ana" }
            )
            .unwrap()
            .to,
            State::Withdrawn
        );
    }
    for s in [
        State::Approved,
        State::Rejected,
        State::Staged,
        State::Withdrawn,
    ] {
        assert!(
            next_state(
                &facts(Kind::Ingress, s, &[]),
                &q,
                Event::Withdraw { by: "ana" }
            )
            .is_err()
        );
    }
    // Completion only from approved, to the kind's own final state.
    assert_eq!(
        next_state(
            &facts(Kind::Ingress, State::Approved, &[]),
            &q,
            Event::Complete
        )
        .unwrap()
        .to,
        State::Staged
    );
    assert_eq!(
        next_state(
            &facts(Kind::Egress, State::Approved, &[]),
            &q,
            Event::Complete
        )
        .unwrap()
        .to,
        State::Released
    );
    assert!(
        next_state(
            &facts(Kind::Egress, State::InReview, &[]),
            &q,
            Event::Complete
        )
        .is_err()
    );
    assert!(
        next_state(
            &facts(Kind::Access, State::Approved, &[]),
            &q,
            Event::Complete
        )
        .is_err()
    );
    // No votes on closed applications.
    for s in State::ALL.into_iter().filter(|s| !s.is_open()) {
        assert!(matches!(
            next_state(
                &facts(Kind::Access, s, &[]),
                &q,
                vote("rev1", Choice::Approve)
            ),
            Err(Refusal::NotOpen { .. })
        ));
    }
}

#[test]
fn names_round_trip() {
    for k in Kind::ALL {
        assert_eq!(k.as_str().parse::<Kind>().unwrap(), k);
    }
    for s in State::ALL {
        assert_eq!(s.as_str().parse::<State>().unwrap(), s);
    }
    for c in Choice::ALL {
        assert_eq!(c.as_str().parse::<Choice>().unwrap(), c);
    }
    let mut q = Quorum::default();
    assert!(q.set(Kind::Egress, 0).is_err());
    q.set(Kind::Egress, 3).unwrap();
    assert_eq!(q.get(Kind::Egress), 3);
}

/// An application as the gateway keeps it: its state and all votes ever recorded, by round.
#[derive(Debug)]
struct Model {
    kind: Kind,
    state: State,
    round: u32,
    votes: Vec<(u32, String, Choice)>,
}

#[derive(Clone, Debug)]
enum Step {
    Vote(usize, Choice),
    Withdraw(usize),
    Resubmit(usize),
    Complete,
}

const PEOPLE: [&str; 6] = ["ana", "colleague", "rev1", "rev2", "rev3", "rev4"];

fn step() -> impl Strategy<Value = Step> {
    let choice = prop_oneof![
        4 => Just(Choice::Approve),
        1 => Just(Choice::Reject),
        1 => Just(Choice::RequestChanges)
    ];
    prop_oneof![
        8 => (0..PEOPLE.len(), choice).prop_map(|(p, c)| Step::Vote(p, c)),
        1 => (0..PEOPLE.len()).prop_map(Step::Withdraw),
        2 => (0..PEOPLE.len()).prop_map(Step::Resubmit),
        1 => Just(Step::Complete),
    ]
}

proptest! {
    /// Whatever happens, an application is approved only when distinct eligible reviewers in the
    /// current round gave at least the quorum of approvals and nobody rejected or sent it back in
    /// that round; requesters and conflicted members never get a vote recorded.
    #[test]
    fn approval_needs_the_quorum(kind_i in 0..5usize, q in 1..4u32, steps in proptest::collection::vec(step(), 0..40)) {
        let kind = Kind::ALL[kind_i];
        let mut quorum = Quorum::default();
        quorum.set(kind, q).unwrap();
        let mut m = Model { kind, state: State::Submitted, round: 1, votes: Vec::new() };
        for s in steps {
            let round_votes: Vec<CastVote<'_>> = m.votes.iter()
                .filter(|(r, _, _)| *r == m.round)
                .map(|(_, v, c)| CastVote { voter: v.as_str(), choice: *c })
                .collect();
            let f = Facts { kind: m.kind, state: m.state, requester: "ana", votes: &round_votes, conflicted: &["colleague"] };
            let event = match &s {
                Step::Vote(p, c) => Event::Vote { voter: PEOPLE[*p], choice: *c },
                Step::Withdraw(p) => Event::Withdraw { by: PEOPLE[*p] },
                Step::Resubmit(p) => Event::Resubmit { by: PEOPLE[*p] },
                Step::Complete => Event::Complete,
            };
            let Ok(t) = next_state(&f, &quorum, event) else { continue };
            prop_assert_eq!(t.from, m.state);
            if let Step::Vote(p, c) = s {
                prop_assert!(t.records_vote);
                prop_assert!(PEOPLE[p] != "ana" && PEOPLE[p] != "colleague");
                m.votes.push((m.round, PEOPLE[p].to_owned(), c));
            }
            if t.new_round {
                m.round += 1;
            }
            let was = m.state;
            m.state = t.to;
            if m.state == State::Approved && was != State::Approved {
                let this_round: Vec<_> = m.votes.iter().filter(|(r, _, _)| *r == m.round).collect();
                let mut approvers: Vec<&str> = this_round.iter()
                    .filter(|(_, _, c)| *c == Choice::Approve)
                    .map(|(_, v, _)| v.as_str())
                    .collect();
                approvers.sort();
                approvers.dedup();
                prop_assert!(approvers.len() as u32 >= q, "approved with {:?}, quorum {}", approvers, q);
                prop_assert!(this_round.iter().all(|(_, _, c)| *c == Choice::Approve));
            }
            // One vote per person per round.
            let mut keys: Vec<(u32, &str)> = m.votes.iter().map(|(r, v, _)| (*r, v.as_str())).collect();
            let n = keys.len();
            keys.sort();
            keys.dedup();
            prop_assert_eq!(keys.len(), n);
            // Final states stay final.
            if was.is_final() {
                prop_assert_eq!(m.state, was);
            }
        }
    }
}

#[test]
fn opinions_come_from_outside_the_project() {
    let conflicted = ["colleague", "pi"];
    assert_eq!(may_give_opinion("ana", &conflicted, "rev1"), Ok(()));
    assert_eq!(
        may_give_opinion("ana", &conflicted, "ana"),
        Err(Refusal::OwnOpinion)
    );
    assert_eq!(
        may_give_opinion("ana", &conflicted, "pi"),
        Err(Refusal::ConflictedOpinion)
    );
    for r in [
        Refusal::OwnOpinion,
        Refusal::ConflictedOpinion,
        Refusal::OwnApplication,
        Refusal::ConflictOfInterest,
    ] {
        assert!(r.is_separation_of_duties());
    }
    assert!(!Refusal::NotRequester { what: "withdraw" }.is_separation_of_duties());
}
