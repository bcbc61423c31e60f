//! `cairn publish`: a component packed as a wasm OCI artifact and pushed to
//! a registry, or written to an image-layout folder.

use std::collections::BTreeMap;

use super::artifact::{Artifact, Metadata};
use super::layout::Layout;
use super::registry::{Registry, Settings};
use super::{Location, OciError, OciReference, Sha256};
use cairn_component::{self as component, LoadError};

/// What was published.
#[derive(Clone, Debug)]
pub struct Published {
    /// The manifest digest: what a `uses` pins.
    pub digest: Sha256,
    /// The target reference pinned to that digest.
    pub pinned: String,
    /// The component's size in bytes.
    pub size: u64,
    /// The WIT world it targets.
    pub world: String,
}

/// The world a component targets, from what it exports: a cairn stage
/// exports `run`, a command exports `wasi:cli/run`.
pub fn target_world(world: &component::WorldNames) -> Result<String, LoadError> {
    if world.exports.iter().any(|export| export == "run") {
        return Ok("cairn:stage/stage@0.1.0".to_owned());
    }
    if let Some(run) = world.exports.iter().find(|export| export.starts_with("wasi:cli/run@")) {
        return Ok(run.replacen("wasi:cli/run", "wasi:cli/command", 1));
    }
    Err(LoadError::NoEntryPoint {
        exports: if world.exports.is_empty() {
            "nothing".to_owned()
        } else {
            world.exports.join(", ")
        },
    })
}

/// Publishes `bytes` (a component, or a preview1 module, published adapted
/// to a component) at `target`, annotated with `annotations`; `created` is
/// the artifact's timestamp (`SOURCE_DATE_EPOCH`).
pub async fn publish(
    bytes: &[u8],
    target: &OciReference,
    annotations: BTreeMap<String, String>,
    created: u64,
    settings: &Settings,
) -> Result<Published, OciError> {
    let what = target.text.as_str();
    let (Some(tag), None) = (&target.tag, &target.digest) else {
        return Err(OciError::Reference(super::ReferenceError {
            text: what.to_owned(),
            problem: "a publish target needs a tag, and cannot name a digest (the digest is what publishing produces)"
                .to_owned(),
            hint: "write the target as `oci://HOST/REPOSITORY:TAG` or `oci-layout://PATH:TAG`",
        }));
    };
    let not_publishable = |error: LoadError| OciError::NotAComponent {
        reference: what.to_owned(),
        problem: error.to_string(),
    };
    let component = component::to_component(bytes).map_err(not_publishable)?;
    let names = component::world_names(&component).map_err(|problem| OciError::NotAComponent {
        reference: what.to_owned(),
        problem,
    })?;
    let world = target_world(&names).map_err(not_publishable)?;
    let metadata = Metadata { annotations, created };
    let packed = Artifact::pack(&component, &names, &world, &metadata);
    match &target.location {
        Location::Registry { host, repository } => {
            Registry::connect(host, settings)?
                .push(repository, tag, &packed, &component, what)
                .await?;
        }
        Location::Layout { path } => {
            let layout = Layout::create(path)?;
            layout.write_blob(&component)?;
            layout.write_blob(&packed.config)?;
            layout.tag(tag, &packed.manifest)?;
        }
    }
    Ok(Published {
        pinned: target.pinned_text(&packed.manifest_digest),
        digest: packed.manifest_digest,
        size: component.len() as u64,
        world,
    })
}
