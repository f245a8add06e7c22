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
//!
//! Architecture invariant: a value of a model type is valid: `Digest`, `Tag`, `Host`, `RepoPath` and the rest are checked when built, deserialised included, and never re-checked.
//! Architecture invariant: a `Host` has one spelling per host: Docker Hub's three names are `docker.io`, IPv6 is canonical, and numeric or IPv4-as-IPv6 spellings of an address are refused.
//! Architecture invariant: `Source::new` is the one rule of source trust: Docker Hub is never trusted.
//! Architecture invariant: text from outside is printed through `shown`, which is idempotent.

pub mod check;
pub mod desired;
pub mod digest;
pub mod edge;
mod error;
pub mod link;
pub mod name;
pub mod reference;
pub mod shown;
pub mod tag;
pub mod url;

pub use check::CheckName;
pub use desired::{DesiredState, Destination, Entry, Notice, NoticeKind, Source, TagOrDigest};
pub use digest::Digest;
pub use edge::{Edge, Origin};
pub use error::ModelError;
pub use name::{Host, RegistryPath, RepoPath, Repository, Reserved, reserved_address};
pub use reference::ImageRef;
pub use shown::{Shown, escaped};
pub use tag::Tag;
