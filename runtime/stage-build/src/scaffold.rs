//! `cairn stage new`: a stage folder that builds and runs untouched, in any
//! language cairn builds. The templates live in `sdk/<language>/template/`
//! (with each language's helper module), embedded here so the binary can
//! write them anywhere.

use std::path::{Path, PathBuf};

use crate::{Language, rust_sdk};

/// Why a stage folder could not be created.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// The name cannot name a package in every language.
    #[error("`{0}` is not a stage name: use lower-case letters, digits, `-` and `_`, starting with a letter")]
    InvalidName(String),
    /// Something is in the way.
    #[error("`{}` already exists; choose another name or remove it", .0.display())]
    Exists(PathBuf),
    /// A file could not be written.
    #[error("cannot write `{}`", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
}

/// The files of each language's template, by path in the new folder.
fn template(language: Language) -> &'static [(&'static str, &'static str)] {
    match language {
        Language::Rust => &[
            ("Cargo.toml", include_str!("../../../sdk/rust/template/Cargo.toml")),
            ("src/lib.rs", include_str!("../../../sdk/rust/template/src/lib.rs")),
            ("README.md", include_str!("../../../sdk/rust/template/README.md")),
            (".gitignore", "/target\n*.wasm\n"),
        ],
        Language::JavaScript => &[
            ("package.json", include_str!("../../../sdk/js/template/package.json")),
            ("stage.js", include_str!("../../../sdk/js/template/stage.js")),
            ("README.md", include_str!("../../../sdk/js/template/README.md")),
            (".gitignore", "node_modules/\n*.wasm\n"),
        ],
        Language::Python => &[
            ("stage.py", include_str!("../../../sdk/python/template/stage.py")),
            (
                "pyproject.toml",
                include_str!("../../../sdk/python/template/pyproject.toml"),
            ),
            ("README.md", include_str!("../../../sdk/python/template/README.md")),
            (".gitignore", "__pycache__/\n*.wasm\n"),
        ],
        Language::C => &[
            ("stage.c", include_str!("../../../sdk/c/template/stage.c")),
            ("README.md", include_str!("../../../sdk/c/template/README.md")),
            (".gitignore", "*.wasm\n"),
        ],
    }
}

/// Creates the stage folder `parent/name` for `language`; a Rust stage
/// depends on the SDK cairn embeds, by version. Returns the folder.
pub fn create(parent: &Path, name: &str, language: Language) -> Result<PathBuf, ScaffoldError> {
    let valid = name.len() <= 64
        && name.starts_with(|first: char| first.is_ascii_lowercase())
        && name.chars().all(|character| {
            character.is_ascii_lowercase() || character.is_ascii_digit() || matches!(character, '-' | '_')
        });
    if !valid {
        return Err(ScaffoldError::InvalidName(name.to_owned()));
    }
    let folder = parent.join(name);
    if folder.exists() {
        return Err(ScaffoldError::Exists(folder));
    }
    // `0.1.0` asks for `0.1`: any SDK of this minor version builds it.
    let sdk_version = rust_sdk::VERSION
        .rsplit_once('.')
        .map_or(rust_sdk::VERSION, |(minor, _)| minor);
    for (relative, text) in template(language) {
        let path = folder.join(relative);
        let io = |source| ScaffoldError::Io {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let text = text.replace("{{name}}", name).replace("{{sdk_version}}", sdk_version);
        std::fs::write(&path, text).map_err(io)?;
    }
    Ok(folder)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_names_the_stage_and_marks_its_language() {
        let parent = tempfile::tempdir().unwrap();
        for language in Language::ALL {
            let name = format!("hello-{}", language.key());
            let folder = create(parent.path(), &name, language).unwrap();
            if language == Language::Rust {
                let manifest = std::fs::read_to_string(folder.join("Cargo.toml")).unwrap();
                assert!(
                    manifest.contains("cairn-sdk = \"0.1\""),
                    "by version, not by path: {manifest}"
                );
            }
            assert_eq!(Language::detect(&folder), Some(language));
            let readme = std::fs::read_to_string(folder.join("README.md")).unwrap();
            assert!(readme.starts_with(&format!("# {name}\n")), "{readme}");
            for (relative, _) in template(language) {
                let text = std::fs::read_to_string(folder.join(relative)).unwrap();
                assert!(!text.contains("{{"), "{relative} still has a placeholder");
            }
        }
    }

    #[test]
    fn bad_names_and_occupied_folders_are_refused() {
        let parent = tempfile::tempdir().unwrap();
        for name in ["Hello", "1st", "a b", "../escape", ""] {
            assert!(matches!(
                create(parent.path(), name, Language::C),
                Err(ScaffoldError::InvalidName(_))
            ));
        }
        create(parent.path(), "taken", Language::C).unwrap();
        assert!(matches!(
            create(parent.path(), "taken", Language::Python),
            Err(ScaffoldError::Exists(_))
        ));
    }
}
