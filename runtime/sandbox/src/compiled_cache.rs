//! Compiled components kept on disk, so Cranelift compiles each component
//! once per machine.
//!
//! An entry is `<bucket>/<engine fingerprint>/<component digest>.cwasm`: the
//! digest of the component's original bytes, under a folder named by the
//! engine's compatibility hash (wasmtime version, target, and every setting
//! that changes generated code), so a cairn upgrade or a config change never
//! loads stale machine code. Entries are written to a temporary file and
//! renamed, and carry a blake3 trailer checked before use: a torn or
//! bit-flipped file is deleted and recompiled, never executed.

use std::fs;
use std::hash::Hasher;
use std::io;
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::Module;
use wasmtime::component::Component;

use cairn_core::Digest;
use cairn_core::cache_dir::write_atomically;

const MAGIC: &[u8; 8] = b"cairnCW1";
const TRAILER: usize = 32;

/// The compiled-component folder for one engine configuration.
#[derive(Clone, Debug)]
pub(crate) struct CompiledCache {
    dir: PathBuf,
}

impl CompiledCache {
    /// The cache for `engine` inside `bucket` (see [`crate::CacheDir::compiled`]).
    pub(crate) fn new(bucket: &Path, engine: &Engine) -> Self {
        Self {
            dir: bucket.join(engine_fingerprint(engine)),
        }
    }

    fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(format!("{}.cwasm", digest.to_hex()))
    }

    /// The compiled component or module for `digest`, if a sound entry exists.
    pub(crate) fn load<C: Compiled>(&self, engine: &Engine, digest: &Digest) -> Option<C> {
        let path = self.path(digest);
        let bytes = fs::read(&path).ok()?;
        let Some(payload) = verified_payload(&bytes) else {
            tracing::warn!(path = %path.display(), "dropping a corrupt compiled component; it will be recompiled");
            let _ = fs::remove_file(&path);
            return None;
        };
        // SAFETY: deserializing trusts its input to be machine code wasmtime
        // produced for this engine. The entry sits under this engine's
        // compatibility fingerprint, was written only by `store` below from
        // `serialize`, and its blake3 trailer proves the bytes are the ones
        // written; wasmtime itself refuses a component read as a module or
        // the reverse. (Whoever can write the cache folder can also replace
        // the `cairn` binary; the cache is no weaker than that.)
        #[allow(unsafe_code)]
        let component = unsafe { C::deserialize(engine, payload) };
        match component {
            Ok(component) => Some(component),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "dropping an unloadable compiled component");
                let _ = fs::remove_file(&path);
                None
            }
        }
    }

    /// Saves `compiled`, compiled from the bytes named `digest`.
    pub(crate) fn store<C: Compiled>(&self, digest: &Digest, compiled: &C) -> io::Result<()> {
        let serialized = compiled
            .serialize()
            .map_err(|error| io::Error::other(error.to_string()))?;
        let mut bytes = Vec::with_capacity(MAGIC.len() + serialized.len() + TRAILER);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&serialized);
        bytes.extend_from_slice(blake3::hash(&serialized).as_bytes());
        fs::create_dir_all(&self.dir)?;
        write_atomically(&self.path(digest), &bytes)
    }
}

/// What the cache holds: compiled components and compiled core modules
/// (preview1 programs, which run natively on WASI preview1).
pub(crate) trait Compiled: Sized {
    /// The engine's serialized form.
    fn serialize(&self) -> wasmtime::Result<Vec<u8>>;

    /// # Safety
    /// `bytes` must be what [`Compiled::serialize`] produced with an engine
    /// of the same configuration.
    #[allow(unsafe_code)]
    unsafe fn deserialize(engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Self>;
}

impl Compiled for Component {
    fn serialize(&self) -> wasmtime::Result<Vec<u8>> {
        Component::serialize(self)
    }

    #[allow(unsafe_code)]
    unsafe fn deserialize(engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Self> {
        // SAFETY: passed on to the caller of `Compiled::deserialize`.
        unsafe { Component::deserialize(engine, bytes) }
    }
}

impl Compiled for Module {
    fn serialize(&self) -> wasmtime::Result<Vec<u8>> {
        Module::serialize(self)
    }

    #[allow(unsafe_code)]
    unsafe fn deserialize(engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Self> {
        // SAFETY: passed on to the caller of `Compiled::deserialize`.
        unsafe { Module::deserialize(engine, bytes) }
    }
}

/// Whether the compiled-cache entry at `path` is intact (for `cairn cache verify`).
pub fn entry_intact(path: &Path) -> bool {
    fs::read(path).is_ok_and(|bytes| verified_payload(&bytes).is_some())
}

/// The serialized component inside an entry, when the magic and the trailer match.
fn verified_payload(bytes: &[u8]) -> Option<&[u8]> {
    let rest = bytes.strip_prefix(MAGIC)?;
    let split = rest.len().checked_sub(TRAILER)?;
    let (payload, trailer) = rest.split_at(split);
    (blake3::hash(payload).as_bytes() == trailer).then_some(payload)
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

    #[test]
    fn payloads_are_checked_against_their_trailer() {
        let payload = b"compiled code".to_vec();
        let mut entry = MAGIC.to_vec();
        entry.extend_from_slice(&payload);
        entry.extend_from_slice(blake3::hash(&payload).as_bytes());
        assert_eq!(verified_payload(&entry), Some(payload.as_slice()));

        let mut flipped = entry.clone();
        flipped[MAGIC.len() + 3] ^= 1;
        assert_eq!(verified_payload(&flipped), None);
        assert_eq!(verified_payload(&entry[..entry.len() - 1]), None);
        assert_eq!(verified_payload(b"cairnCW1"), None);
        assert_eq!(verified_payload(b""), None);
    }

    proptest::proptest! {
        /// Fuzz target: a damaged compiled-cache entry is never accepted.
        #[test]
        fn fuzz_compiled_entries(edits in cairn_core::mutate::edits()) {
            let payload = b"compiled code".to_vec();
            let mut entry = MAGIC.to_vec();
            entry.extend_from_slice(&payload);
            entry.extend_from_slice(blake3::hash(&payload).as_bytes());
            let damaged = cairn_core::mutate::mutate(&entry, &edits);
            if damaged != entry {
                proptest::prop_assert_eq!(verified_payload(&damaged), None);
            }
        }
    }
}
