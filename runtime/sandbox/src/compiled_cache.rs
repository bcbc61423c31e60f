//! Compiled components kept on disk, so Cranelift compiles each component
//! once per machine and a later load maps the machine code instead of
//! reading it.
//!
//! An entry is two files under `<bucket>/<engine fingerprint>/`, named by
//! the digest of the component's original bytes:
//! - `<digest>.cwasm`: exactly what wasmtime serialized. wasmtime maps it
//!   into memory, so a 40 MB entry (a JavaScript or Python stage) loads
//!   without being read or copied.
//! - `<digest>.seal`: a small JSON record of what the entry holds (a
//!   component or a core module, and its source's size), the `.cwasm`'s
//!   length and blake3 digest, and the `.cwasm`'s [`Stamp`] when that digest
//!   was last checked.
//!
//! The fingerprint folder is named by wasmtime's compatibility hash
//! (wasmtime version, target, and every setting that changes generated
//! code), so a cairn upgrade or a config change never loads stale machine
//! code. Both files are written to a temporary file, synced and renamed.
//!
//! Integrity is checked once, not on every load: the `.cwasm`'s digest is
//! checked in full the first time it is loaded, and again whenever its stamp
//! differs from the sealed one. Anything that rewrites, truncates, replaces
//! or even touches the file changes its change time, which no tool can set
//! back, so a load costs one `fstat`. A damaged entry (wrong digest, wrong
//! length, missing or unreadable seal) is deleted and recompiled, never
//! mapped. What a stamp cannot see is damage beneath the file system (a disk
//! flipping a bit in place); `cairn cache verify` checks every digest in
//! full for that. A stamp is sealed only once it is older than
//! [`RACY_WINDOW`](cairn_core::stamp::RACY_WINDOW), as the workspace's input
//! digests are: a change within the same clock tick would not show in it.

use std::fs::{self, File};
use std::hash::Hasher;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use wasmtime::Engine;
use wasmtime::Module;
use wasmtime::component::Component;

use cairn_core::Digest;
use cairn_core::cache_dir::write_atomically;
use cairn_core::stamp::{Stamp, racy_after};

const CODE: &str = "cwasm";
const SEAL: &str = "seal";

/// The compiled-component folder for one engine configuration.
#[derive(Clone, Debug)]
pub(crate) struct CompiledCache {
    dir: PathBuf,
}

/// Compiled code as wasmtime hands it out: a component, or a core module
/// (a preview1 program, which runs natively on WASI preview1).
pub(crate) enum Code {
    Component(Component),
    Module(Module),
}

/// What a cache entry holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum CodeKind {
    Component,
    Module,
}

/// Compiled code found in the cache, and the size of the bytes it was
/// compiled from (so a load by digest need not read them).
pub(crate) struct Cached {
    pub(crate) code: Code,
    pub(crate) source_size: u64,
}

/// The `.seal` beside each `.cwasm`.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Seal {
    kind: CodeKind,
    source_size: u64,
    length: u64,
    digest: Digest,
    /// The `.cwasm`'s stamp when `digest` was last checked against it; none
    /// until a check happens at a settled stamp.
    checked: Option<Stamp>,
}

impl CompiledCache {
    /// The cache for `engine` inside `bucket` (see [`crate::CacheDir::compiled`]).
    pub(crate) fn new(bucket: &Path, engine: &Engine) -> Self {
        Self {
            dir: bucket.join(engine_fingerprint(engine)),
        }
    }

    fn path(&self, digest: &Digest, extension: &str) -> PathBuf {
        self.dir.join(format!("{}.{extension}", digest.to_hex()))
    }

    /// The compiled code for `digest`, if a sound entry exists.
    pub(crate) fn load(&self, engine: &Engine, digest: &Digest) -> Option<Cached> {
        let code_path = self.path(digest, CODE);
        let Some(mut seal) = read_seal(&self.path(digest, SEAL)).ok()? else {
            // No entry, or a `.cwasm` without a readable seal (torn, or
            // written by a cairn that kept its digest inside the file).
            if code_path.exists() {
                self.drop_entry(digest, "it has no readable seal");
            }
            return None;
        };
        let file = match File::open(&code_path) {
            Ok(file) => file,
            Err(_) => {
                self.drop_entry(digest, "its compiled code is missing");
                return None;
            }
        };
        let stamp = Stamp::of(&file.metadata().ok()?);
        // The file as opened, whatever replaces `code_path` meanwhile.
        let opened = opened_path(&file, &code_path);
        if stamp.size != seal.length {
            self.drop_entry(digest, "its length is not the sealed one");
            return None;
        }
        if seal.checked != Some(stamp) {
            if digest_of_file(&opened).ok()? != seal.digest {
                self.drop_entry(digest, "its digest is not the sealed one");
                return None;
            }
            if stamp.settled(racy_after()) {
                seal.checked = Some(stamp);
                self.write_seal(digest, &seal);
            }
        }
        self.map(engine, digest, &opened, &seal)
    }

    /// Maps the checked `.cwasm` at `path` as the code `seal` describes.
    fn map(&self, engine: &Engine, digest: &Digest, path: &Path, seal: &Seal) -> Option<Cached> {
        // SAFETY: deserializing trusts its input to be machine code wasmtime
        // produced for this engine. The entry sits under this engine's
        // compatibility fingerprint, was written only by `store` below from
        // `serialize`, and its digest was checked against the seal at this
        // stamp; wasmtime itself refuses a component read as a module or the
        // reverse. The mapping is private and cairn replaces entries by
        // renaming, never in place. (Whoever can write the cache folder can
        // also replace the `cairn` binary; the cache is no weaker than that.)
        #[allow(unsafe_code)]
        let code = unsafe {
            match seal.kind {
                CodeKind::Component => Component::deserialize_file(engine, path).map(Code::Component),
                CodeKind::Module => Module::deserialize_file(engine, path).map(Code::Module),
            }
        };
        match code {
            Ok(code) => Some(Cached {
                code,
                source_size: seal.source_size,
            }),
            Err(error) => {
                self.drop_entry(digest, &format!("wasmtime cannot load it: {error}"));
                None
            }
        }
    }

    /// Saves `code`, compiled from `source_size` bytes named `digest`.
    pub(crate) fn store(&self, digest: &Digest, code: &Code, source_size: u64) -> io::Result<()> {
        let (kind, serialized) = match code {
            Code::Component(component) => (CodeKind::Component, component.serialize()),
            Code::Module(module) => (CodeKind::Module, module.serialize()),
        };
        let serialized = serialized.map_err(|error| io::Error::other(error.to_string()))?;
        fs::create_dir_all(&self.dir)?;
        write_atomically(&self.path(digest, CODE), &serialized)?;
        let seal = Seal {
            kind,
            source_size,
            length: serialized.len() as u64,
            digest: Digest::of(&serialized),
            checked: None,
        };
        write_atomically(&self.path(digest, SEAL), &seal_bytes(&seal))
    }

    fn write_seal(&self, digest: &Digest, seal: &Seal) {
        if let Err(error) = write_atomically(&self.path(digest, SEAL), &seal_bytes(seal)) {
            tracing::debug!(%error, "cannot record that a compiled component was checked; it will be checked again");
        }
    }

    fn drop_entry(&self, digest: &Digest, why: &str) {
        let path = self.path(digest, CODE);
        tracing::warn!(path = %path.display(), "dropping a compiled component ({why}); it will be recompiled");
        remove_entry(&path);
    }
}

/// The seal at `path`: none when there is none or it does not parse (then
/// its entry is damaged); an error when it cannot be read just now.
fn read_seal(path: &Path) -> io::Result<Option<Seal>> {
    match fs::read(path) {
        Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

fn seal_bytes(seal: &Seal) -> Vec<u8> {
    serde_json::to_vec(seal).unwrap_or_default()
}

/// Removes both files of the entry `path` (its `.cwasm` or its `.seal`) names.
fn remove_entry(path: &Path) {
    let _ = fs::remove_file(path.with_extension(CODE));
    let _ = fs::remove_file(path.with_extension(SEAL));
}

/// The blake3 digest of the file at `path`, mapped and hashed on all cores.
fn digest_of_file(path: &Path) -> io::Result<Digest> {
    let mut hasher = blake3::Hasher::new();
    hasher.update_mmap_rayon(path)?;
    Ok(Digest::from_hasher(&hasher))
}

/// A path that opens `file` itself, the very inode that was checked, even
/// if `path` is replaced meanwhile: its `/proc/self/fd` link where there is
/// one (wasmtime maps components by path only).
fn opened_path(file: &File, path: &Path) -> PathBuf {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let link = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
        if link.exists() {
            return link;
        }
    }
    let _ = file;
    path.to_owned()
}

/// Checks a compiled-cache entry in full, for `cairn cache verify`: its
/// seal, length and digest. An entry is checked through its `.cwasm` (so its
/// code is hashed once); a `.seal` counts as an entry only when its `.cwasm`
/// is missing. `Some(intact)` for an entry, a damaged one removed; `None`
/// for any other file, and for a file no longer there.
pub fn verify_entry(path: &Path) -> Option<bool> {
    let (code, seal) = (path.with_extension(CODE), path.with_extension(SEAL));
    let intact = match path.extension().and_then(|extension| extension.to_str()) {
        Some(CODE) => read_seal(&seal).ok().flatten().is_some_and(|sealed| {
            fs::metadata(&code).is_ok_and(|metadata| metadata.len() == sealed.length)
                && digest_of_file(&code).is_ok_and(|digest| digest == sealed.digest)
        }),
        // A seal whose code is gone (an entry removed a moment ago is
        // neither: it is not reported twice).
        Some(SEAL) if !code.exists() && seal.exists() => false,
        _ => return None,
    };
    if !intact {
        remove_entry(path);
    }
    Some(intact)
}

/// A short name for everything about `engine` that decides whether compiled
/// code is reusable, from wasmtime's own compatibility hash.
fn engine_fingerprint(engine: &Engine) -> String {
    struct Blake3Hasher(blake3::Hasher);
    impl Hasher for Blake3Hasher {
        fn finish(&self) -> u64 {
            let mut first = [0u8; 8];
            first.copy_from_slice(&self.0.finalize().as_bytes()[..8]);
            u64::from_le_bytes(first)
        }
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
    }
    let mut hasher = Blake3Hasher(blake3::Hasher::new());
    std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut hasher);
    hasher.0.finalize().to_hex()[..16].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> Engine {
        Engine::default()
    }

    /// An empty component, compiled and stored under a made-up digest.
    fn stored(cache: &CompiledCache) -> Digest {
        let engine = engine();
        // `\0asm`, then the component layer's version: `(component)`.
        let empty = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
        let component = Component::new(&engine, empty).expect("compiles");
        let digest = Digest::of(b"an empty component");
        cache.store(&digest, &Code::Component(component), 11).expect("stored");
        digest
    }

    fn seal_of(cache: &CompiledCache, digest: &Digest) -> Seal {
        serde_json::from_slice(&fs::read(cache.path(digest, SEAL)).expect("a seal")).expect("parses")
    }

    #[test]
    fn an_entry_loads_with_its_source_size_and_is_sealed_once_settled() {
        let root = tempfile::tempdir().expect("tempdir");
        let cache = CompiledCache::new(root.path(), &engine());
        let digest = stored(&cache);
        assert_eq!(seal_of(&cache, &digest).checked, None, "a fresh stamp is not trusted");
        let cached = cache.load(&engine(), &digest).expect("loads");
        assert_eq!(cached.source_size, 11);
        assert!(matches!(cached.code, Code::Component(_)));

        // Set the file's times back past the racy window: its next check is
        // remembered by the (new, settled) stamp.
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
        File::options()
            .write(true)
            .open(cache.path(&digest, CODE))
            .and_then(|file| file.set_modified(old))
            .expect("set the time");
        // The change time moved with `set_modified`: wait it out.
        std::thread::sleep(cairn_core::stamp::RACY_WINDOW + std::time::Duration::from_millis(100));
        cache.load(&engine(), &digest).expect("loads");
        let code = File::open(cache.path(&digest, CODE)).expect("open");
        assert_eq!(
            seal_of(&cache, &digest).checked,
            Some(Stamp::of(&code.metadata().expect("stat"))),
        );
        assert!(cache.load(&engine(), &digest).is_some(), "a sealed stamp loads");
    }

    #[test]
    fn damaged_entries_are_dropped_never_mapped() {
        /// What a damage is called, and how to do it to an entry's `.cwasm`.
        type Damage = (&'static str, fn(&Path));
        let damages: [Damage; 4] = [
            ("a flipped bit", |code| {
                let mut bytes = fs::read(code).expect("read");
                let middle = bytes.len() / 2;
                bytes[middle] ^= 0x10;
                fs::write(code, bytes).expect("write");
            }),
            ("a truncation", |code| {
                let bytes = fs::read(code).expect("read");
                fs::write(code, &bytes[..bytes.len() - 1]).expect("write");
            }),
            ("a lost seal", |code| {
                fs::remove_file(code.with_extension(SEAL)).expect("rm")
            }),
            ("a garbled seal", |code| {
                fs::write(code.with_extension(SEAL), b"{\"kind\":").expect("write")
            }),
        ];
        for (damage, apply) in damages {
            let root = tempfile::tempdir().expect("tempdir");
            let cache = CompiledCache::new(root.path(), &engine());
            let digest = stored(&cache);
            apply(&cache.path(&digest, CODE));
            assert!(cache.load(&engine(), &digest).is_none(), "{damage} was loaded");
            assert!(!cache.path(&digest, CODE).exists(), "{damage} left its code");
            assert!(!cache.path(&digest, SEAL).exists(), "{damage} left its seal");
        }
    }

    #[test]
    fn verify_checks_every_digest_in_full() {
        let root = tempfile::tempdir().expect("tempdir");
        let cache = CompiledCache::new(root.path(), &engine());
        let digest = stored(&cache);
        let code = cache.path(&digest, CODE);
        assert_eq!(verify_entry(&code), Some(true));
        assert_eq!(verify_entry(&code.with_extension(SEAL)), None, "checked with its code");
        let mut bytes = fs::read(&code).expect("read");
        bytes[0] ^= 1;
        fs::write(&code, bytes).expect("write");
        assert_eq!(verify_entry(&code), Some(false));
        assert!(!code.exists() && !code.with_extension(SEAL).exists());
        assert_eq!(
            verify_entry(&code.with_extension(SEAL)),
            None,
            "an entry already removed is not reported twice"
        );

        let orphan = root.path().join("orphan.seal");
        fs::write(&orphan, b"{}").expect("write");
        assert_eq!(verify_entry(&orphan), Some(false));
        assert!(!orphan.exists(), "an orphaned seal is removed");
    }

    proptest::proptest! {
        /// Fuzz target: a damaged seal never lets an entry load as other
        /// than it was sealed.
        #[test]
        fn fuzz_seals(edits in cairn_core::mutate::edits()) {
            let root = tempfile::tempdir().expect("tempdir");
            let cache = CompiledCache::new(root.path(), &engine());
            let digest = stored(&cache);
            let seal_path = cache.path(&digest, SEAL);
            let original = fs::read(&seal_path).expect("read");
            let damaged = cairn_core::mutate::mutate(&original, &edits);
            fs::write(&seal_path, &damaged).expect("write");
            if let Some(cached) = cache.load(&engine(), &digest) {
                // Only an edit that leaves the seal meaning the same may load.
                let read: Seal = serde_json::from_slice(&damaged).expect("it parsed to load");
                proptest::prop_assert_eq!(read.digest, seal_of_original(&original).digest);
                proptest::prop_assert_eq!(read.length, seal_of_original(&original).length);
                proptest::prop_assert!(matches!(cached.code, Code::Component(_)));
            }
        }
    }

    fn seal_of_original(bytes: &[u8]) -> Seal {
        serde_json::from_slice(bytes).expect("parses")
    }
}
