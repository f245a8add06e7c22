//! Presubmit: what a manifest change adds, checked before anyone merges it.
//!
//! `ferry check` (and the pipeline's `check` stage) run the same steps as a promotion, and
//! write nothing:
//! 0. [`reach::screen`] what the change adds, before any request: a source outside
//!    `check.allowed-sources` or a registry host the [`Reach`] does not allow is a failed
//!    problem and is never contacted (the change is hostile input);
//! 1. plan what the change adds (the diff of the inputs between base and head), which says
//!    what each destination would get: a copy, a tag, a conflict with a tag Ferry would never
//!    overwrite, an overlap, a refused prerelease;
//! 2. [`gather`] the verifier's facts about each new digest (manifest and children read and
//!    hashed, the source tag resolved again, signatures, attestations and bundles);
//! 3. [`decide`], a pure function, checks each new digest with the source's trust policy and
//!    the [`RepositoryPolicy`], and lints the head, giving a [`Report`].
//!
//! [`check`] runs the three in order, for `ferry check` and the checker stage alike.
//! [`render`] writes it as Markdown, JSON or JUnit, and [`github`] posts it as a check run.
//!
//! Architecture invariant: a check never writes to a registry, and contacts no host the `Reach` does not allow: screened before any request, guarded in the client.
//! Architecture invariant: a check never resolves credentials the head names.

mod decide;
mod gather;
pub mod github;
pub mod policy;
pub mod reach;
pub mod render;
pub mod report;

pub use decide::{CHECKS, Change, Facts, decide};
pub use gather::{check, gather};
pub use policy::RepositoryPolicy;
pub use reach::Reach;
pub use report::{Conclusion, DigestReport, Problem, Report};

#[cfg(test)]
mod tests;
