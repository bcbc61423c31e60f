//! The standard library of stages (`uses = "std:NAME"`), compiled from
//! `stages/` when cairn is built and embedded in the binary, so a fresh
//! install runs them with no network and no toolchain.

include!(concat!(env!("OUT_DIR"), "/standard_stages.rs"));

/// The component bytes of `std:NAME`.
pub fn get(name: &str) -> Option<&'static [u8]> {
    STANDARD_STAGES
        .iter()
        .find(|(standard_name, _)| *standard_name == name)
        .map(|(_, bytes)| *bytes)
}

/// The names of all standard stages, sorted.
pub fn names() -> impl Iterator<Item = &'static str> {
    STANDARD_STAGES.iter().map(|(name, _)| *name)
}
