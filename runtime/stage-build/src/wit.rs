//! The `cairn:stage` WIT, embedded: what non-Rust stage builds target and
//! `cairn stage new` hands authors, always the version this cairn runs.

use std::io;
use std::path::Path;

/// Every file of the WIT package and its WASI dependencies, by path relative
/// to a `wit/` folder.
pub const FILES: &[(&str, &str)] = &[
    ("stage.wit", include_str!("../../../wit/stage.wit")),
    ("deps/cli.wit", include_str!("../../../wit/deps/cli.wit")),
    ("deps/clocks.wit", include_str!("../../../wit/deps/clocks.wit")),
    ("deps/filesystem.wit", include_str!("../../../wit/deps/filesystem.wit")),
    ("deps/io.wit", include_str!("../../../wit/deps/io.wit")),
    ("deps/random.wit", include_str!("../../../wit/deps/random.wit")),
    ("deps/sockets.wit", include_str!("../../../wit/deps/sockets.wit")),
    ("deps/http.wit", include_str!("../../../wit/deps/http.wit")),
];

/// The world stages target.
pub const WORLD: &str = "stage";

/// Writes the WIT into `dir` (a `wit/` folder).
pub fn write_to(dir: &Path) -> io::Result<()> {
    for (name, text) in FILES {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, text)?;
    }
    Ok(())
}

/// A digest of the WIT, part of every non-Rust build's inputs.
pub fn digest() -> blake3::Hash {
    let mut hasher = blake3::Hasher::new();
    for (name, text) in FILES {
        hasher.update(name.as_bytes());
        hasher.update(text.as_bytes());
    }
    hasher.finalize()
}
