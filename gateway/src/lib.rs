//! VRE Gateway: the `vre` binary's library.
//!
//! One process is both the server and its command-line client.
//!
//! Layout:
//! - `cli`: the command line, server and client commands.
//! - `startup`: `Application::build` and `run_until_stopped`; `connections`: what every
//!   connection goes through below HTTP (the cap, the idle timeout).
//! - `config`: layered settings (defaults, TOML, `VRE_*`).
//! - `api`: the HTTP routes, thin: parse, call one service, shape the answer; `error` is
//!   their one error type.
//! - `service`: the workflows, one module per area, shared by every door (API, pages, jobs):
//!   each checks access, asks `policy`, and writes with its audit events.
//! - `auth`: JWT verification and local issuance; `keys`: key files and the TLS certificate.
//! - `db`: the pool and write transactions; `store`: the SQL; `audit`: the hash-chained log.
//! - `blobs`: the content-addressed store; `ingress`: archives streamed in and validated;
//!   `metrics`: Prometheus counters.
//! - `wire`: the request and response bodies of the API, shared by the server and the client.
//! - `sandboxes`: the run queue and supervisor over `sandbox-runner`, recovery at start, and
//!   the ownership of runs by one gateway at a time when several share the database.
//! - `workers`: every background task, named, told when the gateway stops and waited for.
//!
//! The rules themselves (who may do what, how an application moves) live in the `policy`
//! crate; this crate loads facts, asks `policy`, and records the answer.

pub mod api;
pub mod audit;
pub mod auth;
pub mod blobs;
pub mod cli;
pub mod client;
pub mod config;
pub mod connections;
pub mod db;
pub mod egress;
pub mod error;
pub mod ingress;
pub mod keys;
pub mod metrics;
pub mod oidc;
pub mod release;
pub mod sandboxes;
pub mod service;
pub mod startup;
pub mod state;
pub mod store;
pub mod time;
pub mod upload;
pub mod web;
pub mod wire;
pub mod workers;

/// A mutex's guard, poisoned or not: no holder panics with the data half-changed.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// SHA-256 in lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
