//! Ferry's input formats, parsed strictly into [`ferry_model::DesiredState`].
//!
//! Strict means: unknown fields, a key repeated inside one YAML mapping, and invalid digests,
//! tags or names are errors, and every error names the file, line and field. A file is never
//! half-read: either all of it parses or the caller gets every problem found in it.
//!
//! # Layout
//! - [`kpromo`]: kpromo plain manifests, thin-manifest directories, and the `images.yaml`
//!   writer used by `ferry snapshot`.
//! - [`images_list`]: Rancher image-mirror `images-list` (`<source> <destination> <tag>`).
//! - [`charts`]: Rancher charts `dockerToPrime.yaml` / `stagingToPrime.yaml` with a config that
//!   names the staging, Docker Hub and Prime registries.
//! - [`input`]: the [`Input`] list a command is given, the [`Policy`] applied to every format,
//!   and [`load`].
//! - [`git`]: materialise manifest files as they were at a git revision.
//! - [`revision`]: desired state at two revisions, parsing only what a change touched.
//! - [`yaml`]: the strict YAML plumbing shared with the config file (options, ordered mappings,
//!   error conversion).
//!
//! Architecture invariant: this crate holds formats only: one reader per input format (`load`), and no registry, network or discovery code.
//! Architecture invariant: a bad entry never blocks another: an invalid digest, tag or name is a `Notice` of kind `Invalid` excluding only its edges.
//! Architecture invariant: paths from git are bytes to the reader (`git`); a name Ferry cannot name is reported, never decoded lossily.

pub mod charts;
mod error;
pub mod git;
pub mod images_list;
pub mod import;
pub mod input;
pub mod kpromo;
pub mod rancher;
pub mod regsync;
pub mod revision;
pub mod semver_range;
pub mod yaml;

pub use error::ManifestError;
pub use input::{Input, Loaded, Policy, load, strict};

#[cfg(test)]
mod tests;
