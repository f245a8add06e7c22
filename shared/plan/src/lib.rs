//! Ferry's planner.
//!
//! Planning is two steps. [`facts::gather`] asks the registries exactly what the plan needs to
//! know (one manifest request per edge at most when nothing is missing) and records the
//! answers in [`Facts`]. [`plan()`] is then a pure function of (desired state, facts): it gives
//! every edge one [`Action`]. A bad edge (a conflict, a missing source, two digests aimed at
//! one tag) is reported and excluded; it never blocks the others.
//!
//! # Layout
//! - [`facts`]: `Facts` and the lookups that fill it.
//! - [`plan`](mod@plan): `plan()`, `Plan`, `PlannedEdge`, `Action`.
//! - [`diff`]: diff-only planning between two desired states.
//! - [`snapshot`]: the images of a registry, in `images.yaml` form.
//!
//! Architecture invariant: planning never writes to a registry: `gather` issues only `HEAD` and `GET`, and `plan` is pure.

pub mod diff;
pub mod facts;
pub mod plan;
pub mod snapshot;

pub use diff::diff;
pub use facts::{Facts, GatherOptions, LookupFailure, gather};
pub use plan::{Action, Plan, PlannedEdge, plan};

#[cfg(test)]
mod tests;
