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
///
/// # Names that are not UTF-8
/// Kafka header names are bytes on the wire. The Java clients write UTF-8, but any producer may
/// write other bytes, and such a record is an ordinary record: `Headers` keeps every name exactly
/// as read, never panics on it and never drops it. The `&str` API is the UTF-8 view:
/// [`last`](Self::last), [`all`](Self::all) and [`remove`](Self::remove) match names byte for
/// byte, so a name that is not UTF-8 never matches them, and [`iter`](Self::iter) shows such a
/// name lossily (invalid sequences become U+FFFD, as the Java client decodes them). The bytes
/// themselves are in [`iter_raw`](Self::iter_raw) and [`last_raw`](Self::last_raw). A record
/// forwarded to a sink or dead-letter topic carries such a name in its lossy form. (librdkafka
/// hands names over as C strings: a name read from Kafka ends at its first NUL byte.)
///
/// ```
/// use kstreams::Headers;
/// let mut h = Headers::new().with("trace", "t1");
/// h.push_raw(vec![0xff, b'x'], Some(b"v".to_vec()));
/// assert_eq!(h.last("trace"), Some(Some(&b"t1"[..])));
/// assert_eq!(h.last_raw(&[0xff, b'x']), Some(Some(&b"v"[..])));
/// let names: Vec<&str> = h.iter().map(|(n, _)| n).collect();
/// assert_eq!(names, ["trace", "\u{fffd}x"]);
/// assert_eq!(h.last("\u{fffd}x"), None, "lookups match bytes, not the lossy text");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Headers(Vec<Header>);

/// One header: its name (lossy text when the bytes are not UTF-8, with the bytes kept in `raw`)
/// and its value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Header {
    name: String,
    /// The name's bytes when they are not UTF-8 (`None`: `name` is exact).
    raw: Option<Box<[u8]>>,
    value: Option<Vec<u8>>,
}

impl Header {
    /// The name exactly as read or pushed.
    fn name_bytes(&self) -> &[u8] {
        self.raw.as_deref().unwrap_or(self.name.as_bytes())
    }
}

impl Headers {
    /// No headers (does not allocate).
    pub const fn new() -> Self {
        Headers(Vec::new())
    }

    /// Appends a header; an existing header of the same name stays.
    pub fn push(&mut self, name: impl Into<String>, value: Option<Vec<u8>>) {
        self.0.push(Header {
            name: name.into(),
            raw: None,
            value,
        });
    }

    /// Appends a header whose name is any bytes (as Kafka allows); a name that is not UTF-8 is
    /// kept as it is (see the type's docs).
    pub fn push_raw(&mut self, name: impl Into<Vec<u8>>, value: Option<Vec<u8>>) {
        match String::from_utf8(name.into()) {
            Ok(name) => self.push(name, value),
            Err(e) => {
                let raw = e.into_bytes();
                self.0.push(Header {
                    name: String::from_utf8_lossy(&raw).into_owned(),
                    raw: Some(raw.into_boxed_slice()),
                    value,
                });
            }
        }
    }

    /// Appends a header, builder style.
    #[must_use]
    pub fn with(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.push(name, Some(value.into()));
        self
    }

    /// The value of the last header with this name (Kafka's `lastHeader`).
    pub fn last(&self, name: &str) -> Option<Option<&[u8]>> {
        self.last_raw(name.as_bytes())
    }

    /// The value of the last header whose name is these bytes.
    pub fn last_raw(&self, name: &[u8]) -> Option<Option<&[u8]>> {
        self.0
            .iter()
            .rev()
            .find(|h| h.name_bytes() == name)
            .map(|h| h.value.as_deref())
    }

    /// Every value of headers with this name, in order.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = Option<&'a [u8]>> + 'a {
        self.0
            .iter()
            .filter(move |h| h.name_bytes() == name.as_bytes())
            .map(|h| h.value.as_deref())
    }

    /// Removes every header with this name.
    pub fn remove(&mut self, name: &str) {
        self.0.retain(|h| h.name_bytes() != name.as_bytes());
    }

    /// All headers in order, names as text (lossy for a name that is not UTF-8).
    pub fn iter(&self) -> impl Iterator<Item = (&str, Option<&[u8]>)> {
        self.0.iter().map(|h| (h.name.as_str(), h.value.as_deref()))
    }

    /// All headers in order, names as the exact bytes.
    pub fn iter_raw(&self) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
        self.0.iter().map(|h| (h.name_bytes(), h.value.as_deref()))
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
        let mut h = Headers::new();
        for (n, v) in iter {
            h.push(n, v);
        }
        h
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
    /// When `partition` is `None`: how many leading key bytes the murmur2 hash that picks the
    /// partition reads (`None`: the whole key). The key serde says it
    /// ([`Serde::partition_key_len`](crate::serde::Serde::partition_key_len)): a windowed key is
    /// partitioned by its inner key, as Java's `WindowedStreamPartitioner`.
    pub partition_key_len: Option<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names that are not UTF-8 are kept as bytes, looked up as bytes, shown lossily, and never
    /// match a `&str` lookup; UTF-8 names pushed as bytes behave as if pushed as text.
    #[test]
    fn header_names_are_bytes_with_a_utf8_view() {
        let mut h = Headers::new();
        h.push_raw(vec![0xc3, 0x28], Some(b"bad".to_vec()));
        h.push_raw("ok".as_bytes(), Some(b"1".to_vec()));
        h.push_raw(Vec::new(), None);
        h.push("ok", Some(b"2".to_vec()));
        assert_eq!(h.len(), 4);
        assert_eq!(h, {
            let mut same = Headers::new();
            same.push_raw(vec![0xc3, 0x28], Some(b"bad".to_vec()));
            same.push("ok", Some(b"1".to_vec()));
            same.push("", None);
            same.push("ok", Some(b"2".to_vec()));
            same
        });
        let raw: Vec<(&[u8], Option<&[u8]>)> = h.iter_raw().collect();
        assert_eq!(raw[0], (&[0xc3, 0x28][..], Some(&b"bad"[..])));
        assert_eq!(raw[2], (&b""[..], None));
        let text: Vec<&str> = h.iter().map(|(n, _)| n).collect();
        assert_eq!(text, ["\u{fffd}(", "ok", "", "ok"]);
        assert_eq!(h.last("ok"), Some(Some(&b"2"[..])));
        assert_eq!(h.all("ok").count(), 2);
        assert_eq!(h.last("\u{fffd}("), None);
        assert_eq!(h.last_raw(&[0xc3, 0x28]), Some(Some(&b"bad"[..])));
        h.remove("\u{fffd}(");
        assert_eq!(h.len(), 4, "a text lookup never removes a non-UTF-8 name");
        h.remove("ok");
        assert_eq!(h.len(), 2);
    }
}
