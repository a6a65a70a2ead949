//! Key-to-partition mapping, byte for byte what the Java clients do.
//!
//! Owns: [`murmur2`] and [`partition_for_key`]. Java's `DefaultPartitioner`/`BuiltInPartitioner`
//! maps a non-null key to `toPositive(murmur2(key)) % numPartitions`; kstreams does the same so that a
//! Java consumer or Kafka Streams application sees every key in the partition it expects.

/// Kafka's murmur2 hash (`org.apache.kafka.common.utils.Utils.murmur2`).
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let length = data.len();
    let mut h: u32 = SEED ^ (length as u32);
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for chunk in chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    // Java sign-extends each byte ((data[i] & 0xff) is applied, so no sign extension here).
    match tail.len() {
        3 => {
            h ^= (tail[2] as u32) << 16;
            h ^= (tail[1] as u32) << 8;
            h ^= tail[0] as u32;
            h = h.wrapping_mul(M);
        }
        2 => {
            h ^= (tail[1] as u32) << 8;
            h ^= tail[0] as u32;
            h = h.wrapping_mul(M);
        }
        1 => {
            h ^= tail[0] as u32;
            h = h.wrapping_mul(M);
        }
        _ => {}
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Java's default partitioner picks for a non-null key.
///
/// ```
/// // Kafka's own test vector: murmur2("21") == -973932308.
/// assert_eq!(kstreams::partitioner::murmur2(b"21"), -973932308);
/// assert_eq!(kstreams::partitioner::partition_for_key(b"21", 3), (-973932308i32 & 0x7fffffff) as i32 % 3);
/// ```
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    debug_assert!(partitions > 0);
    (murmur2(key) & 0x7fff_ffff) % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Test vectors from Kafka's UtilsTest.testMurmur2.
    #[test]
    fn murmur2_matches_java_test_vectors() {
        let cases: &[(&[u8], i32)] = &[
            (b"21", -973932308),
            (b"foobar", -790332482),
            (b"a-little-bit-long-string", -985981536),
            (b"a-little-bit-longer-string", -1486304829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58897971,
            ),
            (b"abc", 479470107),
        ];
        for (input, expected) in cases {
            assert_eq!(
                murmur2(input),
                *expected,
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn partition_is_never_negative() {
        for i in 0..1000u32 {
            let p = partition_for_key(&i.to_be_bytes(), 7);
            assert!((0..7).contains(&p));
        }
    }
}
