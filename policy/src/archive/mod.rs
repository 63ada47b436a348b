//! Archives that enter the environment: a strict streaming tar reader ([`tar`]), the rules every
//! entry must obey ([`rules`]), and the automatic checks that inform reviewers ([`checks`]).
//!
//! All of it is push-based and pure: the caller feeds bytes as they arrive from the network, in
//! chunks of any size, and gets entries, their data and, on the first broken rule, a
//! [`Violation`](rules::Violation) naming the entry and the rule. Nothing here reads a file.

pub mod checks;
pub mod rules;
pub mod tar;
