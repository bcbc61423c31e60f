//! The randomness a stage sees. Seeded by default, so the same stage on the
//! same inputs draws the same numbers (hash maps iterate the same way,
//! generated names come out the same) and its output stays reproducible.

use std::collections::BTreeMap;

use rand::SeedableRng;
use rand::rngs::ChaCha20Rng;
use wasmtime_wasi::WasiCtxBuilder;

use super::Invocation;
use cairn_core::Digest;

/// Which random source a stage reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Random {
    /// ChaCha20 streams derived from this seed (cairn uses the stage key), for
    /// `wasi:random/random`, `wasi:random/insecure` and the insecure seed.
    Seeded([u8; 32]),
    /// The host's cryptographic generator (`random = "secure"`).
    Secure,
}

pub(crate) fn grant(builder: &mut WasiCtxBuilder, random: Random) {
    if let Random::Seeded(seed) = random {
        // Independent streams per interface, so reading one does not shift the other.
        let derive = |purpose: &str| blake3::derive_key(&format!("cairn 2026 sandbox random: {purpose}"), &seed);
        builder.secure_random(ChaCha20Rng::from_seed(derive("random")));
        builder.insecure_random(ChaCha20Rng::from_seed(derive("insecure")));
        let insecure_seed = derive("insecure-seed");
        let mut first = [0u8; 16];
        first.copy_from_slice(&insecure_seed[..16]);
        builder.insecure_random_seed(u128::from_le_bytes(first));
    }
}

/// The seed of a stage's randomness: a digest of what identifies its run (the
/// component, the invocation, the environment), so the same stage run draws
/// the same numbers on any machine and a different run different ones.
pub fn seed(component: Digest, invocation: &Invocation, env: &BTreeMap<String, String>) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_derive_key("cairn 2026 stage random seed v1");
    hasher.update(component.as_bytes());
    for part in std::iter::once(&invocation.stage)
        .chain(&invocation.args)
        .chain(invocation.config.iter().flat_map(|(key, value)| [key, value]))
        .chain(env.iter().flat_map(|(key, value)| [key, value]))
    {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    *hasher.finalize().as_bytes()
}
