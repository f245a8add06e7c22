//! One definition of a promotion.
//!
//! A promotion is one digest from one source and every destination it goes to, the first
//! being the primary (where Ferry signs). This crate is the only place that says what happens
//! to one:
//! - [`group`]: a plan grouped by (source, digest) into verify messages ([`promotions`]);
//! - [`steps`]: each step as a function of a typed message and its ports, returning what it
//!   did and the next messages: verify → copy (primary) → sign → attest → copy (each mirror) →
//!   replicate;
//! - [`reconcile`]: where each promotion stands at every destination, children of an index
//!   included, and the first missing step's message;
//! - [`chain`]: the in-process driver behind `ferry promote --confirm`.
//!
//! The pipeline's stage crates (`functions/*`) wrap the same steps in the runtime's `Stage`.
//!
//! Invariant: the pipeline and `ferry promote --confirm` run the same step functions; neither
//! decides on its own what follows a step.

pub mod chain;
mod error;
pub mod group;
pub mod reconcile;
pub mod steps;

pub use error::PromotionError;
pub use ferry_messages::Next;
pub use group::{Promotions, promotions};
