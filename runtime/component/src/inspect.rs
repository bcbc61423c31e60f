//! What a component imports and exports, in WIT terms, for `cairn stage inspect`.

use wit_component::{DecodedWasm, WitPrinter};
use wit_parser::{Resolve, WorldItem, WorldKey};

/// A component's interface, decoded from its binary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Description {
    /// Imported interfaces and functions, one per line (`wasi:cli/environment@0.2.0`).
    pub imports: Vec<String>,
    /// Exported interfaces and functions (`run: func`, `wasi:cli/run@0.2.0`).
    pub exports: Vec<String>,
    /// The component's world as WIT text, with the interfaces it refers to.
    pub wit: String,
}

/// The names a component imports and exports, as the wasm OCI artifact
/// config lists them: `wasi:cli/environment@0.2.0` for an interface, the
/// plain name (`run`) for a function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorldNames {
    /// Imported names.
    pub imports: Vec<String>,
    /// Exported names.
    pub exports: Vec<String>,
}

/// The import and export names of a component (not a core module: adapt it first).
pub fn world_names(component: &[u8]) -> Result<WorldNames, String> {
    let (resolve, world_id) = decode(component)?;
    let world = &resolve.worlds[world_id];
    let names = |items: &wit_parser::IndexMap<WorldKey, WorldItem>| {
        items.keys().map(|key| resolve.name_world_key(key)).collect()
    };
    Ok(WorldNames {
        imports: names(&world.imports),
        exports: names(&world.exports),
    })
}

fn decode(component: &[u8]) -> Result<(Resolve, wit_parser::WorldId), String> {
    match wit_component::decode(component).map_err(|error| format!("{error:#}"))? {
        DecodedWasm::Component(resolve, world_id) => Ok((resolve, world_id)),
        DecodedWasm::WitPackage(..) => Err("the file is a WIT package, not a component".to_owned()),
    }
}

/// Decodes the WIT world of a component (not a core module: adapt it first).
pub fn describe(component: &[u8]) -> Result<Description, String> {
    let (resolve, world_id) = decode(component)?;
    let world = &resolve.worlds[world_id];
    let items = |items: &wit_parser::IndexMap<WorldKey, WorldItem>| {
        items
            .iter()
            .map(|(key, item)| describe_item(&resolve, key, item))
            .collect::<Vec<_>>()
    };
    let mut printer = WitPrinter::default();
    printer.emit_docs(false);
    let wit = match world.package {
        Some(package) => {
            let nested: Vec<_> = resolve
                .packages
                .iter()
                .map(|(id, _)| id)
                .filter(|id| *id != package)
                .collect();
            printer
                .print(&resolve, package, &nested)
                .map_err(|error| format!("{error:#}"))?;
            printer.output.to_string()
        }
        None => String::new(),
    };
    Ok(Description {
        imports: items(&world.imports),
        exports: items(&world.exports),
        wit,
    })
}

fn describe_item(resolve: &Resolve, key: &WorldKey, item: &WorldItem) -> String {
    let name = resolve.name_world_key(key);
    match item {
        WorldItem::Interface { .. } => name,
        WorldItem::Function(_) => format!("{name}: func"),
        WorldItem::Type { .. } => format!("{name}: type"),
    }
}
