//! FNV-1a, 64 bits: a hash that is the same on every platform and in every release (std's
//! `DefaultHasher` promises neither), for what is stored (the model's checksum, lineage tags)
//! and for keys hashed once and compared often.

/// The FNV-1a 64-bit offset basis: the hash of no bytes.
pub const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// The FNV-1a 64-bit prime.
pub const PRIME: u64 = 0x0100_0000_01b3;

/// Continues the hash `h` with `bytes`, multiplying by `prime` (another prime makes another,
/// independent lane).
#[inline]
#[must_use]
pub fn fnv1a_from(h: u64, prime: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(h, |h, &b| (h ^ u64::from(b)).wrapping_mul(prime))
}

/// The FNV-1a hash of `bytes`.
#[inline]
#[must_use]
pub fn fnv1a(bytes: &[u8]) -> u64 {
    fnv1a_from(OFFSET, PRIME, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_values() {
        // The published FNV-1a 64 test vectors.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
        assert_eq!(fnv1a_from(fnv1a(b"foo"), PRIME, b"bar"), fnv1a(b"foobar"));
    }
}
