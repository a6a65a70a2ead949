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

use rdkafka::bindings as rd;
use rdkafka::message::{BorrowedMessage, Message};

use crate::record::{Headers, RawRecord};

/// The raw record of a consumed message: key, value and headers as bytes (borrowed where the
/// client's buffers allow), the message's timestamp (`now` when it has none) and offset.
pub(crate) fn raw_record<'a>(m: &'a BorrowedMessage<'a>, now: i64) -> RawRecord<'a> {
    RawRecord {
        key: m.key(),
        value: m.payload(),
        timestamp: m.timestamp().to_millis().unwrap_or(now),
        offset: m.offset(),
        headers: message_headers(m),
    }
}

/// The headers of a consumed message (none when it has none).
fn message_headers(m: &BorrowedMessage<'_>) -> Headers {
    let mut list: *mut rd::rd_kafka_headers_t = std::ptr::null_mut();
    // SAFETY: `m.ptr()` is the message's librdkafka pointer, valid while `m` lives; librdkafka
    // writes the message's own header list (parsed on first use, owned by the message) to `list`.
    let err = unsafe { rd::rd_kafka_message_headers(m.ptr(), &mut list) };
    if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || list.is_null() {
        return Headers::new();
    }
    // SAFETY: `list` belongs to `m`, which outlives the call and is not modified meanwhile (the
    // processing thread alone holds it).
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
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

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
}
