//! FNV-1a, 64 bits: a stable hash for content that is saved and compared across runs and
//! machines (data-file fingerprints, the texts a batch must not repeat). Not for security.

pub fn fnv1a(bytes: &[u8]) -> u64 {
    fnv1a_continue(FNV1A_START, bytes)
}

/// FNV-1a's value before any byte.
pub const FNV1A_START: u64 = 0xcbf2_9ce4_8422_2325;

/// The hash of what `hash` covered followed by `bytes`: content hashed piece by piece,
/// without joining it into one buffer first.
pub fn fnv1a_continue(mut hash: u64, bytes: &[u8]) -> u64 {
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_values() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(super::fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(super::fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(super::fnv1a_continue(super::fnv1a(b"ab"), b"c"), super::fnv1a(b"abc"));
    }
}
