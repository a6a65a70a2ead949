//! From rdkafka's messages to kstreams' raw records.
//!
//! Owns: [`raw_record`], the one place the runtime turns a consumed message into a
//! [`RawRecord`], and the reading of librdkafka's header lists. rdkafka 0.39's `Headers::get`
//! builds each name with `to_str().unwrap()` and panics on a name that is not UTF-8, which any
//! non-Java producer may write; here names are read as bytes through librdkafka's C API (see
//! [`Headers`] for what a non-UTF-8 name looks like to a processor). Nothing here can fail:
//! keys, values and header values are bytes, and deserializing them is the source's job (with
//! its `OnBadRecord` policy).

use std::ffi::CStr;

use rdkafka::Timestamp;
use rdkafka::bindings as rd;
use rdkafka::message::{BorrowedMessage, Message};

use crate::record::{Headers, RawRecord};

/// The raw record of a consumed message: key, value and headers as bytes (borrowed where the
/// client's buffers allow), the message's timestamp (`now` when it has none) and offset.
pub(crate) fn raw_record<'a>(m: &'a BorrowedMessage<'a>, now: i64) -> RawRecord<'a> {
    raw_from_parts(
        m.key(),
        m.payload(),
        m.timestamp(),
        m.offset(),
        message_headers(m),
        now,
    )
}

/// [`raw_record`] of a message's parts (unit-testable without a client).
pub(super) fn raw_from_parts<'a>(
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    timestamp: Timestamp,
    offset: i64,
    headers: Headers,
    now: i64,
) -> RawRecord<'a> {
    RawRecord {
        key,
        value,
        timestamp: timestamp.to_millis().unwrap_or(now),
        offset,
        headers,
    }
}

/// The headers of a consumed message (none when it has none).
pub(crate) fn message_headers(m: &BorrowedMessage<'_>) -> Headers {
    // SAFETY: `m.ptr()` is the message's librdkafka pointer, valid while `m` lives, and only
    // this thread uses it.
    unsafe { native_message_headers(m.ptr()) }
}

/// The headers of a consumed librdkafka message (none when it has none).
///
/// # Safety
/// `m` must point to a live consumed message that nothing else modifies or frees during the call.
pub(super) unsafe fn native_message_headers(m: *mut rd::rd_kafka_message_t) -> Headers {
    let mut list: *mut rd::rd_kafka_headers_t = std::ptr::null_mut();
    // SAFETY: the caller guarantees `m` is live; librdkafka writes the message's own header list
    // (parsed on first use, owned by the message) to `list`.
    let err = unsafe { rd::rd_kafka_message_headers(m, &mut list) };
    if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || list.is_null() {
        return Headers::new();
    }
    // SAFETY: `list` belongs to `m`, which outlives the call and is not modified meanwhile (the
    // caller's guarantee).
    unsafe { headers_from_native(list) }
}

/// Copies a librdkafka header list into [`Headers`], names as bytes (a name that is not UTF-8
/// is kept as such: [`Headers::push_raw`]), values as bytes (`None` for a null value).
///
/// # Safety
/// `list` must point to a live librdkafka header list that nothing modifies or frees during the
/// call. (librdkafka keeps each name NUL-terminated, so a name ends at its first NUL byte.)
unsafe fn headers_from_native(list: *const rd::rd_kafka_headers_t) -> Headers {
    // SAFETY: the caller guarantees `list` is live and unchanged for this call.
    let count = unsafe { rd::rd_kafka_header_cnt(list) };
    let mut headers = Headers::new();
    for idx in 0..count {
        let mut name: *const std::ffi::c_char = std::ptr::null();
        let mut value: *const std::ffi::c_void = std::ptr::null();
        let mut size = 0usize;
        // SAFETY: as above; `idx < count`; the out-pointers are valid for writes.
        let err =
            unsafe { rd::rd_kafka_header_get_all(list, idx, &mut name, &mut value, &mut size) };
        if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
            continue;
        }
        // SAFETY: librdkafka's names are NUL-terminated and live as long as the list; a non-null
        // value points to `size` bytes that live as long as the list.
        let (name, value) = unsafe {
            let name = CStr::from_ptr(name).to_bytes().to_vec();
            let value = (!value.is_null())
                .then(|| std::slice::from_raw_parts(value.cast::<u8>(), size).to_vec());
            (name, value)
        };
        headers.push_raw(name, value);
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A librdkafka header list built through the C API (names of any bytes, as a non-Java
    /// producer writes them), destroyed on drop.
    struct NativeHeaders(*mut rd::rd_kafka_headers_t);

    impl NativeHeaders {
        fn new(headers: &[(Vec<u8>, Option<Vec<u8>>)]) -> Self {
            // SAFETY: a new list, filled with copies of the given bytes (librdkafka copies name
            // and value), owned by the returned value and destroyed once, on drop.
            unsafe {
                let list = rd::rd_kafka_headers_new(headers.len());
                for (name, value) in headers {
                    let (vp, vs) = match value {
                        Some(v) => (v.as_ptr().cast(), v.len() as isize),
                        None => (std::ptr::null(), 0),
                    };
                    let err = rd::rd_kafka_header_add(
                        list,
                        name.as_ptr().cast(),
                        name.len() as isize,
                        vp,
                        vs,
                    );
                    assert_eq!(err, rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR);
                }
                NativeHeaders(list)
            }
        }

        fn read(&self) -> Headers {
            // SAFETY: the list is live and unchanged while `self` is borrowed.
            unsafe { headers_from_native(self.0) }
        }
    }

    impl Drop for NativeHeaders {
        fn drop(&mut self) {
            // SAFETY: created by `rd_kafka_headers_new`, destroyed only here.
            unsafe { rd::rd_kafka_headers_destroy(self.0) }
        }
    }

    /// The names rdkafka 0.39 panics on are read as bytes; values, null values, empty names and
    /// empty values keep their form; order and repeats stay.
    #[test]
    fn header_names_that_are_not_utf8_are_read_as_bytes() {
        let input = vec![
            (vec![0xff, 0xfe, b'n'], Some(b"v1".to_vec())),
            (b"trace".to_vec(), None),
            (Vec::new(), Some(Vec::new())),
            (b"trace".to_vec(), Some(vec![0x80; 3])),
        ];
        let h = NativeHeaders::new(&input).read();
        let got: Vec<(Vec<u8>, Option<Vec<u8>>)> = h
            .iter_raw()
            .map(|(n, v)| (n.to_vec(), v.map(<[u8]>::to_vec)))
            .collect();
        assert_eq!(got, input);
        assert_eq!(h.last("trace"), Some(Some(&[0x80u8; 3][..])));
        assert_eq!(h.last_raw(&[0xff, 0xfe, b'n']), Some(Some(&b"v1"[..])));
        // What rdkafka's own accessor does with the same list (why this module exists).
        let list = NativeHeaders::new(&input[..1]);
        let rdkafka = std::panic::catch_unwind(|| {
            use rdkafka::message::Headers as _;
            // SAFETY: rdkafka's `BorrowedHeaders` is a zero-sized view of the native list (its
            // own `OwnedHeaders::as_borrowed` casts the same way); the list lives meanwhile.
            let b = unsafe { &*(list.0 as *const rdkafka::message::BorrowedHeaders) };
            b.get(0).key.len()
        });
        assert!(rdkafka.is_err(), "rdkafka 0.39 panics on a non-UTF-8 name");
    }

    fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            4 => prop::collection::vec(any::<u8>(), 0..16),
            1 => prop::collection::vec(any::<u8>(), 0..=max),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// Arbitrary header names (invalid UTF-8, empty) and values (null, empty, up to 1 MiB)
        /// come through as they were written (names up to their first NUL byte), never a panic.
        #[test]
        fn arbitrary_headers_come_through(
            input in prop::collection::vec(
                (bytes(64), prop::option::of(bytes(1 << 20))),
                0..6,
            )
        ) {
            let h = NativeHeaders::new(&input).read();
            prop_assert_eq!(h.len(), input.len());
            for ((name, value), (got_name, got_value)) in input.iter().zip(h.iter_raw()) {
                let until_nul = name.split(|b| *b == 0).next().unwrap_or_default();
                prop_assert_eq!(got_name, until_nul);
                prop_assert_eq!(got_value, value.as_deref());
            }
            for (text, _) in h.iter() {
                // The text view is always there (lossy), never a panic.
                let _ = text.len();
            }
        }
    }

    /// A record as a producer wrote it: key, value and headers, all of any bytes.
    type Written = (
        Option<Vec<u8>>,
        Option<Vec<u8>>,
        Vec<(Vec<u8>, Option<Vec<u8>>)>,
    );

    /// Bytes that are sometimes what a built-in serde reads (4 or 8 bytes, JSON-ish UTF-8) and
    /// often not (invalid UTF-8, empty, null, up to 1 MiB).
    fn field() -> impl Strategy<Value = Option<Vec<u8>>> {
        prop::option::weighted(
            0.85,
            prop_oneof![
                3 => prop::collection::vec(any::<u8>(), 0..12),
                2 => prop::collection::vec(any::<u8>(), 4..=4),
                2 => prop::collection::vec(any::<u8>(), 8..=8),
                2 => "[a-z0-9 \"{}\\[\\],:]{0,12}".prop_map(String::into_bytes),
                1 => prop::collection::vec(any::<u8>(), 0..=(1 << 20)),
            ],
        )
    }

    fn written() -> impl Strategy<Value = Written> {
        (
            field(),
            field(),
            prop::collection::vec((bytes(12), prop::option::of(bytes(64))), 0..3),
        )
    }

    fn policy() -> impl Strategy<Value = crate::task::OnBadRecord> {
        use crate::task::OnBadRecord;
        prop_oneof![
            Just(OnBadRecord::Fail),
            Just(OnBadRecord::Skip),
            Just(OnBadRecord::DeadLetter {
                topic: "dlq".into()
            }),
        ]
    }

    /// The header list a record has after the conversion: names end at a NUL byte (librdkafka's
    /// C strings).
    fn converted_headers(h: &[(Vec<u8>, Option<Vec<u8>>)]) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        h.iter()
            .map(|(n, v)| {
                let n = n.split(|b| *b == 0).next().unwrap_or_default().to_vec();
                (n, v.clone())
            })
            .collect()
    }

    fn raw_headers(h: &Headers) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        h.iter_raw()
            .map(|(n, v)| (n.to_vec(), v.map(<[u8]>::to_vec)))
            .collect()
    }

    /// Runs `records`, converted as the runtime converts a message, through a task whose source
    /// and sink use `serde` for key and value, with `policy` for deserialization errors. A record
    /// is good when `serde` reads its key and its value (the oracle is the serde itself).
    fn through_a_source<T: Send + 'static, S: crate::serde::Serde<T> + Clone + 'static>(
        serde: S,
        records: &[Written],
        policy: &crate::task::OnBadRecord,
    ) -> std::result::Result<(), TestCaseError> {
        use crate::task::{ErrorPolicies, OnBadRecord, Task, TaskConfig, TaskId};
        let fail = |e: crate::Error| TestCaseError::fail(e.to_string());
        let mut t = crate::Topology::builder();
        let s = t.source_with::<T, T>("in", serde.clone(), serde.clone());
        t.sink_with("out", &s, serde.clone(), serde.clone());
        let topology = t.build().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut config = TaskConfig::new("bad-input", dir.path());
        config.in_memory_state = true;
        config.errors = ErrorPolicies::default().on_deserialization_error(policy.clone());
        let id = TaskId {
            subtopology: 0,
            partition: 0,
        };
        let mut task = Task::new(&topology, id, std::sync::Arc::new(config)).map_err(fail)?;
        let lists: Vec<NativeHeaders> = records
            .iter()
            .map(|(_, _, h)| NativeHeaders::new(h))
            .collect();
        let raws: Vec<RawRecord<'_>> = records
            .iter()
            .zip(&lists)
            .enumerate()
            .map(|(i, ((k, v, _), list))| {
                let ts = if i % 2 == 0 {
                    Timestamp::CreateTime(1_000 + i as i64)
                } else {
                    Timestamp::NotAvailable
                };
                raw_from_parts(k.as_deref(), v.as_deref(), ts, i as i64, list.read(), 7)
            })
            .collect();
        for (i, r) in raws.iter().enumerate() {
            let want = if i % 2 == 0 { 1_000 + i as i64 } else { 7 };
            prop_assert_eq!(r.timestamp, want, "no timestamp: the wall clock");
            prop_assert_eq!(raw_headers(&r.headers), converted_headers(&records[i].2));
        }
        let good: Vec<bool> = records
            .iter()
            .map(|(k, v, _)| {
                serde.deserialize(k.as_deref()).is_ok() && serde.deserialize(v.as_deref()).is_ok()
            })
            .collect();
        let offsets = |want: bool| -> Vec<i64> {
            (0..records.len() as i64)
                .filter(|i| good[*i as usize] == want)
                .collect()
        };
        let (good_offsets, bad_offsets) = (offsets(true), offsets(false));
        let result = task.process("in", 0, &raws, 7);
        if let (OnBadRecord::Fail, Some(first)) = (policy, bad_offsets.first()) {
            let e = match result {
                Ok(out) => {
                    return Err(TestCaseError::fail(format!("a bad record passed: {out:?}")));
                }
                Err(e) => e.to_string(),
            };
            let origin = format!("topic `in` partition 0 offset {first}");
            prop_assert!(e.contains(&origin), "{} names {}", e, origin);
            return Ok(());
        }
        let out = result.map_err(fail)?;
        let of = |topic: &str| -> Vec<&crate::record::ProducerRecord> {
            out.records.iter().filter(|r| &*r.topic == topic).collect()
        };
        let outputs = of("out");
        let origins: Vec<i64> = outputs
            .iter()
            .filter_map(|r| r.origin.as_ref().map(|o| o.offset))
            .collect();
        prop_assert_eq!(
            &origins,
            &good_offsets,
            "every good record is processed, in order"
        );
        for r in &outputs {
            let i = r.origin.as_ref().map_or(0, |o| o.offset as usize);
            prop_assert_eq!(raw_headers(&r.headers), converted_headers(&records[i].2));
        }
        prop_assert_eq!(out.processed, good_offsets.len() as u64);
        let bad = bad_offsets.len() as u64;
        let dead = of("dlq");
        match policy {
            OnBadRecord::Skip => {
                prop_assert_eq!(out.skipped, bad);
                prop_assert_eq!(out.dead_lettered, 0);
                prop_assert!(dead.is_empty());
            }
            OnBadRecord::DeadLetter { .. } => {
                prop_assert_eq!(out.dead_lettered, bad);
                prop_assert_eq!(out.skipped, 0);
                let dead_origins: Vec<i64> = dead
                    .iter()
                    .filter_map(|r| r.origin.as_ref().map(|o| o.offset))
                    .collect();
                prop_assert_eq!(&dead_origins, &bad_offsets);
                for r in &dead {
                    let i = r.origin.as_ref().map_or(0, |o| o.offset as usize);
                    prop_assert_eq!(&r.key, &records[i].0, "the original key bytes");
                    prop_assert_eq!(&r.value, &records[i].1, "the original value bytes");
                    let offset = i.to_string();
                    prop_assert_eq!(
                        r.headers.last("kstreams.error.offset"),
                        Some(Some(offset.as_bytes()))
                    );
                }
            }
            OnBadRecord::Fail => prop_assert_eq!(bad, 0),
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

        /// Bad input, generally (issue #12, point 14): arbitrary keys, values, header names and
        /// header values, converted as the runtime converts a consumed message, through a source
        /// of every built-in serde: never a panic; every record is processed, skipped or
        /// dead-lettered as its policy says (with `Fail`, the error names the first bad one), and
        /// counted.
        #[test]
        fn arbitrary_records_through_every_built_in_serde(
            records in prop::collection::vec(written(), 1..6),
            policy in policy(),
        ) {
            use crate::serde::*;
            through_a_source(StringSerde, &records, &policy)?;
            through_a_source(BytesSerde, &records, &policy)?;
            through_a_source(I32Serde, &records, &policy)?;
            through_a_source(I64Serde, &records, &policy)?;
            through_a_source(U32Serde, &records, &policy)?;
            through_a_source(U64Serde, &records, &policy)?;
            through_a_source(F64Serde, &records, &policy)?;
            through_a_source(UnitSerde, &records, &policy)?;
            through_a_source(OptionSerde(StringSerde), &records, &policy)?;
            through_a_source(OptionSerde(U64Serde), &records, &policy)?;
            through_a_source(Json::<serde_json::Value>::new(), &records, &policy)?;
        }
    }
}
