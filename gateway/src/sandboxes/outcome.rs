//! Which outcome a run's end is recorded with when several things happened to it: a pure
//! function over what its supervisor saw, so the precedence is written down once and tested.

use sandbox_runner::{Outcome, RunState};

/// What a supervisor saw of a run by its end.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    /// The container's state once its wait ended; `None` when the engine no longer knew it.
    pub end: Option<RunState>,
    /// Someone asked for the run to stop, and it was killed.
    pub cancelled: bool,
    /// It reached its deadline and was killed.
    pub timed_out: bool,
    /// Its output folder was past the quota (while it ran, or at its end).
    pub over_output_quota: bool,
    /// Its work area was past the quota (while it ran, or at its end).
    pub over_work_quota: bool,
    /// It wrote more log than allowed.
    pub over_log: bool,
}

/// The outcome to record. A container that is gone vanished, and one in any other state than
/// exited failed, whatever else happened: there is no end of its own to name. For one that
/// exited, what the gateway did to it comes first, in the order a person would ask about it (a
/// cancellation, then the deadline, then the quotas), because that is why it ended; then the
/// kernel's OOM kill; then the log limit (the log is cut, the program may still have ended by
/// itself); and only then its own exit code. Of the two quotas, the output folder's comes
/// before the work area's: both stop the run for the space it took, but the output folder is
/// what leaves the sandbox through egress, so it is the one the analyst must clear first (a run
/// is stopped at the first quota it passes; both are named only when a quick writer passed
/// both before its last measurement).
pub fn recorded_outcome(facts: &Facts) -> Outcome {
    match &facts.end {
        None | Some(RunState::Missing) => Outcome::Vanished,
        Some(RunState::Exited { code, oom_killed }) => {
            if facts.cancelled {
                Outcome::Cancelled
            } else if facts.timed_out {
                Outcome::TimedOut
            } else if facts.over_output_quota {
                Outcome::OutputQuotaExceeded
            } else if facts.over_work_quota {
                Outcome::WorkQuotaExceeded
            } else if *oom_killed {
                Outcome::OomKilled
            } else if facts.over_log {
                Outcome::LogLimitExceeded
            } else {
                Outcome::Exited { code: *code }
            }
        }
        Some(other) => Outcome::Failed {
            reason: format!("the container is {other:?} after its wait ended"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Something that can happen to a run: its name, how it shows in the facts, and the
    /// outcome it gives alone.
    type Happening = (&'static str, fn(&mut Facts), &'static str);

    /// What can happen to a run that exited, highest precedence first.
    const EXITED: [Happening; 7] = [
        ("cancelled", |f| f.cancelled = true, "cancelled"),
        ("timed out", |f| f.timed_out = true, "timed_out"),
        (
            "over output quota",
            |f| f.over_output_quota = true,
            "output_quota_exceeded",
        ),
        (
            "over work quota",
            |f| f.over_work_quota = true,
            "work_quota_exceeded",
        ),
        ("oom killed", |f| set_oom(f), "oom_killed"),
        ("over log", |f| f.over_log = true, "log_limit_exceeded"),
        ("exited", |_| {}, "exited"),
    ];

    fn set_oom(f: &mut Facts) {
        if let Some(RunState::Exited { oom_killed, .. }) = &mut f.end {
            *oom_killed = true;
        }
    }

    fn exited(code: i64) -> Facts {
        Facts {
            end: Some(RunState::Exited {
                code,
                oom_killed: false,
            }),
            ..Facts::default()
        }
    }

    #[test]
    fn each_alone_gives_its_own_outcome() {
        for (what, set, expected) in EXITED {
            let mut f = exited(3);
            set(&mut f);
            assert_eq!(recorded_outcome(&f).as_str(), expected, "{what}");
        }
        assert_eq!(recorded_outcome(&exited(3)), Outcome::Exited { code: 3 });
    }

    #[test]
    fn of_two_that_happened_the_higher_one_is_recorded() {
        for (i, (high, set_high, expected)) in EXITED.iter().enumerate() {
            for (low, set_low, _) in &EXITED[i + 1..] {
                let mut f = exited(1);
                set_low(&mut f);
                set_high(&mut f);
                assert_eq!(
                    recorded_outcome(&f).as_str(),
                    *expected,
                    "{high} over {low}"
                );
            }
        }
    }

    #[test]
    fn a_container_without_an_end_of_its_own_overrides_everything() {
        let no_exit = [
            (None, "vanished"),
            (Some(RunState::Missing), "vanished"),
            (Some(RunState::Running), "failed"),
            (Some(RunState::Created), "failed"),
        ];
        for (end, expected) in no_exit {
            for (what, set, _) in EXITED {
                let mut f = Facts {
                    end: end.clone(),
                    ..Facts::default()
                };
                set(&mut f);
                assert_eq!(
                    recorded_outcome(&f).as_str(),
                    expected,
                    "{end:?} with {what}"
                );
            }
        }
        let f = Facts {
            end: Some(RunState::Running),
            timed_out: true,
            ..Facts::default()
        };
        assert_eq!(
            recorded_outcome(&f),
            Outcome::Failed {
                reason: "the container is Running after its wait ended".into()
            }
        );
    }
}
