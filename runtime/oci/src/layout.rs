//! OCI image-layout folders (the `oci-layout` spec): `oci-layout`,
//! `index.json` naming each tag's manifest, and `blobs/sha256/<hex>`. The
//! same artifacts a registry holds, in a folder: publishing and pinning with
//! no server at all, and a folder `oras`, `skopeo` or `crane` can copy to a
//! registry later.
//!
//! Writers hold a lock on the `oci-layout` file while they rewrite
//! `index.json`, so two `cairn publish` runs into one folder both land.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::artifact::{INDEX_MEDIA_TYPE, MANIFEST_MEDIA_TYPE};
use super::{OciError, Sha256};
use cairn_core::cache_dir::write_atomically;

/// The annotation an index entry carries its tag in.
const REF_NAME: &str = "org.opencontainers.image.ref.name";
const LAYOUT_FILE: &str = "oci-layout";
const INDEX_FILE: &str = "index.json";

/// An image-layout folder.
#[derive(Clone, Debug)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// Opens an existing layout for reading.
    pub fn open(root: &Path) -> Result<Self, OciError> {
        let layout = Layout { root: root.to_owned() };
        if !root.is_dir() {
            return Err(layout.error("it does not exist (publish to it first with `cairn publish`)"));
        }
        let marker = fs::read(root.join(LAYOUT_FILE))
            .map_err(|_| layout.error("it has no `oci-layout` file, so it is not an OCI image layout"))?;
        let version = serde_json::from_slice::<Value>(&marker)
            .ok()
            .and_then(|marker| marker.get("imageLayoutVersion")?.as_str().map(str::to_owned));
        match version.as_deref() {
            Some(version) if version.starts_with("1.") => Ok(layout),
            Some(version) => Err(layout.error(format!("its layout version is {version}; cairn reads 1.x"))),
            None => Err(layout.error("its `oci-layout` file has no `imageLayoutVersion`")),
        }
    }

    /// Opens a layout for writing, creating it when the folder is missing or empty.
    pub fn create(root: &Path) -> Result<Self, OciError> {
        let layout = Layout { root: root.to_owned() };
        if root.join(LAYOUT_FILE).is_file() {
            return Self::open(root);
        }
        let empty = match fs::read_dir(root) {
            Ok(mut entries) => entries.next().is_none(),
            Err(error) if error.kind() == io::ErrorKind::NotFound => true,
            Err(error) => return Err(layout.io_error(error)),
        };
        if !empty {
            return Err(layout.error(
                "it is not empty and has no `oci-layout` file; cairn creates layouts only in new or empty folders",
            ));
        }
        fs::create_dir_all(layout.blobs()).map_err(|error| layout.io_error(error))?;
        write_atomically(&root.join(LAYOUT_FILE), br#"{"imageLayoutVersion":"1.0.0"}"#)
            .map_err(|error| layout.io_error(error))?;
        Ok(layout)
    }

    /// The folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The manifest digest `tag` names, if any.
    pub fn manifest_digest(&self, tag: &str) -> Result<Option<Sha256>, OciError> {
        let index = self.read_index()?;
        let entry = manifests(&index).find(|entry| tag_of(entry) == Some(tag));
        match entry {
            Some(entry) => entry["digest"]
                .as_str()
                .unwrap_or_default()
                .parse()
                .map(Some)
                .map_err(|error: super::Sha256ParseError| self.error(format!("`index.json`, tag `{tag}`: {error}"))),
            None => Ok(None),
        }
    }

    /// The blob `digest`, at most `max` bytes (the caller checks its digest).
    pub fn read_blob(&self, digest: &Sha256, max: u64) -> Result<Option<Vec<u8>>, OciError> {
        let path = self.blob_path(digest);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(self.io_error(error)),
        };
        let mut bytes = Vec::new();
        file.take(max.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|error| self.io_error(error))?;
        Ok(Some(bytes))
    }

    /// Stores `bytes` as a blob (an intact existing copy is kept).
    pub fn write_blob(&self, bytes: &[u8]) -> Result<Sha256, OciError> {
        let digest = Sha256::of(bytes);
        let path = self.blob_path(&digest);
        let intact = fs::read(&path).is_ok_and(|existing| Sha256::of(&existing) == digest);
        if !intact {
            fs::create_dir_all(self.blobs()).map_err(|error| self.io_error(error))?;
            write_atomically(&path, bytes).map_err(|error| self.io_error(error))?;
        }
        Ok(digest)
    }

    /// Stores `manifest` and points `tag` at it (moving the tag if it pointed elsewhere).
    pub fn tag(&self, tag: &str, manifest: &[u8]) -> Result<Sha256, OciError> {
        let digest = self.write_blob(manifest)?;
        let lock = File::options()
            .write(true)
            .open(self.root.join(LAYOUT_FILE))
            .map_err(|error| self.io_error(error))?;
        lock.lock().map_err(|error| self.io_error(error))?;
        let mut index = self.read_index()?;
        let mut entries: Vec<Value> = manifests(&index)
            .filter(|entry| tag_of(entry) != Some(tag))
            .cloned()
            .collect();
        entries.push(json!({
            "mediaType": MANIFEST_MEDIA_TYPE,
            "digest": digest.to_string(),
            "size": manifest.len(),
            "annotations": { REF_NAME: tag },
        }));
        index["manifests"] = Value::Array(entries);
        let text = serde_json::to_vec_pretty(&index).map_err(|error| self.error(error.to_string()))?;
        write_atomically(&self.root.join(INDEX_FILE), &text).map_err(|error| self.io_error(error))?;
        Ok(digest)
    }

    /// `index.json`, or an empty index when the layout has none yet.
    fn read_index(&self) -> Result<Value, OciError> {
        let path = self.root.join(INDEX_FILE);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Ok(json!({ "schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": [] }));
            }
            Err(error) => return Err(self.io_error(error)),
        };
        let index: Value =
            serde_json::from_slice(&bytes).map_err(|error| self.error(format!("`index.json` is not JSON: {error}")))?;
        if !index.is_object() || !(index["manifests"].is_array() || index["manifests"].is_null()) {
            return Err(self.error("`index.json` is not an OCI image index"));
        }
        Ok(index)
    }

    fn blobs(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    fn blob_path(&self, digest: &Sha256) -> PathBuf {
        self.blobs().join(digest.to_hex())
    }

    fn error(&self, problem: impl Into<String>) -> OciError {
        OciError::Layout {
            path: self.root.clone(),
            problem: problem.into(),
        }
    }

    fn io_error(&self, error: io::Error) -> OciError {
        self.error(error.to_string())
    }
}

/// An index entry's tag.
fn tag_of(entry: &Value) -> Option<&str> {
    entry["annotations"][REF_NAME].as_str()
}

fn manifests(index: &Value) -> impl Iterator<Item = &Value> {
    index["manifests"].as_array().into_iter().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_point_at_manifests_and_move() {
        let folder = tempfile::tempdir().unwrap();
        let root = folder.path().join("layout");
        let layout = Layout::create(&root).unwrap();
        let first = layout.tag("v1", b"{\"first\":1}").unwrap();
        let second = layout.tag("v2", b"{\"second\":2}").unwrap();
        assert_eq!(layout.manifest_digest("v1").unwrap(), Some(first));
        assert_eq!(layout.manifest_digest("v2").unwrap(), Some(second));
        assert_eq!(layout.manifest_digest("v3").unwrap(), None);

        layout.tag("v1", b"{\"second\":2}").unwrap();
        let reopened = Layout::open(&root).unwrap();
        assert_eq!(reopened.manifest_digest("v1").unwrap(), Some(second));
        assert_eq!(
            reopened.read_blob(&first, 100).unwrap().as_deref(),
            Some(&b"{\"first\":1}"[..])
        );
        let index: Value = serde_json::from_slice(&fs::read(root.join("index.json")).unwrap()).unwrap();
        assert_eq!(index["manifests"].as_array().unwrap().len(), 2);
        assert_eq!(
            fs::read_to_string(root.join("oci-layout")).unwrap(),
            r#"{"imageLayoutVersion":"1.0.0"}"#
        );
    }

    #[test]
    fn folders_that_are_not_layouts_are_refused() {
        let folder = tempfile::tempdir().unwrap();
        let missing = Layout::open(&folder.path().join("missing")).unwrap_err().to_string();
        assert!(missing.contains("does not exist"), "{missing}");
        fs::write(folder.path().join("notes.txt"), "mine").unwrap();
        let occupied = Layout::create(folder.path()).unwrap_err().to_string();
        assert!(occupied.contains("not empty"), "{occupied}");
        assert!(folder.path().join("notes.txt").is_file());
    }
}
