//! How keys of any size fit LMDB's 511-byte key limit, keeping key order.
//!
//! A key of at most [`MAX_RAW`] bytes is stored as it is. A longer key is stored under its first
//! [`MAX_RAW`] bytes followed by the SHA-256 of the whole key ([`ENCODED_LEN`] = 511 bytes in all),
//! and the rest of the key (past the prefix) is kept at the front of the stored value, so that a
//! read compares the whole key and two long keys are never confused. The length is the tag: a
//! stored key is either at most [`MAX_RAW`] bytes (a short key) or exactly [`ENCODED_LEN`] bytes
//! (an encoded long one), so a short key can never be mistaken for an encoded one.
//!
//! The empty key, which LMDB does not take, is stored as [`EMPTY_STORED`] (480 zero bytes, a
//! length no other stored key has); a scan that may include it reads it first, before every
//! other key, where it belongs.
//!
//! Order: comparing a short key with any other key gives the same answer on the stored forms as
//! on the real keys (a short key that is a prefix of a long one sorts first on both). Long keys
//! that share their [`MAX_RAW`]-byte prefix lie next to each other in hash order: a scan collects
//! such a group and sorts it by the real keys (see `LmdbTxn::scan`), so iteration and ranges are
//! in real key order for all keys.
//!
//! Stored value of a long key: the length of the key's rest (`u64`, big-endian), the rest, then
//! the user's value bytes.

use std::borrow::Cow;

use sha2::{Digest, Sha256};

/// Keys up to this many bytes are stored as they are.
pub(super) const MAX_RAW: usize = 511 - HASH_LEN;
const HASH_LEN: usize = 32;
/// The stored length of every long key.
pub(super) const ENCODED_LEN: usize = MAX_RAW + HASH_LEN;
const LEN_LEN: usize = 8;

/// The stored form of the empty key.
pub(super) const EMPTY_STORED: [u8; MAX_RAW + 1] = [0; MAX_RAW + 1];

/// Whether `key` (a real key) is stored under a prefix and a hash.
pub(super) fn is_long(key: &[u8]) -> bool {
    key.len() > MAX_RAW
}

/// Whether `stored` (a stored key) is an encoded long key.
pub(super) fn is_encoded(stored: &[u8]) -> bool {
    stored.len() == ENCODED_LEN
}

/// Whether `stored` (a stored key) is the empty key's.
pub(super) fn is_empty_stored(stored: &[u8]) -> bool {
    stored.len() == EMPTY_STORED.len()
}

/// The stored form of a real key.
pub(super) fn encode(key: &[u8]) -> Cow<'_, [u8]> {
    if key.is_empty() {
        return Cow::Borrowed(&EMPTY_STORED);
    }
    if !is_long(key) {
        return Cow::Borrowed(key);
    }
    let mut out = Vec::with_capacity(ENCODED_LEN);
    out.extend_from_slice(&key[..MAX_RAW]);
    out.extend_from_slice(&Sha256::digest(key));
    Cow::Owned(out)
}

/// The first stored key of the group of long keys sharing `key`'s prefix (`key` is long).
pub(super) fn group_start(key: &[u8]) -> Vec<u8> {
    let mut out = key[..MAX_RAW].to_vec();
    out.resize(ENCODED_LEN, 0x00);
    out
}

/// The last possible stored key of the group of long keys sharing `key`'s prefix (`key` is long).
pub(super) fn group_end(key: &[u8]) -> Vec<u8> {
    let mut out = key[..MAX_RAW].to_vec();
    out.resize(ENCODED_LEN, 0xff);
    out
}

/// The stored value of a long key: its rest past the prefix, then the value.
pub(super) fn wrap_value(key: &[u8], value: &[u8]) -> Vec<u8> {
    let rest = &key[MAX_RAW..];
    let mut out = Vec::with_capacity(LEN_LEN + rest.len() + value.len());
    out.extend_from_slice(&(rest.len() as u64).to_be_bytes());
    out.extend_from_slice(rest);
    out.extend_from_slice(value);
    out
}

/// Splits the stored value of an encoded long key into the key's rest and the value; `None` when
/// the bytes are not such a value (corruption).
pub(super) fn split_value(stored_value: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = stored_value.split_first_chunk::<LEN_LEN>()?;
    let len = usize::try_from(u64::from_be_bytes(*len)).ok()?;
    (len <= rest.len()).then(|| rest.split_at(len))
}

/// The real key and the value of a stored long entry; `None` when the entry is corrupt (its
/// value does not hold a key rest, or the rest does not hash to the stored key).
pub(super) fn decode<'v>(stored_key: &[u8], stored_value: &'v [u8]) -> Option<(Vec<u8>, &'v [u8])> {
    let (rest, value) = split_value(stored_value)?;
    let mut key = Vec::with_capacity(MAX_RAW + rest.len());
    key.extend_from_slice(stored_key.get(..MAX_RAW)?);
    key.extend_from_slice(rest);
    (is_long(&key) && encode(&key).as_ref() == stored_key).then_some((key, value))
}

/// The value bytes stored for `key` (a long key) if `stored_value` really belongs to it; `None`
/// when it does not hold a key rest equal to `key`'s (never for SHA-256 unless the data is corrupt).
pub(super) fn value_for<'v>(key: &[u8], stored_value: &'v [u8]) -> Option<&'v [u8]> {
    let (rest, value) = split_value(stored_value)?;
    (rest == &key[MAX_RAW..]).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_keys_are_stored_as_they_are_and_long_ones_at_511_bytes() {
        assert_eq!(encode(b"").as_ref(), EMPTY_STORED.as_slice());
        assert!(is_empty_stored(&encode(b"")) && !is_encoded(&encode(b"")));
        let k = vec![7u8; MAX_RAW];
        assert_eq!(encode(&k).as_ref(), k.as_slice());
        for len in [MAX_RAW + 1, 511, 512, 1_000_000] {
            let k = vec![7u8; len];
            let e = encode(&k);
            assert_eq!(e.len(), ENCODED_LEN, "{len}");
            assert!(is_encoded(&e));
            assert_eq!(&e[..MAX_RAW], &k[..MAX_RAW]);
        }
    }

    #[test]
    fn long_keys_sharing_a_prefix_differ_and_decode_to_themselves() {
        let a = vec![1u8; 600];
        let mut b = a.clone();
        b[599] = 2;
        let (ea, eb) = (encode(&a), encode(&b));
        assert_ne!(ea, eb);
        assert!(
            group_start(&a).as_slice() <= ea.as_ref() && ea.as_ref() <= group_end(&a).as_slice()
        );
        let va = wrap_value(&a, b"value-a");
        assert_eq!(decode(&ea, &va), Some((a.clone(), &b"value-a"[..])));
        assert_eq!(value_for(&a, &va), Some(&b"value-a"[..]));
        // `b`'s value under `a`'s stored key: not `a`'s.
        let vb = wrap_value(&b, b"value-b");
        assert_eq!(value_for(&a, &vb), None);
        assert_eq!(decode(&ea, &vb), None);
        assert_eq!(split_value(&[0, 0]), None);
        assert_eq!(split_value(&[0, 0, 0, 0, 0, 0, 0, 9, 1]), None);
    }
}
