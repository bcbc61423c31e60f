//! Building stage source folders into components, in any of the languages
//! cairn knows: Rust (cargo), JavaScript (componentize-js), Python
//! (componentize-py) and C (clang with wasi-libc, bindings from
//! wit-bindgen-c, the preview1 reactor adapter).
//!
//! A folder's language is told by one file: `Cargo.toml`, `package.json`,
//! `stage.py` or `stage.c`. A folder is built once, and rebuilt only when
//! what its build read changes: for Rust the files in cargo's dep-info, for
//! the others every source file in the folder, plus the toolchain and (for
//! the non-Rust languages) the WIT this cairn embeds. An unchanged folder
//! costs hashing its files, not running a compiler.

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod c;
mod javascript;
mod python;
mod rust;
pub mod rust_sdk;
pub mod scaffold;
mod tools;
pub mod wit;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use cairn_guest_build::GuestBuildError;

use cairn_core::Digest;
use cairn_core::cache_dir::{CacheDir, write_atomically};

pub use tools::Tool;

/// A language cairn builds stages from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Language {
    /// A `cdylib` crate using `cairn-sdk`.
    Rust,
    /// An ES module built with componentize-js.
    JavaScript,
    /// A Python module built with componentize-py.
    Python,
    /// C built with clang for wasm32-wasi.
    C,
}

impl Language {
    /// Every language, in the order `cairn stage new --help` lists them.
    pub const ALL: [Language; 4] = [Language::Rust, Language::JavaScript, Language::Python, Language::C];

    /// The short name used on the command line (`rust`, `js`, `python`, `c`).
    pub fn key(self) -> &'static str {
        match self {
            Language::Rust => "rust",
            Language::JavaScript => "js",
            Language::Python => "python",
            Language::C => "c",
        }
    }

    /// The file that makes a folder a stage of this language.
    pub fn marker(self) -> &'static str {
        match self {
            Language::Rust => "Cargo.toml",
            Language::JavaScript => "package.json",
            Language::Python => "stage.py",
            Language::C => "stage.c",
        }
    }

    /// The language of a stage folder, from the file it holds.
    pub fn detect(folder: &Path) -> Option<Language> {
        Language::ALL
            .into_iter()
            .find(|language| folder.join(language.marker()).is_file())
    }

    /// "a `Cargo.toml` (Rust), a `package.json` (JavaScript), ...": for messages.
    pub fn markers() -> String {
        Language::ALL
            .iter()
            .map(|language| format!("`{}` ({language})", language.marker()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for Language {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Language::Rust => "Rust",
            Language::JavaScript => "JavaScript",
            Language::Python => "Python",
            Language::C => "C",
        })
    }
}

impl FromStr for Language {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_lowercase().as_str() {
            "rust" | "rs" => Ok(Language::Rust),
            "js" | "javascript" => Ok(Language::JavaScript),
            "python" | "py" => Ok(Language::Python),
            "c" => Ok(Language::C),
            _ => Err(format!("`{text}` is not a language cairn builds (rust, js, python, c)")),
        }
    }
}

/// Why a stage folder could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The folder holds none of the files that say what it is.
    #[error("`{}` is not a stage folder: it has none of {}", folder.display(), Language::markers())]
    NotAStageFolder {
        /// The folder.
        folder: PathBuf,
    },
    /// Cargo failed.
    #[error(transparent)]
    Cargo(#[from] GuestBuildError),
    /// The crate builds more or less than one component.
    #[error("the crate builds {count} components ({names}); cairn needs exactly one")]
    Ambiguous {
        /// How many.
        count: usize,
        /// Their names.
        names: String,
    },
    /// A tool the language needs is not installed.
    #[error("building a {language} stage needs `{tool}`, and {why}\nhint: {install}")]
    ToolMissing {
        /// The language.
        language: Language,
        /// The tool.
        tool: &'static str,
        /// Why it was not found.
        why: String,
        /// How to install it.
        install: &'static str,
    },
    /// A tool ran and failed; its output was shown.
    #[error("`{command}` failed ({status}); its errors are printed above{}", hint.map(|hint| format!("\nhint: {hint}")).unwrap_or_default())]
    ToolFailed {
        /// The language.
        language: Language,
        /// The command line.
        command: String,
        /// How it exited.
        status: std::process::ExitStatus,
        /// What commonly fixes it.
        hint: Option<&'static str>,
    },
    /// The C bindings could not be generated, or the module not turned into a component.
    #[error("{0}")]
    Componentize(String),
    /// A file could not be read or written.
    #[error("cannot use `{}`", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
}

impl BuildError {
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BuildError + '_ {
        move |source| BuildError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// What a stage folder says about itself in its package manifest: the
/// annotations `cairn publish` puts on the artifact.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PackageInfo {
    /// The package name (the folder's name for C).
    pub name: Option<String>,
    /// Its version.
    pub version: Option<String>,
    /// What it does.
    pub description: Option<String>,
    /// Where its source lives.
    pub source: Option<String>,
}

/// Reads `Cargo.toml` (through cargo, inheritance applied), `package.json`
/// or `pyproject.toml`'s `[project]`; a C folder has only its name.
pub fn package_info(folder: &Path) -> Result<PackageInfo, BuildError> {
    let language = Language::detect(folder).ok_or_else(|| BuildError::NotAStageFolder {
        folder: folder.to_owned(),
    })?;
    let read = |name: &str| {
        let path = folder.join(name);
        std::fs::read_to_string(&path).map_err(BuildError::io(&path))
    };
    let text = |value: Option<&str>| value.filter(|value| !value.is_empty()).map(str::to_owned);
    Ok(match language {
        Language::Rust => {
            let package = cairn_guest_build::package_metadata(&folder.join("Cargo.toml"))?;
            PackageInfo {
                name: Some(package.name),
                version: Some(package.version),
                description: package.description,
                source: package.repository.or(package.homepage),
            }
        }
        Language::JavaScript => {
            let package: serde_json::Value = serde_json::from_str(&read("package.json")?).unwrap_or_default();
            PackageInfo {
                name: text(package["name"].as_str()),
                version: text(package["version"].as_str()),
                description: text(package["description"].as_str()),
                source: text(package["repository"].as_str().or(package["repository"]["url"].as_str())),
            }
        }
        Language::Python => {
            let pyproject = folder
                .join("pyproject.toml")
                .is_file()
                .then(|| read("pyproject.toml"))
                .transpose()?
                .and_then(|text| text.parse::<toml::Table>().ok())
                .unwrap_or_default();
            let project = pyproject.get("project").and_then(toml::Value::as_table);
            let field = |key: &str| text(project.and_then(|project| project.get(key)?.as_str()));
            let urls = project.and_then(|project| project.get("urls")?.as_table());
            let url = |key: &str| text(urls.and_then(|urls| urls.get(key)?.as_str()));
            PackageInfo {
                name: field("name"),
                version: field("version"),
                description: field("description"),
                source: url("Source").or_else(|| url("Repository")).or_else(|| url("Homepage")),
            }
        }
        Language::C => PackageInfo {
            name: folder.file_name().map(|name| name.to_string_lossy().into_owned()),
            ..PackageInfo::default()
        },
    })
}

/// What one language's build produced.
struct Compiled {
    /// The component.
    bytes: Vec<u8>,
    /// The files it was built from (for Rust, what cargo's dep-info lists).
    files: Vec<PathBuf>,
}

/// A built stage folder.
#[derive(Clone, Debug)]
pub struct Built {
    /// The component's bytes.
    pub bytes: Arc<[u8]>,
    /// The folder's language.
    pub language: Language,
    /// Whether the last build was reused.
    pub reused: bool,
}

/// What the cache remembers of a folder's last build: the files it was
/// built from, their digest then (with the toolchain), and the component.
#[derive(serde::Serialize, serde::Deserialize)]
struct BuildRecord {
    files: Vec<PathBuf>,
    inputs: Digest,
    component: Digest,
}

/// Builds the stage folder `folder`, or returns the component its last
/// build produced when nothing that build read has changed since.
pub fn build(cache: &CacheDir, folder: &Path) -> Result<Built, BuildError> {
    let build = FolderBuild::new(cache, folder)?;
    match build.reuse() {
        Some(built) => Ok(built),
        None => build.build(),
    }
}

/// A stage folder about to be built: where its last build is remembered,
/// and the toolchain it would be built with. Split in steps so that a
/// shared cache can stand between reusing the last build and building:
/// [`reuse`](Self::reuse), then [`portable_key`](Self::portable_key) and
/// [`adopt`](Self::adopt) of another machine's build, then
/// [`build`](Self::build).
pub struct FolderBuild {
    cache: CacheDir,
    folder: PathBuf,
    language: Language,
    bucket: PathBuf,
    record_path: PathBuf,
    toolchain: Vec<u8>,
}

impl FolderBuild {
    /// The build of `folder` with the toolchain found on this machine.
    pub fn new(cache: &CacheDir, folder: &Path) -> Result<Self, BuildError> {
        let folder = folder.canonicalize().map_err(BuildError::io(folder))?;
        let language =
            Language::detect(&folder).ok_or_else(|| BuildError::NotAStageFolder { folder: folder.clone() })?;
        let bucket = cache.root().join("stage-builds-v1");
        let record_path = bucket.join(format!(
            "{}.json",
            Digest::of(folder.to_string_lossy().as_bytes()).to_hex()
        ));
        let toolchain = toolchain(language, &folder)?;
        Ok(Self {
            cache: cache.clone(),
            folder,
            language,
            bucket,
            record_path,
            toolchain,
        })
    }

    /// The last build's component, when nothing it read has changed.
    pub fn reuse(&self) -> Option<Built> {
        let bytes = reusable_build(
            &self.bucket,
            &self.record_path,
            self.language,
            &self.folder,
            &self.toolchain,
        )?;
        tracing::debug!(folder = %self.folder.display(), "reusing the stage folder's last build");
        Some(Built {
            bytes,
            language: self.language,
            reused: true,
        })
    }

    /// What names this build on any machine: the toolchain's identity and
    /// each source file's path in the folder and contents. A Rust folder
    /// has one only when it is a package of its own whose dependencies are
    /// all pinned by its `Cargo.lock` (none by path outside it), so that
    /// its files are everything the build reads; its key adds the embedded
    /// SDK's version.
    pub fn portable_key(&self) -> Option<Digest> {
        if self.language == Language::Rust && !rust::self_contained(&self.folder) {
            return None;
        }
        let mut hasher = blake3::Hasher::new_derive_key("cairn 2026 stage folder portable build v1");
        hasher.update(rust_sdk::VERSION.as_bytes());
        let mut update = |part: &[u8]| {
            hasher.update(&(part.len() as u64).to_le_bytes());
            hasher.update(part);
        };
        update(&self.toolchain);
        for file in source_files(&self.folder) {
            let relative = file.strip_prefix(&self.folder).unwrap_or(&file);
            update(relative.to_string_lossy().as_bytes());
            update(&std::fs::read(&file).ok()?);
        }
        Some(Digest::from_hasher(&hasher))
    }

    /// Takes `bytes`, built from the same sources elsewhere, as this
    /// folder's build, remembered as if built here.
    pub fn adopt(&self, bytes: Vec<u8>) -> Result<Built, BuildError> {
        self.keep(Compiled {
            bytes,
            files: source_files(&self.folder),
        })
    }

    /// Builds the folder with its language's tools.
    pub fn build(&self) -> Result<Built, BuildError> {
        let (folder, language) = (&self.folder, self.language);
        // Not a warning, but worth seeing: the compiler's own output follows.
        tracing::info!("building the {language} stage folder {}", folder.display());
        let scratch_root = self.cache.root().join("tmp");
        std::fs::create_dir_all(&scratch_root).map_err(BuildError::io(&scratch_root))?;
        let scratch = tempfile::Builder::new()
            .prefix("build-")
            .tempdir_in(&scratch_root)
            .map_err(BuildError::io(&scratch_root))?;
        let compiled = match language {
            Language::Rust => rust::compile(&self.cache, folder)?,
            Language::JavaScript => javascript::compile(folder, scratch.path())?,
            Language::Python => python::compile(folder, scratch.path())?,
            Language::C => c::compile(folder, scratch.path())?,
        };
        let mut built = self.keep(compiled)?;
        built.reused = false;
        Ok(built)
    }

    /// Remembers `compiled` as the folder's last build.
    fn keep(&self, compiled: Compiled) -> Result<Built, BuildError> {
        let record = BuildRecord {
            inputs: digest_files(&self.toolchain, &compiled.files),
            files: compiled.files,
            component: Digest::of(&compiled.bytes),
        };
        let bucket = &self.bucket;
        let component_path = bucket.join(format!("{}.wasm", record.component.to_hex()));
        std::fs::create_dir_all(bucket).map_err(BuildError::io(bucket))?;
        write_atomically(&component_path, &compiled.bytes).map_err(BuildError::io(&component_path))?;
        let json = serde_json::to_vec(&record).map_err(|error| BuildError::Io {
            path: self.record_path.clone(),
            source: error.into(),
        })?;
        write_atomically(&self.record_path, &json).map_err(BuildError::io(&self.record_path))?;
        Ok(Built {
            bytes: compiled.bytes.into(),
            language: self.language,
            reused: true,
        })
    }
}

/// What identifies the toolchain a folder would be built with.
fn toolchain(language: Language, folder: &Path) -> Result<Vec<u8>, BuildError> {
    let (mut identity, helper) = match language {
        Language::Rust => return Ok(rust::toolchain()),
        Language::JavaScript => (javascript::toolchain(folder)?, javascript::HELPER),
        Language::Python => (python::toolchain()?, python::HELPER),
        Language::C => (c::toolchain()?, c::HELPER),
    };
    // The WIT, the SDK helper and the cairn that wrote the glue are part of
    // every non-Rust build.
    identity.extend_from_slice(wit::digest().as_bytes());
    identity.extend_from_slice(blake3::hash(helper.as_bytes()).as_bytes());
    identity.extend_from_slice(env!("CARGO_PKG_VERSION").as_bytes());
    Ok(identity)
}

/// The component of the last build, if its record is sound, the files it
/// lists are still the folder's (for languages without dep-info) and
/// unchanged, and the component's bytes are intact.
fn reusable_build(
    bucket: &Path,
    record_path: &Path,
    language: Language,
    folder: &Path,
    toolchain: &[u8],
) -> Option<Arc<[u8]>> {
    let record: BuildRecord = serde_json::from_slice(&std::fs::read(record_path).ok()?).ok()?;
    if language != Language::Rust && source_files(folder) != record.files {
        return None;
    }
    if digest_files(toolchain, &record.files) != record.inputs {
        return None;
    }
    let bytes = std::fs::read(bucket.join(format!("{}.wasm", record.component.to_hex()))).ok()?;
    (Digest::of(&bytes) == record.component).then(|| bytes.into())
}

/// A digest of the toolchain and of each file's path and contents (a missing
/// file counts as a distinct state, so adding a `Cargo.lock` is a change).
fn digest_files(toolchain: &[u8], files: &[PathBuf]) -> Digest {
    let mut hasher = blake3::Hasher::new_derive_key("cairn 2026 stage folder build inputs v2");
    let mut update = |part: &[u8]| {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part);
    };
    update(toolchain);
    for file in files {
        update(file.to_string_lossy().as_bytes());
        match std::fs::read(file) {
            Ok(contents) => update(&contents),
            Err(_) => update(b"\0missing"),
        }
    }
    Digest::from_hasher(&hasher)
}

/// Folders a non-Rust build never reads sources from.
const SKIPPED_FOLDERS: &[&str] = &["node_modules", "target", ".git", "cairn-out", "__pycache__", "dist"];

/// Every source file of a non-Rust stage folder, sorted: all files except
/// built components and the folders above.
fn source_files(folder: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![folder.to_owned()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let name = entry.file_name();
            if kind.is_dir() {
                if !SKIPPED_FOLDERS.iter().any(|skipped| name == *skipped) {
                    pending.push(path);
                }
            } else if kind.is_file() && path.extension().is_none_or(|extension| extension != "wasm") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}
