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

/// Decodes the WIT world of a component (not a core module: adapt it first).
pub fn describe(component: &[u8]) -> Result<Description, String> {
    let decoded = wit_component::decode(component).map_err(|error| format!("{error:#}"))?;
    let DecodedWasm::Component(resolve, world_id) = decoded else {
        return Err("the file is a WIT package, not a component".to_owned());
    };
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
