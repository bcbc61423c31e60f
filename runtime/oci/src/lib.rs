//! Stage components shared the way container images are: published to an
//! OCI registry (or an image-layout folder, a registry with no server),
//! referenced by name, pinned by digest in `cairn.lock`, and kept in the
//! content-addressed store once pulled, so a pinned pipeline runs offline.
//!
//! - [`reference`] parses `oci://` and `oci-layout://` references;
//! - [`artifact`] packs and checks the wasm OCI artifact (manifest, config, one layer);
//! - [`registry`] and [`layout`] are the two places artifacts are stored;
//! - [`credentials`] reads docker's config file and credential helpers;
//! - [`lockfile`] reads and writes `cairn.lock`;
//! - [`resolve`] goes from the `uses` of a pipeline to verified component bytes;
//! - [`publish`] goes from a component to a pushed artifact.
//!
//! Nothing fetched is trusted: a manifest must match the digest it was asked
//! by, the component must match the manifest's layer digest and size, and a
//! pinned component must match the blake3 digest `cairn.lock` recorded.

pub mod artifact;
pub mod credentials;
pub mod layout;
pub mod lockfile;
pub mod publish;
pub mod reference;
pub mod registry;
pub mod resolve;
mod sha256;

use std::path::PathBuf;

pub use reference::{Location, OciReference, ReferenceError};
pub use sha256::{Sha256, Sha256ParseError};

use cairn_cas::StoreError;

/// Why a component could not be published, resolved or fetched.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// The reference is malformed.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// Bytes did not match the digest they were fetched by: never used.
    #[error("{what} does not match its digest: expected {expected}, got {actual}; refusing to use it")]
    DigestMismatch {
        /// What was checked.
        what: String,
        /// The digest it should have.
        expected: String,
        /// The digest it has.
        actual: String,
    },
    /// The artifact is not a wasm component artifact.
    #[error("`{reference}` is not a wasm component artifact: {problem}")]
    NotAComponent {
        /// The reference.
        reference: String,
        /// What it is instead.
        problem: String,
    },
    /// The registry could not be reached at all.
    #[error("cannot reach the registry `{host}`: {problem}{}", hint.as_ref().map(|hint| format!("\nhint: {hint}")).unwrap_or_default())]
    Unreachable {
        /// The registry.
        host: String,
        /// What the connection said.
        problem: String,
        /// What might fix it.
        hint: Option<String>,
    },
    /// The registry wants credentials, or refused the ones cairn sent.
    #[error("the registry `{host}` refused {credentials}\nhint: {hint}")]
    Unauthorized {
        /// The registry.
        host: String,
        /// Which credentials were sent (`anonymous access`, `the credentials of user \`ci\` from ...`).
        credentials: String,
        /// What to do.
        hint: String,
    },
    /// The tag, digest or repository does not exist.
    #[error("`{reference}` does not exist in {place}")]
    NotFound {
        /// The reference.
        reference: String,
        /// The registry or layout folder.
        place: String,
    },
    /// The registry answered with something cairn cannot use.
    #[error("the registry `{host}` failed: {problem}")]
    Registry {
        /// The registry.
        host: String,
        /// What it said.
        problem: String,
    },
    /// An image-layout folder cannot be read or written.
    #[error("cannot use the OCI layout folder `{path}`: {problem}")]
    Layout {
        /// The folder.
        path: PathBuf,
        /// What went wrong.
        problem: String,
    },
    /// Docker's credentials cannot be read or written.
    #[error("cannot use the registry credentials in `{path}`: {problem}")]
    Credentials {
        /// The config file (or helper).
        path: PathBuf,
        /// What went wrong.
        problem: String,
    },
    /// `cairn.lock` cannot be read or written.
    #[error("cannot use `{path}`: {problem}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// What went wrong.
        problem: String,
    },
    /// `--locked` was given and the lock file would change.
    #[error(
        "`{path}` is out of date and --locked forbids changing it:\n{}\nhint: run `cairn lock` (or `cairn run` without --locked) and commit `{}`",
        changes.iter().map(|change| format!("  {change}")).collect::<Vec<_>>().join("\n"),
        path.file_name().map(|name| name.to_string_lossy()).unwrap_or_default()
    )]
    LockOutdated {
        /// The lock file.
        path: PathBuf,
        /// What would change, one line each.
        changes: Vec<String>,
    },
    /// The cache could not store or read a component.
    #[error(transparent)]
    Store(#[from] StoreError),
}
