//! Integration tests against real services. One test binary, one module per area, so that the
//! large dependency tree is linked once.
#![cfg(feature = "services")]
#![allow(clippy::unwrap_used, reason = "test code: a failed unwrap is a failed test")]

mod broker;
mod conformance;
mod copy;
mod demo;
mod discover;
mod hostile;
mod infra;
mod inventory;
mod keyless;
mod lambda;
mod listings;
mod login;
mod mistakes;
mod pipeline;
mod plan;
mod presubmit;
mod referrers;
mod regclient;
mod registry;
mod support;
mod triggers;
mod trust;
