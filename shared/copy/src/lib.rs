//! Ferry's copier.
//!
//! [`Copier::copy`] makes one manifest (with everything it references) exist at a destination
//! and writes its tags; [`Copier::promote`] does that for every edge of a plan that needs work.
//!
//! - Order: blobs first, then child manifests, then the index, then the tags. A manifest is
//!   pushed only when everything it references is there, and a tag only when the manifest is.
//! - Manifests are pushed as the exact bytes read from the source.
//! - A blob the destination already has is not transferred. One on the same registry host,
//!   in the source or in another destination repository Ferry already filled, is mounted.
//!   Anything else is streamed with its bytes hashed on the way (see `ferry_registry::write`).
//!   The same blob is never transferred twice at once to one host: concurrent requests for it
//!   wait for the first and then mount.
//! - A tag is written only if it is absent or already points at the digest: it is re-read
//!   immediately before the `PUT`, and read back after it.
//!
//! # Layout
//! - [`copier`]: `Copier`, `CopyOptions`, `Job`.
//! - [`promote`](mod@promote): turning a plan into jobs and running them.
//! - [`stats`]: counters a progress display reads.
//! - `error`: `CopyError`.
//!
//! Architecture invariant: a tag is written last, only after every blob and child manifest are in the destination, and only if absent or already right.
//! Architecture invariant: every streamed blob byte is hashed; a blob is never held whole in memory.

pub mod copier;
mod error;
pub mod promote;
pub mod stats;

pub use copier::{Copier, CopyOptions, Done, Job, JobOutcome};
pub use error::CopyError;
pub use promote::{EdgeOutcome, PromotionReport, promote};
pub use stats::CopyStats;
