//! Egress: results leaving a sandbox's output folder, only through the committee's approval.
//!
//! `quarantine` takes the files a request names out of the folder (the tar stream of
//! `SandboxBackend::download_output`) into the blob store, each hashed and looked at by the
//! caller's checks on the way, refusing every entry that is not a regular file. `builder` is
//! the background worker that packages an approved request into its release. The workflows
//! (request, review, download) are in `service::egress`.

pub mod builder;
pub mod payload;
pub mod quarantine;
