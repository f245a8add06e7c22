//! Registry access for Ferry.
//!
//! [`Registry`] is the narrow port the planner and stages read through; [`OciRegistry`] is its
//! adapter for the OCI distribution API. Every request passes through one transport that
//! authenticates (anonymous, basic, or bearer tokens from the registry's challenge), limits the
//! request rate per host and adapts it on HTTP 429, honours `Retry-After`, and retries
//! transient failures with jittered exponential backoff within a time budget. Failures come out
//! as [`RegistryError`]s with an [`ErrorClass`] the pipeline routes on.
//!
//! # Layout
//! - [`client`]: the `Registry` trait (reads) and `OciRegistry`.
//! - [`write`]: the `RegistryWrite` trait: streamed, hashed blob transfers and mounts,
//!   byte-exact manifest pushes.
//! - [`manifest`]: raw manifests, digest checks, and parsing of children and blobs.
//! - [`transport`]: HTTP, auth handshake, retries.
//! - [`limiter`]: the adaptive per-host rate limiter.
//! - [`auth`]: credentials (`config.json` format) and the `WWW-Authenticate` parser.
//! - [`inventory`]: what a repository holds from one listing (the extended `tags/list` of
//!   GCR and Artifact Registry, else the OCI tag list).
//! - [`guard`]: which hosts a transport may reach when registry names come from untrusted
//!   input (presubmit): checked before any request and again when a name is resolved.
//! - `error`: `RegistryError` and `ErrorClass`.
//!
//! Architecture invariant: every registry request goes through `transport::Transport` (auth, rate limit, retries, the host guard).
//! Architecture invariant: no code path issues a manifest `PUT` to a tag that exists with another digest; a `sha256-<hex>` referrers tag is written only with a superset of what it held.
//! Architecture invariant: credentials live in `Secret`; no error variant carries a header.
//! Architecture invariant: a guarded transport (`HostGuard`) contacts no host outside its allowed set and no reserved address the configuration does not name.

pub mod auth;
mod cache;
pub mod client;
mod error;
pub mod guard;
pub mod inventory;
pub mod limiter;
pub mod manifest;
pub mod referrers;
pub mod transport;
pub mod write;

pub use auth::{CredentialSources, Credentials, Secret};
pub use client::{OciRegistry, Registry};
pub use error::{Classify, ErrorClass, RegistryError};
pub use guard::HostGuard;
pub use inventory::{ArtifactTags, Inventory, InventoryKind, InventorySource};
pub use limiter::LimiterConfig;
pub use manifest::{
    Descriptor, MAX_INDEX_CHILDREN, MAX_INDEX_DEPTH, ManifestContent, ManifestHead, RawManifest,
};
pub use referrers::{Referrer, ReferrerWrite, ReferrersMode};
pub use transport::{InventoryDetector, RetryPolicy, TransportConfig};
pub use write::{RegistryWrite, Transfer};
