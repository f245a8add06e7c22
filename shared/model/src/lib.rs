//! Ferry's domain model.
//!
//! Every type here is validated when it is built: a [`Digest`] is always `sha256:` plus 64
//! lowercase hex digits, a [`Tag`] always matches the OCI tag grammar, and so on. Code that
//! holds one of these values never re-checks it. Parsing failures are [`ModelError`]s that name
//! the rejected value and the rule it broke.
//!
//! # Layout
//! - [`check`]: the name of every check Ferry makes, one enum (unknown names kept).
//! - [`digest`]: content digests (`sha256:<hex>`), computed or parsed.
//! - [`tag`]: OCI tags and the prerelease rule (`-rc`, `-alpha`, `-beta`).
//! - [`name`]: registry hosts, repository paths, registry prefixes and full repositories.
//! - [`reference`]: image references (`host/path[:tag][@digest]`), strict and Docker-style.
//! - [`edge`]: one promotion edge (source@digest → destination[:tag]) and where it came from.
//! - [`desired`]: the format-independent desired state that every manifest format parses into.
//! - [`shown`]: text from outside, escaped for printing (one helper for logs, reports and the
//!   terminal).

pub mod check;
pub mod desired;
pub mod digest;
pub mod edge;
mod error;
pub mod name;
pub mod reference;
pub mod shown;
pub mod tag;

pub use check::CheckName;
pub use desired::{DesiredState, Destination, Entry, Notice, NoticeKind, Source, TagOrDigest};
pub use digest::Digest;
pub use edge::{Edge, Origin};
pub use error::ModelError;
pub use name::{Host, RegistryPath, RepoPath, Repository, Reserved, reserved_address};
pub use reference::ImageRef;
pub use shown::{Shown, escaped};
pub use tag::Tag;
