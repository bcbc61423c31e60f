//! The wasm OCI artifact, as the CNCF TAG Runtime "Wasm OCI Artifact layout"
//! defines it: an OCI image manifest whose config has the media type
//! `application/vnd.wasm.config.v0+json` and whose one layer is the
//! component itself, `application/wasm`. Other tools (`wkg oci`) read and
//! write the same shape, so what cairn publishes they can pull, and back.
//!
//! Building is deterministic: the same component and metadata give the same
//! manifest digest (the `created` time is `SOURCE_DATE_EPOCH`, not now), so
//! publishing twice does not move a tag.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{OciError, Sha256};
use cairn_component::WorldNames;

/// An OCI image manifest.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// An OCI image index (several manifests: what cairn does not run).
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
/// The wasm artifact config.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// The one layer: the component's bytes.
pub const LAYER_MEDIA_TYPE: &str = "application/wasm";

/// The stage's name.
pub const TITLE: &str = "org.opencontainers.image.title";
/// The stage's version.
pub const VERSION: &str = "org.opencontainers.image.version";
/// Where its source lives.
pub const SOURCE: &str = "org.opencontainers.image.source";
/// What it does.
pub const DESCRIPTION: &str = "org.opencontainers.image.description";
/// When it was built (`SOURCE_DATE_EPOCH`).
pub const CREATED: &str = "org.opencontainers.image.created";
/// The WIT world it targets (`cairn:stage/stage@0.1.0`, `wasi:cli/command@0.2.x`).
pub const WORLD: &str = "dev.cairn.stage.world";

/// Components larger than this are refused before they are downloaded.
pub const MAX_COMPONENT_SIZE: u64 = 1 << 30;
/// Manifests larger than this are not wasm artifact manifests.
pub const MAX_MANIFEST_SIZE: usize = 4 << 20;

/// A content descriptor: what a manifest says about a blob.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// What the blob is.
    pub media_type: String,
    /// Its digest.
    pub digest: String,
    /// Its size in bytes.
    pub size: u64,
    /// Free-form metadata (an image layout's tag lives here).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The part of an image manifest cairn writes and reads.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    config: Descriptor,
    layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
}

/// What any manifest or index starts with: enough to tell them apart.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Head {
    schema_version: u32,
    #[serde(default)]
    media_type: Option<String>,
}

/// The config blob of a wasm artifact.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WasmConfig {
    created: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    author: Option<String>,
    architecture: String,
    os: String,
    layer_digests: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    component: Option<ComponentInfo>,
}

/// What the config says about the component inside.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct ComponentInfo {
    exports: Vec<String>,
    imports: Vec<String>,
    target: Option<String>,
}

/// What a published component says about itself.
#[derive(Clone, Debug, Default)]
pub struct Metadata {
    /// Annotations, by key (the constants above, and any the publisher adds).
    pub annotations: BTreeMap<String, String>,
    /// `SOURCE_DATE_EPOCH`: the artifact's `created` time.
    pub created: u64,
}

/// A component packed as a wasm OCI artifact, ready to push or write.
#[derive(Clone, Debug)]
pub struct Artifact {
    /// The manifest, byte for byte as pushed (its digest names the artifact).
    pub manifest: Vec<u8>,
    /// The manifest's digest.
    pub manifest_digest: Sha256,
    /// The config blob.
    pub config: Vec<u8>,
    /// The config's descriptor.
    pub config_descriptor: Descriptor,
    /// The layer's descriptor (the component's bytes are pushed as is).
    pub layer_descriptor: Descriptor,
}

impl Artifact {
    /// Packs `component` (a component, not a core module) with `metadata`.
    pub fn pack(component: &[u8], world: &WorldNames, target: &str, metadata: &Metadata) -> Self {
        let created =
            humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(metadata.created))
                .to_string();
        let layer_descriptor = Descriptor {
            media_type: LAYER_MEDIA_TYPE.to_owned(),
            digest: Sha256::of(component).to_string(),
            size: component.len() as u64,
            annotations: BTreeMap::new(),
        };
        let config = WasmConfig {
            created: created.clone(),
            author: None,
            architecture: "wasm".to_owned(),
            os: "wasip2".to_owned(),
            layer_digests: vec![layer_descriptor.digest.clone()],
            component: Some(ComponentInfo {
                exports: world.exports.clone(),
                imports: world.imports.clone(),
                target: Some(target.to_owned()),
            }),
        };
        let config = to_json(&config);
        let config_descriptor = Descriptor {
            media_type: CONFIG_MEDIA_TYPE.to_owned(),
            digest: Sha256::of(&config).to_string(),
            size: config.len() as u64,
            annotations: BTreeMap::new(),
        };
        let mut annotations = metadata.annotations.clone();
        annotations.entry(CREATED.to_owned()).or_insert(created);
        annotations.entry(WORLD.to_owned()).or_insert_with(|| target.to_owned());
        let manifest = to_json(&Manifest {
            schema_version: 2,
            media_type: Some(MANIFEST_MEDIA_TYPE.to_owned()),
            config: config_descriptor.clone(),
            layers: vec![layer_descriptor.clone()],
            annotations,
        });
        Artifact {
            manifest_digest: Sha256::of(&manifest),
            manifest,
            config,
            config_descriptor,
            layer_descriptor,
        }
    }
}

/// Serializes a value cairn built itself: struct fields and `BTreeMap` keys
/// come out in a fixed order, so the bytes (and digests) are stable.
fn to_json(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_else(|error| unreachable!("cairn's own OCI JSON always serializes: {error}"))
}

/// The component layer of a manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layer {
    /// Its digest.
    pub digest: Sha256,
    /// Its size in bytes.
    pub size: u64,
}

/// Checks a manifest fetched for `what` against the digest it should have
/// (when known) and finds its one `application/wasm` layer.
pub fn component_layer(manifest: &[u8], expected: Option<&Sha256>, what: &str) -> Result<Layer, OciError> {
    let actual = Sha256::of(manifest);
    if let Some(expected) = expected
        && actual != *expected
    {
        return Err(OciError::DigestMismatch {
            what: format!("the manifest of `{what}`"),
            expected: expected.to_string(),
            actual: actual.to_string(),
        });
    }
    let invalid = |problem: String| OciError::NotAComponent {
        reference: what.to_owned(),
        problem,
    };
    let head: Head =
        serde_json::from_slice(manifest).map_err(|error| invalid(format!("its manifest is not OCI JSON ({error})")))?;
    match head.media_type.as_deref() {
        Some(INDEX_MEDIA_TYPE | "application/vnd.docker.distribution.manifest.list.v2+json") => {
            return Err(invalid(
                "it is an image index (several manifests), not a single wasm component".to_owned(),
            ));
        }
        Some(MANIFEST_MEDIA_TYPE) | None if head.schema_version == 2 => {}
        other => {
            return Err(invalid(format!(
                "its manifest has schema version {} and media type `{}`",
                head.schema_version,
                other.unwrap_or("none")
            )));
        }
    }
    let manifest: Manifest = serde_json::from_slice(manifest)
        .map_err(|error| invalid(format!("its manifest is not an OCI image manifest ({error})")))?;
    let wasm: Vec<&Descriptor> = manifest
        .layers
        .iter()
        .filter(|layer| layer.media_type == LAYER_MEDIA_TYPE)
        .collect();
    let [layer] = wasm.as_slice() else {
        let found: Vec<&str> = manifest.layers.iter().map(|layer| layer.media_type.as_str()).collect();
        return Err(invalid(format!(
            "a wasm artifact has exactly one `{LAYER_MEDIA_TYPE}` layer; this one has {} (layers: {})",
            wasm.len(),
            if found.is_empty() {
                "none".to_owned()
            } else {
                found.join(", ")
            }
        )));
    };
    let digest = layer
        .digest
        .parse()
        .map_err(|error: super::Sha256ParseError| invalid(format!("its layer digest: {error}")))?;
    if layer.size > MAX_COMPONENT_SIZE {
        return Err(invalid(format!(
            "its component is {} bytes, more than cairn loads ({MAX_COMPONENT_SIZE})",
            layer.size
        )));
    }
    Ok(Layer {
        digest,
        size: layer.size,
    })
}

/// Checks downloaded component bytes against their layer descriptor.
pub fn check_layer(bytes: &[u8], layer: &Layer, what: &str) -> Result<(), OciError> {
    let actual = Sha256::of(bytes);
    if actual != layer.digest || bytes.len() as u64 != layer.size {
        return Err(OciError::DigestMismatch {
            what: format!("the component of `{what}`"),
            expected: format!("{} ({} bytes)", layer.digest, layer.size),
            actual: format!("{actual} ({} bytes)", bytes.len()),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata() -> Metadata {
        Metadata {
            annotations: BTreeMap::from([(TITLE.to_owned(), "wc".to_owned())]),
            created: 0,
        }
    }

    fn world() -> WorldNames {
        WorldNames {
            imports: vec!["wasi:cli/environment@0.2.0".into()],
            exports: vec!["run".into()],
        }
    }

    #[test]
    fn packing_follows_the_wasm_artifact_layout_and_is_deterministic() {
        let artifact = Artifact::pack(b"\0asm component", &world(), "cairn:stage/stage@0.1.0", &metadata());
        let again = Artifact::pack(b"\0asm component", &world(), "cairn:stage/stage@0.1.0", &metadata());
        assert_eq!(artifact.manifest, again.manifest);

        let manifest: serde_json::Value = serde_json::from_slice(&artifact.manifest).unwrap();
        assert_eq!(manifest["schemaVersion"], 2);
        assert_eq!(manifest["mediaType"], MANIFEST_MEDIA_TYPE);
        assert_eq!(manifest["config"]["mediaType"], CONFIG_MEDIA_TYPE);
        assert_eq!(manifest["layers"][0]["mediaType"], LAYER_MEDIA_TYPE);
        assert_eq!(manifest["annotations"][TITLE], "wc");
        assert_eq!(manifest["annotations"][CREATED], "1970-01-01T00:00:00Z");
        assert_eq!(manifest["annotations"][WORLD], "cairn:stage/stage@0.1.0");

        let config: serde_json::Value = serde_json::from_slice(&artifact.config).unwrap();
        assert_eq!(config["architecture"], "wasm");
        assert_eq!(config["os"], "wasip2");
        assert_eq!(config["layerDigests"][0], manifest["layers"][0]["digest"]);
        assert_eq!(config["component"]["exports"][0], "run");
        assert_eq!(Sha256::of(&artifact.config).to_string(), manifest["config"]["digest"]);

        let layer = component_layer(&artifact.manifest, Some(&artifact.manifest_digest), "wc").unwrap();
        assert_eq!(layer.size, 14);
        check_layer(b"\0asm component", &layer, "wc").unwrap();
        assert!(matches!(
            check_layer(b"\0asm c0mponent", &layer, "wc"),
            Err(OciError::DigestMismatch { .. })
        ));
    }

    #[test]
    fn a_manifest_that_does_not_match_its_digest_is_refused() {
        let artifact = Artifact::pack(b"\0asm", &world(), "cairn:stage/stage@0.1.0", &metadata());
        let other = Sha256::of(b"something else");
        let error = component_layer(&artifact.manifest, Some(&other), "wc").unwrap_err();
        assert!(error.to_string().contains("digest"), "{error}");
    }

    #[test]
    fn images_and_indexes_are_not_components() {
        let image = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
            "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:00","size":1},
            "layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:00","size":1}]}"#;
        let error = component_layer(image, None, "alpine").unwrap_err().to_string();
        assert!(error.contains("exactly one `application/wasm` layer"), "{error}");
        let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
        let error = component_layer(index, None, "multi").unwrap_err().to_string();
        assert!(error.contains("image index"), "{error}");
    }

    proptest::proptest! {
        /// Fuzz target: any manifest a registry sends is a component layer
        /// or a clear refusal, never a panic.
        #[test]
        fn fuzz_manifests(edits in cairn_core::mutate::edits()) {
            let artifact = Artifact::pack(b"\0asm component", &world(), "cairn:stage/stage@0.1.0", &metadata());
            let damaged = cairn_core::mutate::mutate(&artifact.manifest, &edits);
            let _ = component_layer(&damaged, None, "fuzz");
            let _ = component_layer(&damaged, Some(&Sha256::of(&artifact.manifest)), "fuzz");
        }
    }
}
