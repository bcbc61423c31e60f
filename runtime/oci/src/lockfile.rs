//! `cairn.lock`: the exact component behind every remote `uses` of a
//! pipeline, so a tag moved in the registry changes nothing until someone
//! runs `cairn lock --update` and commits the result.
//!
//! ```toml
//! version = 1
//!
//! [[component]]
//! uses = "oci://ghcr.io/acme/wc:1"
//! manifest = "sha256:..."   # what the tag named when it was pinned
//! layer = "sha256:..."      # the component inside that manifest
//! size = 123456
//! content = "blake3:..."    # the same bytes as cairn's store names them
//! ```
//!
//! Entries are sorted by `uses` and the file is rewritten only when a pin
//! changes, so it diffs cleanly in review.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{OciError, Sha256};
use cairn_core::Digest;
use cairn_core::cache_dir::write_atomically;

/// The format version this cairn writes and reads.
pub const LOCK_VERSION: u32 = 1;

const HEADER: &str = "\
# The exact component behind each remote `uses` of the pipeline, written by
# cairn. Commit this file. `cairn lock --update` re-resolves the tags.
";

/// One pinned component.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pin {
    /// The manifest digest the reference resolved to.
    pub manifest: Sha256,
    /// The component layer of that manifest.
    pub layer: Sha256,
    /// The component's size in bytes.
    pub size: u64,
    /// The component's blake3 digest: its name in cairn's store.
    pub content: Digest,
}

/// A lock file, read or about to be written.
#[derive(Clone, Debug)]
pub struct LockFile {
    /// Where it lives.
    pub path: PathBuf,
    /// Pins by reference, as written in `uses`.
    pub pins: BTreeMap<String, Pin>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFormat {
    version: u32,
    #[serde(default)]
    component: Vec<EntryFormat>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryFormat {
    uses: String,
    manifest: Sha256,
    layer: Sha256,
    size: u64,
    content: Digest,
}

impl LockFile {
    /// The lock file of the pipeline file `pipeline` (`cairn.toml` → `cairn.lock`).
    pub fn path_for(pipeline: &Path) -> PathBuf {
        pipeline.with_extension("lock")
    }

    /// Reads `path`; a missing file is an empty lock.
    pub fn load(path: &Path) -> Result<Self, OciError> {
        let error = |problem: String| OciError::Lock {
            path: path.to_owned(),
            problem,
        };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(io) if io.kind() == std::io::ErrorKind::NotFound => {
                return Ok(LockFile {
                    path: path.to_owned(),
                    pins: BTreeMap::new(),
                });
            }
            Err(io) => return Err(error(io.to_string())),
        };
        let broken = |problem: String| {
            error(format!(
                "{problem}\nhint: fix it, or delete it and run `cairn lock` to pin every component again \
                 (to what their tags name now)"
            ))
        };
        let file: FileFormat =
            toml::from_str(&text).map_err(|parse| broken(format!("it is not a valid lock file: {parse}")))?;
        if file.version != LOCK_VERSION {
            return Err(broken(format!(
                "it has version {}, and this cairn reads version {LOCK_VERSION}",
                file.version
            )));
        }
        let mut pins = BTreeMap::new();
        for entry in file.component {
            let pin = Pin {
                manifest: entry.manifest,
                layer: entry.layer,
                size: entry.size,
                content: entry.content,
            };
            if pins.insert(entry.uses.clone(), pin).is_some() {
                return Err(broken(format!("it pins `{}` twice", entry.uses)));
            }
        }
        Ok(LockFile {
            path: path.to_owned(),
            pins,
        })
    }

    /// The file's text.
    pub fn render(&self) -> String {
        let file = FileFormat {
            version: LOCK_VERSION,
            component: self
                .pins
                .iter()
                .map(|(uses, pin)| EntryFormat {
                    uses: uses.clone(),
                    manifest: pin.manifest,
                    layer: pin.layer,
                    size: pin.size,
                    content: pin.content,
                })
                .collect(),
        };
        let body =
            toml::to_string(&file).unwrap_or_else(|error| unreachable!("a lock file always serializes: {error}"));
        format!("{HEADER}{body}")
    }

    /// Writes the file atomically.
    pub fn save(&self) -> Result<(), OciError> {
        write_atomically(&self.path, self.render().as_bytes()).map_err(|error| OciError::Lock {
            path: self.path.clone(),
            problem: error.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin(seed: &[u8]) -> Pin {
        Pin {
            manifest: Sha256::of(seed),
            layer: Sha256::of(&[seed, b"layer"].concat()),
            size: seed.len() as u64,
            content: Digest::of(seed),
        }
    }

    #[test]
    fn a_lock_file_round_trips_sorted() {
        let folder = tempfile::tempdir().unwrap();
        let path = LockFile::path_for(&folder.path().join("cairn.toml"));
        assert_eq!(path.file_name().unwrap(), "cairn.lock");
        let mut lock = LockFile::load(&path).unwrap();
        assert!(lock.pins.is_empty());
        lock.pins.insert("oci://localhost:5000/z:1".into(), pin(b"z"));
        lock.pins.insert("oci-layout://./stages:a".into(), pin(b"a"));
        lock.save().unwrap();

        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# The exact component"));
        assert!(text.find("oci-layout://./stages:a").unwrap() < text.find("oci://localhost:5000/z:1").unwrap());
        let again = LockFile::load(&path).unwrap();
        assert_eq!(again.pins, lock.pins);
        assert_eq!(again.render(), text);
    }

    #[test]
    fn a_broken_lock_file_names_the_problem() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("cairn.lock");
        for (text, problem) in [
            ("version = 1\n[[component]]\nuses = 3\n", "not a valid lock file"),
            ("version = 9\n", "version 9"),
            (
                "version = 1\n[[component]]\nuses = \"x\"\nmanifest = \"sha256:12\"\n",
                "not a valid lock file",
            ),
        ] {
            std::fs::write(&path, text).unwrap();
            let error = LockFile::load(&path).unwrap_err().to_string();
            assert!(error.contains(problem), "{text}: {error}");
            assert!(error.contains("cairn.lock"), "{error}");
        }
    }

    proptest::proptest! {
        /// Fuzz target: a damaged `cairn.lock` is an error that names it,
        /// never a panic.
        #[test]
        fn fuzz_lock_files(edits in cairn_core::mutate::edits()) {
            let folder = tempfile::tempdir().expect("tempdir");
            let path = folder.path().join("cairn.lock");
            let mut lock = LockFile::load(&path).expect("empty");
            lock.pins.insert("oci://localhost:5000/z:1".into(), pin(b"z"));
            lock.save().expect("saved");
            let saved = std::fs::read(&path).expect("read");
            std::fs::write(&path, cairn_core::mutate::mutate(&saved, &edits)).expect("write");
            if let Err(error) = LockFile::load(&path) {
                proptest::prop_assert!(error.to_string().contains("cairn.lock"));
            }
        }
    }
}
