//! `oci://HOST[:PORT]/REPOSITORY[:TAG][@sha256:DIGEST]` and
//! `oci-layout://PATH[:TAG][@sha256:DIGEST]`: where a published component
//! lives, as written in `uses` or given to `cairn publish`.
//!
//! The host is always explicit (there is no implicit Docker Hub), so a
//! reference reads the same on every machine. A reference with neither tag
//! nor digest means the tag `latest`, as with `docker pull`.

use std::fmt;
use std::path::{Path, PathBuf};

use super::Sha256;

/// The scheme of a registry reference.
pub const REGISTRY_SCHEME: &str = "oci://";
/// The scheme of an image-layout folder reference.
pub const LAYOUT_SCHEME: &str = "oci-layout://";

/// A component published as a wasm OCI artifact.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct OciReference {
    /// The reference exactly as written: its key in `cairn.lock`.
    pub text: String,
    /// The registry repository or the layout folder.
    pub location: Location,
    /// The tag, unless the reference names only a digest.
    pub tag: Option<String>,
    /// The manifest digest, when the reference pins one itself.
    pub digest: Option<Sha256>,
}

/// Where the artifact is stored.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Location {
    /// A repository of an OCI distribution registry.
    Registry {
        /// `host` or `host:port`, as written.
        host: String,
        /// The repository path (`team/stages/wc`).
        repository: String,
    },
    /// An OCI image-layout folder (the `oci-layout` spec): a registry with no server.
    Layout {
        /// The folder, made absolute against the folder the reference was written in.
        path: PathBuf,
    },
}

/// Why a reference cannot be used, with what would fix it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{text}`: {problem}\nhint: {hint}")]
pub struct ReferenceError {
    /// The reference as written.
    pub text: String,
    /// What is wrong.
    pub problem: String,
    /// The shape that would work.
    pub hint: &'static str,
}

const REGISTRY_HINT: &str = "write `oci://HOST[:PORT]/REPOSITORY:TAG`, optionally followed by `@sha256:DIGEST`";
const LAYOUT_HINT: &str = "write `oci-layout://PATH:TAG`, optionally followed by `@sha256:DIGEST`";

impl OciReference {
    /// Whether `text` is meant as an OCI reference (its scheme), valid or not.
    pub fn is_oci(text: &str) -> bool {
        text.starts_with(REGISTRY_SCHEME) || text.starts_with(LAYOUT_SCHEME)
    }

    /// Parses `text`; a layout path is taken relative to `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Self, ReferenceError> {
        let error = |problem: String, hint| ReferenceError {
            text: text.to_owned(),
            problem,
            hint,
        };
        if let Some(rest) = text.strip_prefix(LAYOUT_SCHEME) {
            let (rest, digest) = split_digest(rest).map_err(|problem| error(problem, LAYOUT_HINT))?;
            let (path, tag) = split_tag(rest);
            if path.is_empty() {
                return Err(error("the layout folder is missing".to_owned(), LAYOUT_HINT));
            }
            let tag = check_tag(tag, digest.is_some()).map_err(|problem| error(problem, LAYOUT_HINT))?;
            return Ok(OciReference {
                text: text.to_owned(),
                location: Location::Layout { path: base.join(path) },
                tag,
                digest,
            });
        }
        let Some(rest) = text.strip_prefix(REGISTRY_SCHEME) else {
            return Err(error(
                "not an OCI reference (it starts with neither `oci://` nor `oci-layout://`)".to_owned(),
                REGISTRY_HINT,
            ));
        };
        let (rest, digest) = split_digest(rest).map_err(|problem| error(problem, REGISTRY_HINT))?;
        let Some((host, path)) = rest.split_once('/') else {
            return Err(error(
                "it names no repository after the registry host".to_owned(),
                REGISTRY_HINT,
            ));
        };
        check_host(host).map_err(|problem| error(problem, REGISTRY_HINT))?;
        let (repository, tag) = split_tag(path);
        check_repository(repository).map_err(|problem| error(problem, REGISTRY_HINT))?;
        let tag = check_tag(tag, digest.is_some()).map_err(|problem| error(problem, REGISTRY_HINT))?;
        Ok(OciReference {
            text: text.to_owned(),
            location: Location::Registry {
                host: host.to_owned(),
                repository: repository.to_owned(),
            },
            tag,
            digest,
        })
    }

    /// The registry host, for a registry reference.
    pub fn host(&self) -> Option<&str> {
        match &self.location {
            Location::Registry { host, .. } => Some(host),
            Location::Layout { .. } => None,
        }
    }

    /// What the tag or digest is looked up as: the digest when pinned, else the tag.
    pub fn tag_or_digest(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => digest.to_string(),
            (None, Some(tag)) => tag.clone(),
            (None, None) => "latest".to_owned(),
        }
    }

    /// This reference pinned to `digest` (`...:TAG@sha256:...`), for messages.
    pub fn pinned_text(&self, digest: &Sha256) -> String {
        let unpinned = match self.text.rfind('@') {
            Some(at) if self.digest.is_some() => &self.text[..at],
            _ => &self.text,
        };
        format!("{unpinned}@{digest}")
    }
}

impl fmt::Display for OciReference {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.text)
    }
}

/// Splits `...@sha256:HEX` into the rest and the digest.
fn split_digest(text: &str) -> Result<(&str, Option<Sha256>), String> {
    match text.rsplit_once('@') {
        Some((rest, digest)) => digest
            .parse()
            .map(|digest| (rest, Some(digest)))
            .map_err(|_| format!("`{digest}` is not a digest (cairn pins `sha256:` and 64 lower-case hex digits)")),
        None => Ok((text, None)),
    }
}

/// Splits `path:tag` at a colon in the last path segment (a colon earlier is
/// part of the path, or a port).
fn split_tag(text: &str) -> (&str, Option<&str>) {
    let segment_start = text.rfind('/').map_or(0, |slash| slash + 1);
    match text[segment_start..].rfind(':') {
        Some(colon) => (&text[..segment_start + colon], Some(&text[segment_start + colon + 1..])),
        None => (text, None),
    }
}

/// The tag to use: the written one (checked), `latest` when there is no
/// digest either, none for a digest-only reference.
fn check_tag(tag: Option<&str>, has_digest: bool) -> Result<Option<String>, String> {
    let Some(tag) = tag else {
        return Ok((!has_digest).then(|| "latest".to_owned()));
    };
    let valid = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'-'))
        && !tag.starts_with(['.', '-']);
    if valid {
        Ok(Some(tag.to_owned()))
    } else {
        Err(format!(
            "`{tag}` is not a valid tag (letters, digits, `_`, `.` and `-`, at most 128, not starting with `.` or `-`)"
        ))
    }
}

fn check_host(host: &str) -> Result<(), String> {
    let (name_ok, port) = match host.strip_prefix('[').and_then(|rest| rest.split_once(']')) {
        Some((inner, rest)) => (
            inner.parse::<std::net::Ipv6Addr>().is_ok(),
            (!rest.is_empty()).then(|| rest.strip_prefix(':').unwrap_or("")),
        ),
        None => {
            let (name, port) = host
                .split_once(':')
                .map_or((host, None), |(name, port)| (name, Some(port)));
            let label_ok = |label: &str| {
                !label.is_empty() && label.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
            };
            (name.split('.').all(label_ok), port)
        }
    };
    let port_ok = port.is_none_or(|port| port.parse::<u16>().is_ok_and(|port| port > 0));
    if name_ok && port_ok {
        Ok(())
    } else {
        Err(format!(
            "`{host}` is not a registry host (`name`, `name:port` or `[ipv6]:port`)"
        ))
    }
}

/// Repository paths as the distribution spec allows them: lower-case
/// components separated by `/`, each of letters and digits joined by `.`,
/// `_`, `__` or dashes.
fn check_repository(repository: &str) -> Result<(), String> {
    let component_ok = |component: &str| {
        let bytes = component.as_bytes();
        let separator = |byte: u8| matches!(byte, b'.' | b'_' | b'-');
        !bytes.is_empty()
            && bytes
                .iter()
                .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || separator(*byte))
            && !separator(bytes[0])
            && !separator(bytes[bytes.len() - 1])
            && !component.contains("..")
            && !component.contains("___")
    };
    if !repository.is_empty() && repository.len() <= 255 && repository.split('/').all(component_ok) {
        Ok(())
    } else {
        Err(format!(
            "`{repository}` is not a repository name (lower-case letters, digits, `.`, `_` and `-`, in `/`-separated parts)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn parse(text: &str) -> Result<OciReference, ReferenceError> {
        OciReference::parse(text, Path::new("/pipeline"))
    }

    #[test]
    fn registry_references_split_into_host_repository_tag_and_digest() {
        let reference = parse("oci://127.0.0.1:5000/team/stages/wc:1.2").unwrap();
        assert_eq!(
            reference.location,
            Location::Registry {
                host: "127.0.0.1:5000".into(),
                repository: "team/stages/wc".into()
            }
        );
        assert_eq!(reference.tag.as_deref(), Some("1.2"));
        assert_eq!(reference.digest, None);

        let pinned = parse(&format!("oci://ghcr.io/acme/wc:1@{DIGEST}")).unwrap();
        assert_eq!(pinned.tag.as_deref(), Some("1"));
        assert_eq!(pinned.digest.unwrap().to_string(), DIGEST);
        assert_eq!(pinned.tag_or_digest(), DIGEST);

        let digest_only = parse(&format!("oci://[::1]:5000/wc@{DIGEST}")).unwrap();
        assert_eq!(digest_only.tag, None);
        assert_eq!(digest_only.host(), Some("[::1]:5000"));

        assert_eq!(parse("oci://localhost/wc").unwrap().tag.as_deref(), Some("latest"));
    }

    #[test]
    fn layout_references_resolve_their_folder_against_the_base() {
        let reference = parse("oci-layout://./registry:wc-1").unwrap();
        assert_eq!(
            reference.location,
            Location::Layout {
                path: PathBuf::from("/pipeline/./registry")
            }
        );
        assert_eq!(reference.tag.as_deref(), Some("wc-1"));
        let nested = parse("oci-layout:///srv/oci:8080/layout").unwrap();
        assert_eq!(
            nested.location,
            Location::Layout {
                path: PathBuf::from("/srv/oci:8080/layout")
            }
        );
        assert_eq!(nested.tag.as_deref(), Some("latest"));
    }

    #[test]
    fn pinned_text_replaces_an_existing_digest() {
        let reference = parse("oci://localhost:5000/wc:1").unwrap();
        let digest: Sha256 = DIGEST.parse().unwrap();
        assert_eq!(
            reference.pinned_text(&digest),
            format!("oci://localhost:5000/wc:1@{DIGEST}")
        );
        let pinned = parse(&reference.pinned_text(&digest)).unwrap();
        assert_eq!(pinned.pinned_text(&digest), reference.pinned_text(&digest));
    }

    #[test]
    fn malformed_references_say_what_is_wrong() {
        for (text, problem) in [
            ("oci://wc:1", "no repository"),
            ("oci:///wc:1", "not a registry host"),
            ("oci://host:99999/wc", "not a registry host"),
            ("oci://ghcr.io/Acme/wc:1", "not a repository name"),
            ("oci://ghcr.io/acme//wc:1", "not a repository name"),
            ("oci://ghcr.io/acme/wc:", "not a valid tag"),
            ("oci://ghcr.io/acme/wc:-x", "not a valid tag"),
            ("oci://ghcr.io/acme/wc@sha256:abc", "not a digest"),
            ("oci-layout://:tag", "layout folder is missing"),
        ] {
            let error = parse(text).unwrap_err();
            assert!(error.problem.contains(problem), "{text}: {}", error.problem);
            assert!(error.to_string().starts_with(&format!("`{text}`")));
        }
    }
}
