//! Producing through librdkafka topic handles (issue 19 §2).
//!
//! Owns: [`Topics`], the sink producer's `rd_kafka_topic_t` handles (one per topic, made on
//! first use and kept for the producer's life), and [`Topics::produce`], one record through
//! `rd_kafka_producev` with `RD_KAFKA_VTYPE_RKT`. rdkafka's `BaseProducer::send` makes a
//! `CString` of the topic name and librdkafka looks the topic up by name for every record
//! (`rd_kafka_topic_new0`, `rd_kafka_topic_find_fl` and the CString's allocation: ~3% of
//! `kafka_bench count`'s CPU, two records per input record); through a handle neither happens.
//! Everything else is what `send` does: librdkafka copies key and value (`RD_KAFKA_MSG_F_COPY`),
//! takes the headers on success, and the delivery opaque is the `usize` the sink's delivery
//! callback reads back (rdkafka's `IntoOpaque for usize`). May not touch: what is sent, the
//! delivery bookkeeping, the retry of a full queue (those are `sink`'s).

use std::ffi::{CString, c_void};
use std::ptr::NonNull;
use std::sync::Arc;

use rdkafka::bindings as rd;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::Producer as _;
use rdkafka::producer::ThreadedProducer;

use super::sink::SinkContext;
use crate::record::ProducerRecord;

/// The producer's topic handles. Declared before the producer in [`super::sink::Sink`], so they
/// are destroyed before it.
#[derive(Default)]
pub(super) struct Topics {
    handles: Vec<(Arc<str>, NonNull<rd::rd_kafka_topic_t>)>,
}

// SAFETY: librdkafka's topic handles may be used and destroyed from any thread (reference
// counted, locked inside librdkafka).
unsafe impl Send for Topics {}

impl Drop for Topics {
    fn drop(&mut self) {
        for (_, h) in self.handles.drain(..) {
            // SAFETY: made by `rd_kafka_topic_new` and destroyed once, here.
            unsafe { rd::rd_kafka_topic_destroy(h.as_ptr()) };
        }
    }
}

impl Topics {
    /// The handle of `topic` on `producer`, made on first use; `None` when librdkafka refuses
    /// the name (the caller then produces by name, and gets librdkafka's error for it).
    fn handle(
        &mut self,
        producer: &ThreadedProducer<SinkContext>,
        topic: &Arc<str>,
    ) -> Option<*mut rd::rd_kafka_topic_t> {
        // A sink topic's records share one `Arc`: the pointer test is the usual hit.
        if let Some((_, h)) = self
            .handles
            .iter()
            .find(|(t, _)| Arc::ptr_eq(t, topic) || **t == **topic)
        {
            return Some(h.as_ptr());
        }
        let name = CString::new(&**topic).ok()?;
        // SAFETY: a live client and a NUL-terminated name; a null conf means the defaults (the
        // producer's `default_topic_conf`).
        let h = NonNull::new(unsafe {
            rd::rd_kafka_topic_new(
                producer.client().native_ptr(),
                name.as_ptr(),
                std::ptr::null_mut(),
            )
        })?;
        self.handles.push((topic.clone(), h));
        Some(h.as_ptr())
    }

    /// Produces `r` to `partition` (`-1`: librdkafka's partitioner) with delivery opaque
    /// `opaque`. `None`: `r`'s topic has no handle (see [`Topics::handle`]); `Some(Err(code))`:
    /// librdkafka refused the record (e.g. `QueueFull`), nothing of it was taken.
    pub(super) fn produce(
        &mut self,
        producer: &ThreadedProducer<SinkContext>,
        r: &ProducerRecord,
        partition: i32,
        opaque: usize,
    ) -> Option<Result<(), RDKafkaErrorCode>> {
        let rkt = self.handle(producer, &r.topic)?;
        let (key, key_len) = bytes(r.key.as_deref());
        let (value, value_len) = bytes(r.value.as_deref());
        let headers = native_headers(r);
        // SAFETY: the pointers are live for the call and librdkafka copies key and value
        // (`RD_KAFKA_MSG_F_COPY`); every argument has the type its vtype names, as in rdkafka's
        // `BaseProducer::send`; the list ends with `RD_KAFKA_VTYPE_END`.
        let err = unsafe {
            rd::rd_kafka_producev(
                producer.client().native_ptr(),
                rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_RKT,
                rkt,
                rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_PARTITION,
                partition,
                rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_MSGFLAGS,
                rd::RD_KAFKA_MSG_F_COPY,
                rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_VALUE,
                value,
                value_len,
                rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_KEY,
                key,
                key_len,
                rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_OPAQUE,
                opaque as *mut c_void,
                rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_TIMESTAMP,
                r.timestamp.max(0),
                rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_HEADERS,
                headers,
                rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_END,
            )
        };
        if err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            // librdkafka owns the headers now.
            return Some(Ok(()));
        }
        if !headers.is_null() {
            // SAFETY: not taken by librdkafka (the produce failed); made by `native_headers`.
            unsafe { rd::rd_kafka_headers_destroy(headers) };
        }
        Some(Err(err.into()))
    }
}

fn bytes(b: Option<&[u8]>) -> (*mut c_void, usize) {
    match b {
        Some(b) => (b.as_ptr() as *mut c_void, b.len()),
        None => (std::ptr::null_mut(), 0),
    }
}

/// `r`'s headers as a librdkafka header list (null when it has none): names in their UTF-8 form
/// (lossy for names that were not UTF-8, as Java's clients write them and as rdkafka's
/// `OwnedHeaders` did), values as their exact bytes; a header without a value keeps its null
/// value.
fn native_headers(r: &ProducerRecord) -> *mut rd::rd_kafka_headers_t {
    if r.headers.is_empty() {
        return std::ptr::null_mut();
    }
    // SAFETY: a new list, filled with pointers live for each call (librdkafka copies them).
    unsafe {
        let h = rd::rd_kafka_headers_new(r.headers.len());
        for (name, value) in r.headers.iter() {
            let (v, v_len) = bytes(value);
            rd::rd_kafka_header_add(
                h,
                name.as_ptr().cast(),
                name.len() as isize,
                v,
                v_len as isize,
            );
        }
        h
    }
}
