//! Byte mutations for the fuzz targets: the property tests of every crate
//! that parses what a user, a registry or a damaged cache hands it
//! (`cairn.toml`, conditions, the state file, compiled code, `cairn.lock`,
//! OCI manifests). A test draws the edits (proptest shrinks them to the
//! smallest failing set); this applies them to a corpus input the same way
//! every time.

/// Applies `edits` to `seed`, in order: each is `(position, operation,
/// byte)`, the position taken modulo the current length, the operation one
/// of flip the byte's bits, insert the byte, delete, truncate there, or
/// duplicate the rest.
pub fn mutate(seed: &[u8], edits: &[(usize, u8, u8)]) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for &(position, operation, byte) in edits {
        let at = if bytes.is_empty() { 0 } else { position % bytes.len() };
        match operation % 5 {
            0 if !bytes.is_empty() => bytes[at] ^= byte.max(1),
            1 => bytes.insert(at, byte),
            2 if !bytes.is_empty() => {
                bytes.remove(at);
            }
            3 => bytes.truncate(at),
            4 => {
                let rest = bytes[at..].to_vec();
                bytes.extend_from_slice(&rest);
            }
            _ => bytes.push(byte),
        }
    }
    bytes
}

/// The edits a fuzz target draws: up to 16, anywhere, of any kind.
#[cfg(feature = "fuzzing")]
pub fn edits() -> impl proptest::strategy::Strategy<Value = Vec<(usize, u8, u8)>> {
    use proptest::prelude::any;
    proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 0..16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_apply_in_order_and_never_panic_on_empty_input() {
        assert_eq!(mutate(b"abc", &[]), b"abc");
        assert_eq!(mutate(b"abc", &[(1, 0, 0x20)]), b"aBc");
        assert_eq!(mutate(b"abc", &[(1, 1, b'x')]), b"axbc");
        assert_eq!(mutate(b"abc", &[(1, 2, 0)]), b"ac");
        assert_eq!(mutate(b"abc", &[(1, 3, 0)]), b"a");
        assert_eq!(mutate(b"abc", &[(1, 4, 0)]), b"abcbc");
        assert_eq!(mutate(b"", &[(7, 0, 1), (3, 2, 0), (9, 1, b'z')]), b"z");
    }
}
