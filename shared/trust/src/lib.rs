//! Ferry's trust stages, cosign-compatible.
//!
//! - [`verify`]: fetch the facts about a source image (its manifests, signatures and
//!   attestations), then [`verify::decide`] purely, check by check: pass, warn or fail, each with
//!   a reason.
//! - [`sign`]: sign promoted digests at the primary destination (and each child of an index),
//!   appending to the existing `.sig` manifest, never dropping a layer, never signing twice.
//! - [`attest`]: one promotion attestation per promoted digest (in-toto v1, DSSE-signed, in the
//!   `.att` manifest), idempotent per predicate type.
//! - [`replicate`]: copy `.sig`/`.att`/`.sbom` from the primary destination to mirrors, and
//!   from trusted sources to destinations, replacing a tag only with a superset of its layers.
//! - [`referrers`]: carry OCI 1.1 referrers (Sigstore bundles, SBOMs, any artifact) the same
//!   ways, byte for byte, never dropping an entry of the target's referrers index.
//!
//! # Layout
//! - [`cosign`]: the formats (tags, simple signing, artifact manifests, DSSE, in-toto).
//! - [`keys`]: signing keys (cosign key files, AWS KMS) and verification keys.
//! - [`keyless`]: keyless bundles, verified offline against a trusted root, identity and issuer.
//! - [`policy`]: per-source verification policy.
//! - [`artifacts`]: reading and merging cosign artifact manifests in a registry.
//! - `error`: `TrustError`.
//!
//! Architecture invariant: verification is decided by a pure function (`verify::decide`) of fetched facts and the policy.
//! Architecture invariant: an artifact tag is replaced only by a superset of its layers; no layer is ever dropped.
//! Architecture invariant: a carried referrer names the carried digest as its subject.

pub mod artifacts;
pub mod attest;
pub mod bundle;
pub mod cosign;
mod error;
pub mod formats;
pub mod keyless;
pub mod keys;
pub mod policy;
pub mod referrers;
pub mod replicate;
pub mod sign;
pub mod verify;

pub use error::TrustError;
pub use formats::Formats;

#[cfg(test)]
mod tests;
