//! Integration tests of the gateway: one test binary, one module per concern.
//!
//! Each test starts a real gateway (HTTPS on a free loopback port, its own data dir and its own
//! database) through `support::TestApp`. Storage-touching tests run once per engine:
//! SQLite always, PostgreSQL when `VRE_TEST_POSTGRES_URL` names a server (CI sets it, and sets
//! `VRE_TEST_REQUIRE_POSTGRES=1` so a missing server fails instead of skipping).

#![allow(unreachable_pub)]

mod engine_objects;
mod support;

mod access;
mod access_terms;
mod applications;
mod audit_tamper;
mod authz;
mod catalog;
mod commands;
mod concurrency;
mod dataset_upload;
mod datasets;
mod egress;
mod egress_boundary;
mod egress_cli;
mod egress_copy;
mod extension;
mod ingress;
mod jwt;
mod limits;
mod lists;
mod owners;
mod release_crash;
mod replicas;
mod restart;
mod run_output;
mod sandbox;
mod web;
