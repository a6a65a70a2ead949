//! Fetched records in batches: the group consumer's partitions deliver their messages to a queue
//! of their own, read with `rd_kafka_consume_batch_queue` (one call for up to a round of
//! records) instead of one `poll` (and one librdkafka event) per record.
//!
//! Owns: [`FetchQueue`] (the queue and the routing of assigned partitions to it) and
//! [`Fetched`] (a message taken from it, destroyed on drop), the only unsafe code of the batched
//! poll. May not touch: what a round is or what happens to its records (that is `engine`), the
//! rebalance callbacks' work (`rebalance` calls [`FetchQueue::route`] and nothing else here).
//!
//! Why a queue of its own: `rd_kafka_consume_batch_queue` serves every other operation it finds
//! on the queue it reads, and a rebalance served there (rdkafka installs no rebalance callback,
//! it uses librdkafka's events) is answered by librdkafka with an unassign. So rebalances,
//! errors and commit replies stay on the consumer's queue, which the processing loop still
//! polls (`BaseConsumer::poll`, which runs the rebalance callbacks); only the partitions'
//! fetched messages (and their per-partition consumer errors) come here. librdkafka keeps an
//! application's forwarding across a partition's fetch start, and clears it when the partition's
//! fetching stops (revoked): so every assigned partition is routed in the assign callback, before
//! rdkafka applies the assignment ([`FetchQueue::route`] from `pre_rebalance`). A partition that
//! was not routed still delivers to the consumer's queue, and the loop takes those records from
//! `poll` as before ([`Fetched::Polled`]). Messages of a partition whose fetching was stopped or
//! moved (seek, revoke) are dropped by librdkafka's version barrier when read.
//!
//! The queue must be destroyed before the consumer (`rd_kafka_destroy`): the processing thread
//! takes it out of the consumer's context before closing the consumer ([`FetchQueue`] is held in
//! `GroupContext::fetch`).

use std::ffi::CStr;
use std::ptr::NonNull;
use std::time::Duration;

use rdkafka::Timestamp;
use rdkafka::bindings as rd;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::types::RDKafkaErrorCode;

use crate::record::RawRecord;

/// The queue the group consumer's assigned partitions deliver their fetched messages to.
pub(super) struct FetchQueue {
    queue: NonNull<rd::rd_kafka_queue_t>,
    /// The consumer's handle (for routing partitions), valid while the consumer lives.
    client: NonNull<rd::rd_kafka_t>,
    /// `consume`'s buffer for librdkafka's message pointers, kept from call to call.
    scratch: std::sync::Mutex<Vec<MessagePtr>>,
}

/// A message pointer librdkafka returned, in `consume`'s buffer only between two statements.
#[derive(Clone, Copy)]
#[repr(transparent)]
struct MessagePtr(*mut rd::rd_kafka_message_t);

// SAFETY: the buffer holds pointers only while `consume` runs (it is empty between calls), and
// librdkafka messages may be used from any thread.
unsafe impl Send for MessagePtr {}

// SAFETY: librdkafka queues and handles are thread-safe (every operation on them takes the
// queue's or the handle's lock); the pointers are only used through librdkafka's API.
unsafe impl Send for FetchQueue {}
// SAFETY: as above: `&FetchQueue` only calls librdkafka's thread-safe queue functions.
unsafe impl Sync for FetchQueue {}

impl FetchQueue {
    /// A new, empty queue on `consumer`'s handle (`None` if librdkafka returns none). The queue
    /// must be dropped before `consumer` is.
    pub(super) fn new<C: ConsumerContext>(consumer: &BaseConsumer<C>) -> Option<FetchQueue> {
        let client = NonNull::new(consumer.client().native_ptr())?;
        // SAFETY: `client` is the consumer's live handle; the new queue is owned by the returned
        // value and destroyed once, on drop (before the consumer: see the module docs).
        let queue = NonNull::new(unsafe { rd::rd_kafka_queue_new(client.as_ptr()) })?;
        Some(FetchQueue {
            queue,
            client,
            scratch: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// Routes the fetched messages of `partitions` to this queue. Called before the partitions'
    /// assignment is applied; a partition librdkafka does not know is left on the consumer queue.
    pub(super) fn route(&self, partitions: &[(String, i32)]) {
        self.forward(partitions, self.queue.as_ptr());
    }

    /// Undoes the routing of `partitions` the way librdkafka's fetch stop does (forwarded
    /// nowhere, the application's forwarding flag kept): what a stop still pending when the
    /// assign callback routed leaves behind.
    #[cfg(test)]
    fn unroute(&self, partitions: &[(String, i32)]) {
        self.forward(partitions, std::ptr::null_mut());
    }

    /// Forwards the fetch queue of each of `partitions` to `to` (this queue, or null: nowhere).
    fn forward(&self, partitions: &[(String, i32)], to: *mut rd::rd_kafka_queue_t) {
        for (topic, partition) in partitions {
            let Ok(name) = std::ffi::CString::new(topic.as_str()) else {
                continue;
            };
            // SAFETY: the handle is live (the queue is dropped before the consumer); `name` is a
            // NUL-terminated string that outlives the call; `to` is this queue or null. The
            // returned partition queue handle is destroyed right after forwarding it (the
            // forwarding stays with the partition).
            unsafe {
                let pq = rd::rd_kafka_queue_get_partition(
                    self.client.as_ptr(),
                    name.as_ptr(),
                    *partition,
                );
                if pq.is_null() {
                    continue;
                }
                rd::rd_kafka_queue_forward(pq, to);
                rd::rd_kafka_queue_destroy(pq);
            }
        }
    }

    /// Appends to `out` the messages available within `timeout`, at most `max`: returns as soon
    /// as `max` are there, or when `timeout` has passed (zero: only what is there now).
    pub(super) fn consume<'c>(&'c self, timeout: Duration, max: usize, out: &mut Vec<Fetched<'c>>) {
        if max == 0 {
            return;
        }
        let mut ptrs = super::lock(&self.scratch);
        ptrs.clear();
        ptrs.reserve(max);
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: the queue is live; `ptrs` has room for `max` pointers (`MessagePtr` is a
        // transparent pointer), and librdkafka writes at most `max` of them and returns how many
        // (or -1 on error, with none written).
        let n = unsafe {
            rd::rd_kafka_consume_batch_queue(
                self.queue.as_ptr(),
                ms,
                ptrs.as_mut_ptr().cast::<*mut rd::rd_kafka_message_t>(),
                max,
            )
        };
        let n = usize::try_from(n).unwrap_or(0).min(max);
        // SAFETY: librdkafka initialized the first `n` entries.
        unsafe { ptrs.set_len(n) };
        out.reserve(n);
        out.extend(
            ptrs.drain(..)
                .filter_map(|p| NonNull::new(p.0))
                .map(|ptr| Fetched::Batched(Batched { ptr, _queue: self })),
        );
    }
}

impl Drop for FetchQueue {
    fn drop(&mut self) {
        // SAFETY: created by `rd_kafka_queue_new`, destroyed only here; the messages read from it
        // borrow it, so none is left.
        unsafe { rd::rd_kafka_queue_destroy(self.queue.as_ptr()) }
    }
}

/// A message read from a [`FetchQueue`], destroyed on drop.
pub(super) struct Batched<'c> {
    ptr: NonNull<rd::rd_kafka_message_t>,
    _queue: &'c FetchQueue,
}

impl Batched<'_> {
    fn msg(&self) -> &rd::rd_kafka_message_t {
        // SAFETY: the message is live until dropped, and nothing else writes to it.
        unsafe { self.ptr.as_ref() }
    }
}

impl Drop for Batched<'_> {
    fn drop(&mut self) {
        // SAFETY: returned by `rd_kafka_consume_batch_queue`, destroyed once, here.
        unsafe { rd::rd_kafka_message_destroy(self.ptr.as_ptr()) }
    }
}

/// A record of a round: read from the [`FetchQueue`], or polled from the consumer queue (a
/// partition that was not routed).
pub(super) enum Fetched<'c> {
    Batched(Batched<'c>),
    Polled(BorrowedMessage<'c>),
}

/// The bytes of a message field (`None` for a null pointer).
///
/// # Safety
/// `ptr` must be null or point to `len` bytes that live as long as `'a`.
unsafe fn bytes<'a>(ptr: *const std::ffi::c_void, len: usize) -> Option<&'a [u8]> {
    // SAFETY: the caller's guarantee.
    (!ptr.is_null()).then(|| unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) })
}

impl Fetched<'_> {
    /// The message's error as rdkafka's `poll` reports it: `Some` for a consumer error delivered
    /// in place of a message (partition EOF, a fetch error, a fatal error).
    pub(super) fn error(&self) -> Option<KafkaError> {
        let Fetched::Batched(b) = self else {
            return None;
        };
        let m = b.msg();
        match m.err {
            rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR => None,
            rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__PARTITION_EOF => {
                Some(KafkaError::PartitionEOF(m.partition))
            }
            rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__FATAL => {
                // SAFETY: the handle is live while the queue is; no error string is asked for.
                let code = unsafe {
                    rd::rd_kafka_fatal_error(b._queue.client.as_ptr(), std::ptr::null_mut(), 0)
                };
                Some(KafkaError::MessageConsumptionFatal(RDKafkaErrorCode::from(
                    code,
                )))
            }
            e => Some(KafkaError::MessageConsumption(e.into())),
        }
    }

    pub(super) fn topic(&self) -> &str {
        match self {
            Fetched::Polled(m) => m.topic(),
            Fetched::Batched(b) => {
                let rkt = b.msg().rkt;
                if rkt.is_null() {
                    return "";
                }
                // SAFETY: a message's topic handle lives as long as the message; its name is a
                // NUL-terminated string owned by the handle. Kafka topic names are ASCII.
                unsafe { CStr::from_ptr(rd::rd_kafka_topic_name(rkt)) }
                    .to_str()
                    .unwrap_or_default()
            }
        }
    }

    pub(super) fn partition(&self) -> i32 {
        match self {
            Fetched::Polled(m) => m.partition(),
            Fetched::Batched(b) => b.msg().partition,
        }
    }

    pub(super) fn offset(&self) -> i64 {
        match self {
            Fetched::Polled(m) => m.offset(),
            Fetched::Batched(b) => b.msg().offset,
        }
    }

    /// The raw record of the message (see [`super::convert::raw_record`]).
    pub(super) fn raw_record(&self, now: i64) -> RawRecord<'_> {
        match self {
            Fetched::Polled(m) => super::convert::raw_record(m, now),
            Fetched::Batched(b) => {
                let m = b.msg();
                let mut kind = rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
                // SAFETY: the message is live while `self` is borrowed; its key and payload
                // point to `key_len` and `len` bytes owned by it.
                let (key, value, ts, headers) = unsafe {
                    (
                        bytes(m.key, m.key_len),
                        bytes(m.payload, m.len),
                        rd::rd_kafka_message_timestamp(b.ptr.as_ptr(), &mut kind),
                        super::convert::native_message_headers(b.ptr.as_ptr()),
                    )
                };
                let timestamp = match kind {
                    _ if ts == -1 => Timestamp::NotAvailable,
                    rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_CREATE_TIME => {
                        Timestamp::CreateTime(ts)
                    }
                    rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_LOG_APPEND_TIME => {
                        Timestamp::LogAppendTime(ts)
                    }
                    _ => Timestamp::NotAvailable,
                };
                super::convert::raw_from_parts(key, value, timestamp, m.offset, headers, now)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use rdkafka::ClientConfig;
    use rdkafka::ClientContext;
    use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

    use super::*;
    use crate::kafka::EmbeddedCluster;

    /// Routes assigned partitions to its queue before the assignment, as `GroupContext` does.
    #[derive(Default)]
    struct Routing {
        queue: Mutex<Option<Arc<FetchQueue>>>,
        assigned: AtomicUsize,
    }
    impl ClientContext for Routing {}
    impl ConsumerContext for Routing {
        fn pre_rebalance(&self, _c: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
            if let Rebalance::Assign(tpl) = rebalance {
                let parts: Vec<(String, i32)> = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_owned(), e.partition()))
                    .collect();
                self.assigned.fetch_add(parts.len(), Ordering::SeqCst);
                if let Some(q) = self.queue.lock().unwrap().as_ref() {
                    q.route(&parts);
                }
            }
        }
    }

    /// Every record of the assigned partitions comes out of the fetch queue, in batches, in
    /// offset order per partition, with key, value, timestamp and headers; the consumer queue
    /// still serves the rebalance (the assign callback ran) and hands out no record.
    #[test]
    fn routed_partitions_deliver_their_records_in_batches_with_their_metadata() {
        let cluster = EmbeddedCluster::start().unwrap();
        cluster.create_topic("fetch-in", 2).unwrap();
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .create()
            .unwrap();
        let n = 40;
        for i in 0..n {
            let key = format!("k{i}");
            let value = format!("v{i}");
            let headers = OwnedHeaders::new().insert(Header {
                key: "h",
                value: Some(&[i as u8][..]),
            });
            producer
                .send(
                    BaseRecord::to("fetch-in")
                        .partition(i % 2)
                        .key(&key)
                        .payload(&value)
                        .timestamp(1_000 + i64::from(i))
                        .headers(headers),
                )
                .unwrap();
        }
        producer.flush(Duration::from_secs(30)).unwrap();
        let consumer: BaseConsumer<Routing> = ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .set("group.id", "fetch-test")
            .set("auto.offset.reset", "earliest")
            .create_with_context(Routing::default())
            .unwrap();
        let queue = Arc::new(FetchQueue::new(&consumer).unwrap());
        *consumer.context().queue.lock().unwrap() = Some(queue.clone());
        consumer.subscribe(&["fetch-in"]).unwrap();
        let mut got: Vec<(i32, i64, Vec<u8>, Vec<u8>, i64, Vec<u8>)> = Vec::new();
        let mut calls_with_records = 0;
        let deadline = Instant::now() + Duration::from_secs(60);
        while got.len() < n as usize && Instant::now() < deadline {
            if let Some(polled) = consumer.poll(Duration::ZERO) {
                panic!(
                    "a record or error on the consumer queue: {:?}",
                    polled.err()
                );
            }
            let mut msgs = Vec::new();
            queue.consume(Duration::from_millis(100), 64, &mut msgs);
            if !msgs.is_empty() {
                calls_with_records += 1;
            }
            for m in &msgs {
                assert!(m.error().is_none());
                assert_eq!(m.topic(), "fetch-in");
                let r = m.raw_record(0);
                assert_eq!(r.offset, m.offset());
                let (name, value) = r.headers.iter().next().unwrap();
                assert_eq!(name, "h");
                got.push((
                    m.partition(),
                    r.offset,
                    r.key.unwrap().to_vec(),
                    r.value.unwrap().to_vec(),
                    r.timestamp,
                    value.unwrap().to_vec(),
                ));
            }
        }
        assert_eq!(consumer.context().assigned.load(Ordering::SeqCst), 2);
        assert_eq!(got.len(), n as usize);
        // Fewer calls than records: they came in batches.
        assert!(
            calls_with_records < n as usize,
            "{calls_with_records} calls"
        );
        for p in 0..2 {
            let of_p: Vec<_> = got.iter().filter(|g| g.0 == p).collect();
            assert_eq!(of_p.len(), n as usize / 2);
            for (j, g) in of_p.iter().enumerate() {
                let i = 2 * j as i32 + p;
                assert_eq!(g.1, j as i64, "offset order in partition {p}");
                assert_eq!(g.2, format!("k{i}").into_bytes());
                assert_eq!(g.3, format!("v{i}").into_bytes());
                assert_eq!(g.4, 1_000 + i64::from(i));
                assert_eq!(g.5, vec![i as u8]);
            }
        }
        // The queue goes before the consumer.
        consumer.context().queue.lock().unwrap().take();
        drop(queue);
    }

    /// librdkafka's fetch stop (of a previous assignment) clears a partition's forwarding but
    /// keeps the application's flag, so the next fetch start does not forward it to the consumer
    /// queue either: a stop still pending when the assign callback routed the partition leaves
    /// its records forwarded nowhere. Routing again moves what it kept over, in offset order.
    #[test]
    fn routing_again_recovers_a_partition_whose_forwarding_a_fetch_stop_cleared() {
        let cluster = EmbeddedCluster::start().unwrap();
        cluster.create_topic("fetch-reroute", 1).unwrap();
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .create()
            .unwrap();
        let produce = |from: i32, to: i32| {
            for i in from..to {
                let value = format!("v{i}");
                producer
                    .send(
                        BaseRecord::<(), _>::to("fetch-reroute")
                            .partition(0)
                            .payload(&value),
                    )
                    .unwrap();
            }
            producer.flush(Duration::from_secs(30)).unwrap();
        };
        let consumer: BaseConsumer<Routing> = ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .set("group.id", "fetch-reroute")
            .set("auto.offset.reset", "earliest")
            .create_with_context(Routing::default())
            .unwrap();
        let queue = Arc::new(FetchQueue::new(&consumer).unwrap());
        *consumer.context().queue.lock().unwrap() = Some(queue.clone());
        consumer.subscribe(&["fetch-reroute"]).unwrap();
        let read = |until: Duration| -> Vec<i64> {
            let mut offsets = Vec::new();
            let deadline = Instant::now() + until;
            while Instant::now() < deadline {
                assert!(consumer.poll(Duration::ZERO).is_none());
                let mut msgs = Vec::new();
                queue.consume(Duration::from_millis(50), 64, &mut msgs);
                offsets.extend(msgs.iter().map(|m| m.offset()));
            }
            offsets
        };
        produce(0, 10);
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while got.len() < 10 && Instant::now() < deadline {
            got.extend(read(Duration::from_millis(200)));
        }
        assert_eq!(got, (0..10).collect::<Vec<i64>>());
        let partition = [("fetch-reroute".to_owned(), 0)];
        queue.unroute(&partition);
        produce(10, 30);
        assert_eq!(
            read(Duration::from_secs(2)),
            Vec::<i64>::new(),
            "forwarded nowhere"
        );
        queue.route(&partition);
        let mut rest = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while rest.len() < 20 && Instant::now() < deadline {
            rest.extend(read(Duration::from_millis(200)));
        }
        assert_eq!(rest, (10..30).collect::<Vec<i64>>());
        consumer.context().queue.lock().unwrap().take();
        drop(queue);
    }
}
