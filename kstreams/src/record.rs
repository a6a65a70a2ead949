//! Records: what flows through a topology.
//!
//! Owns: [`Record`], [`Headers`], [`Origin`] and the raw (bytes) forms the runtime reads from and writes
//! to Kafka. A record's origin and timestamp are set once, where it is read, and survive batching,
//! forwarding and the change of key or value by a processor.

use std::fmt;
use std::sync::Arc;

/// Where a record was read: topic, partition and offset.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Origin {
    /// The input topic.
    pub topic: Arc<str>,
    /// The partition of the input topic.
    pub partition: i32,
    /// The record's offset in that partition.
    pub offset: i64,
}

impl Origin {
    /// An origin.
    pub fn new(topic: impl Into<Arc<str>>, partition: i32, offset: i64) -> Self {
        Origin {
            topic: topic.into(),
            partition,
            offset,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "topic `{}` partition {} offset {}",
            self.topic, self.partition, self.offset
        )
    }
}

/// Record headers: ordered, with repeated names allowed, as in Kafka.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Headers(Vec<(String, Option<Vec<u8>>)>);

impl Headers {
    /// No headers (does not allocate).
    pub const fn new() -> Self {
        Headers(Vec::new())
    }

    /// Appends a header; an existing header of the same name stays.
    pub fn push(&mut self, name: impl Into<String>, value: Option<Vec<u8>>) {
        self.0.push((name.into(), value));
    }

    /// Appends a header, builder style.
    #[must_use]
    pub fn with(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.push(name, Some(value.into()));
        self
    }

    /// The value of the last header with this name (Kafka's `lastHeader`).
    pub fn last(&self, name: &str) -> Option<Option<&[u8]>> {
        self.0
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_deref())
    }

    /// Every value of headers with this name, in order.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = Option<&'a [u8]>> + 'a {
        self.0
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_deref())
    }

    /// Removes every header with this name.
    pub fn remove(&mut self, name: &str) {
        self.0.retain(|(n, _)| n != name);
    }

    /// All headers in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Option<&[u8]>)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_deref()))
    }

    /// How many headers.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<N: Into<String>> FromIterator<(N, Option<Vec<u8>>)> for Headers {
    fn from_iter<I: IntoIterator<Item = (N, Option<Vec<u8>>)>>(iter: I) -> Self {
        Headers(iter.into_iter().map(|(n, v)| (n.into(), v)).collect())
    }
}

/// A record: key, value, timestamp, headers and where it came from.
///
/// Processors receive records in batches (`&[Record<K, V>]`) of one partition in offset order. To
/// forward a changed record, keep its metadata with [`Record::with_value`], [`Record::with_key`] or
/// [`Record::map_value`]:
///
/// ```
/// use kstreams::Record;
/// let line = Record::new("k".to_string(), "Hello World".to_string()).with_timestamp(42);
/// let upper = line.map_value(|v| v.to_uppercase());
/// assert_eq!(upper.value, "HELLO WORLD");
/// assert_eq!(upper.timestamp, 42);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Record<K, V> {
    /// The key.
    pub key: K,
    /// The value.
    pub value: V,
    /// Milliseconds since the Unix epoch (Kafka's record timestamp).
    pub timestamp: i64,
    /// The headers, in order.
    pub headers: Headers,
    /// Where the input record this one derives from was read; `None` for records made outside a
    /// topology (tests, punctuations).
    pub origin: Option<Origin>,
}

impl<K, V> Record<K, V> {
    /// A record with timestamp 0, no headers and no origin.
    pub fn new(key: K, value: V) -> Self {
        Record {
            key,
            value,
            timestamp: 0,
            headers: Headers::new(),
            origin: None,
        }
    }

    /// The same record with another timestamp.
    #[must_use]
    pub fn with_timestamp(mut self, timestamp: i64) -> Self {
        self.timestamp = timestamp;
        self
    }

    /// The same record with other headers.
    #[must_use]
    pub fn with_headers(mut self, headers: Headers) -> Self {
        self.headers = headers;
        self
    }

    /// A record with another value and the same key and metadata.
    pub fn with_value<V2>(self, value: V2) -> Record<K, V2> {
        Record {
            key: self.key,
            value,
            timestamp: self.timestamp,
            headers: self.headers,
            origin: self.origin,
        }
    }

    /// A record with another key and the same value and metadata.
    pub fn with_key<K2>(self, key: K2) -> Record<K2, V> {
        Record {
            key,
            value: self.value,
            timestamp: self.timestamp,
            headers: self.headers,
            origin: self.origin,
        }
    }

    /// A record with the value mapped and the same key and metadata.
    pub fn map_value<V2>(self, f: impl FnOnce(V) -> V2) -> Record<K, V2> {
        let value = f(self.value);
        Record {
            key: self.key,
            value,
            timestamp: self.timestamp,
            headers: self.headers,
            origin: self.origin,
        }
    }

    /// A new key and value that keep this record's timestamp, headers and origin (cloned).
    pub fn derive<K2, V2>(&self, key: K2, value: V2) -> Record<K2, V2> {
        Record {
            key,
            value,
            timestamp: self.timestamp,
            headers: self.headers.clone(),
            origin: self.origin.clone(),
        }
    }
}

/// A record as read from Kafka, before deserialization: bytes borrowed from the client's buffers.
#[derive(Debug, Clone)]
pub struct RawRecord<'a> {
    /// The key bytes; `None` for a null key.
    pub key: Option<&'a [u8]>,
    /// The value bytes; `None` for a null value (a tombstone).
    pub value: Option<&'a [u8]>,
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// The offset in its partition.
    pub offset: i64,
    /// The headers.
    pub headers: Headers,
}

/// A serialized record on its way to a Kafka topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerRecord {
    /// The topic.
    pub topic: Arc<str>,
    /// The partition, when it is fixed (changelogs); `None` means "by the key's murmur2 hash".
    pub partition: Option<i32>,
    /// The key bytes.
    pub key: Option<Vec<u8>>,
    /// The value bytes.
    pub value: Option<Vec<u8>>,
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// The headers.
    pub headers: Headers,
    /// The input record this one was made from, when known (not for changelog records, nor for
    /// records a punctuation made from nothing): a production error names it, and dead-letters it.
    pub origin: Option<Origin>,
}
