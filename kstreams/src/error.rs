//! Errors: one enum for the whole runtime, each variant naming where it happened.
//!
//! Owns: [`Error`], [`Result`], [`SerdeError`]. A record-related error always carries the record's
//! [`Origin`] (topic, partition, offset) when it is known.

use crate::record::Origin;

/// The result type of kstreams.
pub type Result<T, E = Error> = core::result::Result<T, E>;

/// What went wrong while turning bytes into a value or a value into bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SerdeError {
    message: String,
}

impl SerdeError {
    /// A serde error with a message saying what was wrong with the bytes or the value.
    pub fn new(message: impl Into<String>) -> Self {
        SerdeError {
            message: message.into(),
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// Which part of a record a serde error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Part {
    /// The record's key.
    Key,
    /// The record's value.
    Value,
}

impl core::fmt::Display for Part {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Part::Key => "key",
            Part::Value => "value",
        })
    }
}

/// Every error of kstreams.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A record's key or value could not be deserialized.
    #[error("cannot deserialize the {part} of the record at {origin}: {source}")]
    Deserialize {
        /// Where the record came from.
        origin: Origin,
        /// Key or value.
        part: Part,
        /// What was wrong.
        #[source]
        source: SerdeError,
    },
    /// A source's timestamp extractor gave a record no timestamp, or a negative one.
    #[error("the timestamp extractor of the source of `{}` gave the record at {origin} {}", origin.topic, match timestamp { Some(t) => format!("a negative timestamp ({t})"), None => "no timestamp".to_owned() })]
    InvalidTimestamp {
        /// Where the record came from.
        origin: Origin,
        /// What the extractor gave: `None`, or a negative time.
        timestamp: Option<i64>,
    },
    /// A key or value could not be serialized for a sink or a store.
    #[error("cannot serialize the {part} for {target}: {source}")]
    Serialize {
        /// The sink topic or store the bytes were for.
        target: String,
        /// Key or value.
        part: Part,
        /// What was wrong.
        #[source]
        source: SerdeError,
    },
    /// A key or value given to a store could not be serialized (or a key serialized to null).
    #[error("cannot serialize the {part} for store `{store}`: {source}")]
    StoreSerialize {
        /// The store.
        store: String,
        /// Key or value.
        part: Part,
        /// What was wrong.
        #[source]
        source: SerdeError,
    },
    /// Bytes read from a store could not be deserialized, or a stored entry does not belong to
    /// its key (damaged data).
    #[error("store `{store}` holds a {part} that cannot be deserialized: {source}")]
    StoreCorrupt {
        /// The store.
        store: String,
        /// Key or value.
        part: Part,
        /// What was wrong.
        #[source]
        source: SerdeError,
    },
    /// A processor failed on a record.
    #[error("processor `{processor}` failed{}: {message}", at_origin(origin))]
    Processing {
        /// The processor's node name.
        processor: String,
        /// The record that caused it, when known.
        origin: Option<Origin>,
        /// What the processor said.
        message: String,
    },
    /// The state directory of a task is held by another process (or another task of this one).
    #[error(
        "state directory {path} is already in use by another kstreams instance (lock file held)"
    )]
    StateDirLocked {
        /// The directory.
        path: std::path::PathBuf,
    },
    /// LMDB failed.
    ///
    /// The LMDB binding's error is kept opaque, so that its type is not part of kstreams' API:
    /// [`source`](std::error::Error::source) returns it (or its `Display` in the message).
    #[error("LMDB error in {path}: {source}")]
    Lmdb {
        /// The environment's directory.
        path: std::path::PathBuf,
        /// The LMDB error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// An I/O error, with what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A store was asked for by a name or type the processor did not declare.
    #[error("{0}")]
    Store(String),
    /// The topology is not valid; see [`TopologyError`](crate::topology::TopologyError).
    #[error(transparent)]
    Topology(#[from] crate::topology::TopologyError),
    /// A user function returned an error.
    #[error("{0}")]
    User(Box<dyn std::error::Error + Send + Sync + 'static>),
    /// The Kafka client failed.
    ///
    /// The client's error is kept opaque, so that the client's types are not part of kstreams'
    /// API: [`source`](std::error::Error::source) returns it (or its `Display` in the message).
    #[cfg(feature = "kafka")]
    #[error("kafka: {context}: {source}")]
    Kafka {
        /// What was being done.
        context: String,
        /// The client's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// The application's configuration is not valid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The Kafka runtime cannot start or go on: the cluster is unreachable, a topic is missing,
    /// co-partitioned topics disagree, a delivery failed.
    #[error("{0}")]
    Runtime(String),
    /// A bug in kstreams: an invariant of the runtime did not hold.
    #[error("internal error (a bug in kstreams, please report it): {0}")]
    Internal(String),
}

fn at_origin(origin: &Option<Origin>) -> String {
    match origin {
        Some(o) => format!(" at {o}"),
        None => String::new(),
    }
}

impl Error {
    /// An error a processor returns: `Err(Error::processing("unknown currency"))`.
    ///
    /// The runtime fills in the processor's name and, where it can, the record's origin.
    pub fn processing(message: impl Into<String>) -> Self {
        Error::Processing {
            processor: String::new(),
            origin: None,
            message: message.into(),
        }
    }

    /// Wraps any error a user function returned.
    pub fn user(err: impl std::error::Error + Send + Sync + 'static) -> Self {
        Error::User(Box::new(err))
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// An [`Error::Lmdb`] about the environment in `path`. The one constructor, so that
    /// [`Error::lmdb_source`] always finds the binding's error.
    pub(crate) fn lmdb(path: impl Into<std::path::PathBuf>, source: heed::Error) -> Self {
        Error::Lmdb {
            path: path.into(),
            source: Box::new(source),
        }
    }

    /// The LMDB binding's error of an [`Error::Lmdb`].
    pub(crate) fn lmdb_source(&self) -> Option<&heed::Error> {
        match self {
            Error::Lmdb { source, .. } => source.downcast_ref(),
            _ => None,
        }
    }

    /// An [`Error::Kafka`]: the client failed while doing `context`. The one constructor, so
    /// that [`Error::kafka_source`] always finds the client's error.
    #[cfg(feature = "kafka")]
    pub(crate) fn kafka(context: impl Into<String>, source: rdkafka::error::KafkaError) -> Self {
        Error::Kafka {
            context: context.into(),
            source: Box::new(source),
        }
    }

    /// The client's error of an [`Error::Kafka`].
    #[cfg(feature = "kafka")]
    pub(crate) fn kafka_source(&self) -> Option<&rdkafka::error::KafkaError> {
        match self {
            Error::Kafka { source, .. } => source.downcast_ref(),
            _ => None,
        }
    }

    /// The store this error is about, when it concerns one key or value of a store
    /// ([`Error::StoreSerialize`], [`Error::StoreCorrupt`]).
    pub fn store(&self) -> Option<&str> {
        match self {
            Error::StoreSerialize { store, .. } | Error::StoreCorrupt { store, .. } => Some(store),
            _ => None,
        }
    }

    /// Labels an error a processor returned: a [`Error::Processing`] without a processor name gets
    /// `processor`, one without an origin gets `origin`, and an [`Error::User`] becomes a
    /// `Processing` error with both. Any other error is returned as it is. The one place the
    /// runtime fills these in (per-record adapters, processor nodes, failed records).
    pub(crate) fn labelled(self, processor: &str, origin: Option<&Origin>) -> Error {
        match self {
            Error::Processing {
                processor: p,
                origin: o,
                message,
            } => Error::Processing {
                processor: if p.is_empty() {
                    processor.to_owned()
                } else {
                    p
                },
                origin: o.or_else(|| origin.cloned()),
                message,
            },
            Error::User(inner) => Error::Processing {
                processor: processor.to_owned(),
                origin: origin.cloned(),
                message: inner.to_string(),
            },
            other => other,
        }
    }

    /// The origin of the record this error is about, when there is one.
    pub fn origin(&self) -> Option<&Origin> {
        match self {
            Error::Deserialize { origin, .. } | Error::InvalidTimestamp { origin, .. } => {
                Some(origin)
            }
            Error::Processing { origin, .. } => origin.as_ref(),
            _ => None,
        }
    }
}

impl From<std::convert::Infallible> for Error {
    fn from(e: std::convert::Infallible) -> Self {
        match e {}
    }
}

/// A message returned as an error (`Result<(), String>`): a processing error with that message
/// (see [`Error::processing`]).
impl From<String> for Error {
    fn from(message: String) -> Self {
        Error::processing(message)
    }
}

/// A message returned as an error (`Result<(), &str>`): a processing error with that message.
impl From<&str> for Error {
    fn from(message: &str) -> Self {
        Error::processing(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(offset: i64) -> Origin {
        Origin {
            topic: "in".into(),
            partition: 1,
            offset,
        }
    }

    #[test]
    fn labelled_fills_in_what_is_missing_and_keeps_what_is_there() {
        let fresh = Error::processing("bad").labelled("count", Some(&origin(7)));
        assert!(
            matches!(&fresh, Error::Processing { processor, origin: Some(o), message }
                if processor == "count" && o.offset == 7 && message == "bad"),
            "{fresh:?}"
        );
        let named = Error::Processing {
            processor: "inner".into(),
            origin: Some(origin(3)),
            message: "bad".into(),
        }
        .labelled("outer", Some(&origin(7)));
        assert!(
            matches!(&named, Error::Processing { processor, origin: Some(o), .. }
                if processor == "inner" && o.offset == 3),
            "{named:?}"
        );
        // A user error becomes a processing error about the record (a per-record processor's
        // `Err` keeps its origin).
        let user =
            Error::user(std::io::Error::other("disk says no")).labelled("", Some(&origin(5)));
        assert!(
            matches!(&user, Error::Processing { processor, origin: Some(o), message }
                if processor.is_empty() && o.offset == 5 && message == "disk says no"),
            "{user:?}"
        );
        let message = user.labelled("count", None).to_string();
        assert!(
            message.contains("`count`") && message.contains(&origin(5).to_string()),
            "{message}"
        );
        // Anything else is not the processor's to label.
        let internal = Error::Internal("a bug".into()).labelled("count", Some(&origin(1)));
        assert!(matches!(internal, Error::Internal(_)), "{internal:?}");
    }

    /// The LMDB binding's error is behind our type, yet `source()` still reaches it and the
    /// runtime still sees which one it is.
    #[test]
    fn an_lmdb_error_keeps_the_binding_error_as_its_source() {
        use std::error::Error as _;
        let e = Error::lmdb("/state/0_1", heed::Error::Mdb(heed::MdbError::MapFull));
        let source = e.source().expect("a source");
        assert!(
            matches!(
                source.downcast_ref::<heed::Error>(),
                Some(heed::Error::Mdb(heed::MdbError::MapFull))
            ),
            "{source:?}"
        );
        assert!(matches!(
            e.lmdb_source(),
            Some(heed::Error::Mdb(heed::MdbError::MapFull))
        ));
        let message = e.to_string();
        assert!(
            message.contains("/state/0_1") && message.contains(&source.to_string()),
            "{message}"
        );
        assert!(Error::Internal("x".into()).lmdb_source().is_none());
    }

    /// The same for the Kafka client's error.
    #[cfg(feature = "kafka")]
    #[test]
    fn a_kafka_error_keeps_the_client_error_as_its_source() {
        use rdkafka::error::KafkaError;
        use rdkafka::types::RDKafkaErrorCode;
        use std::error::Error as _;
        let e = Error::kafka(
            "committing offsets",
            KafkaError::ConsumerCommit(RDKafkaErrorCode::RebalanceInProgress),
        );
        let source = e.source().expect("a source");
        assert!(
            matches!(
                source.downcast_ref::<KafkaError>(),
                Some(KafkaError::ConsumerCommit(
                    RDKafkaErrorCode::RebalanceInProgress
                ))
            ),
            "{source:?}"
        );
        assert_eq!(
            e.kafka_source().and_then(KafkaError::rdkafka_error_code),
            Some(RDKafkaErrorCode::RebalanceInProgress)
        );
        let message = e.to_string();
        assert!(
            message.starts_with("kafka: committing offsets: ")
                && message.contains(&source.to_string()),
            "{message}"
        );
        assert!(Error::Internal("x".into()).kafka_source().is_none());
    }
}
