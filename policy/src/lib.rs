//! The pure rules of VRE Gateway.
//!
//! This crate decides; it never acts. It holds who may do what ([`access`]), how an application to
//! the committee moves between states and when a quorum is reached ([`review`]), and the typed
//! names the rest of the system speaks in ([`roles`], [`ids`]), and which programs a run may start
//! ([`commands`]).
//! A dataset's data management plan, its common metadata items and AMED management category,
//! is parsed and checked in [`dmp`].
//! The automatic disclosure checks on files that ask to leave the environment are in [`egress`].
//!
//! Architecture invariant: `policy` does no IO. It depends on no async runtime, no HTTP, no SQL and
//! no Docker crate, so every rule here can be tested exhaustively with tables and property tests.
//! A denial or a refusal is a value the caller inspects, never a panic.

pub mod access;
pub mod archive;
pub mod commands;
pub mod dmp;
pub mod egress;
pub mod ids;
pub mod review;
pub mod roles;
