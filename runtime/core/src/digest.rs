//! Content digests: the names cairn gives bytes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A blake3 digest. Printed and parsed as `blake3:<64 hex digits>`, so a digest
/// in a log, a lock file or a cache path says which hash it is.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest([u8; 32]);

/// What a digest's text begins with.
const PREFIX: &str = "blake3:";

/// A string that is not `blake3:` followed by 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a digest (expected `blake3:` and 64 hex digits)")]
pub struct DigestParseError(String);

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        if bytes.len() < PARALLEL_FROM {
            return Digest(*blake3::hash(bytes).as_bytes());
        }
        let mut hasher = blake3::Hasher::new();
        hasher.update_rayon(bytes);
        Self::from_hasher(&hasher)
    }

    /// A digest from its raw bytes (as stored in a tree).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Digest(bytes)
    }

    /// Wraps a finished hasher.
    pub fn from_hasher(hasher: &blake3::Hasher) -> Self {
        Digest(*hasher.finalize().as_bytes())
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A digest written as [`Digest::to_hex`] writes it (a name on a
    /// server, where the prefix's colon is not allowed); `None` for
    /// anything else.
    pub fn from_hex(hex: &str) -> Option<Self> {
        blake3::Hash::from_hex(hex).ok().map(|hash| Digest(*hash.as_bytes()))
    }

    /// The 64 lower-case hex digits, without the `blake3:` prefix (for file names).
    pub fn to_hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }

    /// The first 12 hex digits, for messages where the full digest is noise.
    pub fn short(&self) -> String {
        self.to_hex()[..12].to_owned()
    }
}

/// From this size on, bytes are hashed on all cores (a JavaScript or Python
/// component is 14 to 18 MB); below it, threads cost more than they save.
const PARALLEL_FROM: usize = 1 << 20;

impl fmt::Display for Digest {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{PREFIX}{}", blake3::Hash::from_bytes(self.0).to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, formatter)
    }
}

impl FromStr for Digest {
    type Err = DigestParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || DigestParseError(text.to_owned());
        let hex = text.strip_prefix(PREFIX).ok_or_else(error)?;
        blake3::Hash::from_hex(hex)
            .map(|hash| Digest(*hash.as_bytes()))
            .map_err(|_| error())
    }
}

/// `blake3:<hex>` in human-readable formats (JSON), 32 raw bytes in binary
/// ones (the workspace state), where it is most of what is stored.
impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            // Written whole from the stack: records of a thousand stages
            // hold two thousand of these.
            let hex = blake3::Hash::from_bytes(self.0).to_hex();
            let mut text = [0u8; PREFIX.len() + 64];
            text[..PREFIX.len()].copy_from_slice(PREFIX.as_bytes());
            text[PREFIX.len()..].copy_from_slice(hex.as_bytes());
            serializer.serialize_str(std::str::from_utf8(&text).map_err(serde::ser::Error::custom)?)
        } else {
            self.0.serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            text.parse().map_err(serde::de::Error::custom)
        } else {
            <[u8; 32]>::deserialize(deserializer).map(Digest)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_print_and_parse_with_their_algorithm() {
        let digest = Digest::of(b"cairn");
        let text = digest.to_string();
        assert!(text.starts_with("blake3:"));
        assert_eq!(text.len(), "blake3:".len() + 64);
        assert_eq!(text.parse::<Digest>(), Ok(digest));
        assert!("sha256:00".parse::<Digest>().is_err());
        assert!("blake3:xyz".parse::<Digest>().is_err());
    }
}
