//! Bad records: what happens to a record that cannot be deserialized, that a processor fails, or
//! whose output cannot be produced.
//!
//! Owns: [`OnBadRecord`], [`ErrorPolicies`] (per stage, per topic), [`is_record_level`] (which
//! processor errors are about the data), the error stages, and the shape and accounting of a
//! dead-lettered record (its headers, the warning and the metric). A leaf: it runs nothing; the
//! execution of a batch (`exec`) and the Kafka runtime's sink apply these policies.

use std::collections::BTreeMap;
use std::fmt;

use crate::error::{Error, Result};
use crate::record::{Headers, Origin, ProducerRecord};

/// What happens to a record that cannot be deserialized, or that a processor fails.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OnBadRecord {
    /// Stop with an error naming topic, partition, offset and cause (the default).
    #[default]
    Fail,
    /// Log at warn, count in `kstreams_skipped_records_total`, and go on.
    Skip,
    /// Produce the original key and value bytes to this topic, with the origin and the error in
    /// headers (`kstreams.error.topic`, `.partition`, `.offset`, `.stage`, `.message`), and go on.
    DeadLetter {
        /// The dead-letter topic.
        topic: String,
    },
}

/// The error stages, as written in the `stage` label of the metrics and the
/// `kstreams.error.stage` header.
pub(crate) mod stage {
    /// A record's key or value could not be deserialized at a source.
    pub(crate) const DESERIALIZE: &str = "deserialize";
    /// A processor failed a record with [`Context::fail_record`](crate::Context::fail_record).
    pub(crate) const PROCESS: &str = "process";
    /// An output record could not be serialized, sent or delivered to its sink topic.
    pub(crate) const PRODUCE: &str = "produce";
    /// A windowed operator found the record too late for every window (`OnLate::DeadLetter`).
    pub(crate) const LATE: &str = "late";
}

/// What happens to bad records at each stage: an application-wide policy per stage and per-topic
/// overrides. The most specific policy wins: the override for the topic when there is one, else the
/// stage's policy. Deserialization and processing are keyed by source topic, production by sink
/// topic.
///
/// ```
/// use kstreams::{ErrorPolicies, OnBadRecord};
/// let p = ErrorPolicies::default()
///     .on_deserialization_error(OnBadRecord::Skip)
///     .on_deserialization_error_for("orders", OnBadRecord::Fail);
/// assert_eq!(p.deserialization("orders"), &OnBadRecord::Fail);
/// assert_eq!(p.deserialization("payments"), &OnBadRecord::Skip);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorPolicies {
    deserialization: OnBadRecord,
    processing: OnBadRecord,
    production: OnBadRecord,
    pub(crate) deserialization_for: BTreeMap<String, OnBadRecord>,
    pub(crate) processing_for: BTreeMap<String, OnBadRecord>,
    pub(crate) production_for: BTreeMap<String, OnBadRecord>,
}

impl ErrorPolicies {
    /// Records that cannot be deserialized (default: fail).
    #[must_use]
    pub fn on_deserialization_error(mut self, policy: OnBadRecord) -> Self {
        self.deserialization = policy;
        self
    }

    /// Records of source topic `topic` that cannot be deserialized.
    #[must_use]
    pub fn on_deserialization_error_for(
        mut self,
        topic: impl Into<String>,
        policy: OnBadRecord,
    ) -> Self {
        self.deserialization_for.insert(topic.into(), policy);
        self
    }

    /// Records a processor fails with [`Context::fail_record`](crate::Context::fail_record)
    /// (default: fail).
    #[must_use]
    pub fn on_processing_error(mut self, policy: OnBadRecord) -> Self {
        self.processing = policy;
        self
    }

    /// Failed records read from source topic `topic`.
    #[must_use]
    pub fn on_processing_error_for(
        mut self,
        topic: impl Into<String>,
        policy: OnBadRecord,
    ) -> Self {
        self.processing_for.insert(topic.into(), policy);
        self
    }

    /// Output records that cannot be serialized for their sink topic (in a task), or sent or
    /// delivered to it (in the Kafka runtime) (default: fail). Changelog records always fail.
    #[must_use]
    pub fn on_production_error(mut self, policy: OnBadRecord) -> Self {
        self.production = policy;
        self
    }

    /// Output records for sink topic `topic` that cannot be serialized, sent or delivered.
    #[must_use]
    pub fn on_production_error_for(
        mut self,
        topic: impl Into<String>,
        policy: OnBadRecord,
    ) -> Self {
        self.production_for.insert(topic.into(), policy);
        self
    }

    /// The deserialization policy of records read from `topic`.
    pub fn deserialization(&self, topic: &str) -> &OnBadRecord {
        self.deserialization_for
            .get(topic)
            .unwrap_or(&self.deserialization)
    }

    /// The processing policy of records read from `topic`.
    pub fn processing(&self, topic: &str) -> &OnBadRecord {
        self.processing_for.get(topic).unwrap_or(&self.processing)
    }

    /// The production policy of records for sink topic `topic`.
    pub fn production(&self, topic: &str) -> &OnBadRecord {
        self.production_for.get(topic).unwrap_or(&self.production)
    }

    /// Every dead-letter topic of every policy, sorted, each once.
    pub fn dead_letter_topics(&self) -> std::collections::BTreeSet<String> {
        self.all()
            .filter_map(|p| match p {
                OnBadRecord::DeadLetter { topic } => Some(topic.clone()),
                _ => None,
            })
            .collect()
    }

    /// Every policy, defaults and overrides (e.g. to find every dead-letter topic).
    pub fn all(&self) -> impl Iterator<Item = &OnBadRecord> {
        [&self.deserialization, &self.processing, &self.production]
            .into_iter()
            .chain(self.deserialization_for.values())
            .chain(self.processing_for.values())
            .chain(self.production_for.values())
    }
}

/// How a processor fails one record of its batch without failing the batch (see
/// [`Context::fail_record`](crate::Context::fail_record)).
pub(crate) trait RecordFailures {
    fn fail_record(&mut self, processor: &str, origin: Option<&Origin>, error: Error)
    -> Result<()>;

    /// A record a windowed operator found too late for every window (whatever the processing
    /// policy): counted in `kstreams_late_records_total{processor, store}` and logged at DEBUG
    /// (once the batch committed, where there is a batch), and with `dead_letter` headers also
    /// dead-lettered (see [`late_dead_letter_topic`]).
    fn late_record(
        &mut self,
        processor: &str,
        store: &str,
        origin: Option<&Origin>,
        message: String,
        dead_letter: Option<Headers>,
    ) -> Result<()>;
}

/// Counts and logs (DEBUG) a late record: late records are normal input, not errors.
pub(crate) fn count_late(processor: &str, store: &str, what: &dyn fmt::Display, message: &str) {
    tracing::debug!(record = %what, processor, store, message, "late record");
    metrics::counter!("kstreams_late_records_total", "processor" => processor.to_owned(), "store" => store.to_owned())
        .increment(1);
}

/// Where a late record of input topic `topic` is dead-lettered: the dead-letter topic of that
/// topic's processing policy, else the first of the application's dead-letter topics; `None`
/// when the application has none (a configuration error, checked when a task is created).
pub(crate) fn late_dead_letter_topic<'p>(
    errors: &'p ErrorPolicies,
    topic: &str,
) -> Option<&'p str> {
    if let OnBadRecord::DeadLetter { topic } = errors.processing(topic) {
        return Some(topic);
    }
    errors
        .all()
        .filter_map(|p| match p {
            OnBadRecord::DeadLetter { topic } => Some(topic.as_str()),
            _ => None,
        })
        .min()
}

/// A dead-letter record: the bytes of the record that failed, with its own headers followed by
/// `kstreams.error.{topic,partition,offset}` (the input record it came from, when known),
/// `kstreams.error.stage`, `kstreams.error.message` and, for production errors,
/// `kstreams.error.sink.topic`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn dead_letter_record(
    dead_letter_topic: &str,
    origin: Option<&Origin>,
    stage: &str,
    message: &str,
    sink_topic: Option<&str>,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    timestamp: i64,
    mut headers: Headers,
) -> ProducerRecord {
    if let Some(origin) = origin {
        headers.push(
            "kstreams.error.topic",
            Some(origin.topic.as_bytes().to_vec()),
        );
        headers.push(
            "kstreams.error.partition",
            Some(origin.partition.to_string().into_bytes()),
        );
        headers.push(
            "kstreams.error.offset",
            Some(origin.offset.to_string().into_bytes()),
        );
    }
    headers.push("kstreams.error.stage", Some(stage.as_bytes().to_vec()));
    headers.push("kstreams.error.message", Some(message.as_bytes().to_vec()));
    if let Some(sink) = sink_topic {
        headers.push("kstreams.error.sink.topic", Some(sink.as_bytes().to_vec()));
    }
    ProducerRecord {
        partition_key_len: None,
        topic: dead_letter_topic.into(),
        partition: None,
        key,
        value,
        timestamp,
        headers,
        origin: origin.cloned(),
    }
}

/// Counts and logs a record skipped at `stage` (`topic` is the origin's topic, or the sink topic
/// for stage `produce`).
pub(crate) fn count_skipped(
    topic: &str,
    stage: &'static str,
    what: &dyn fmt::Display,
    error: &dyn fmt::Display,
) {
    tracing::warn!(record = %what, stage, %error, "skipping a record");
    metrics::counter!("kstreams_skipped_records_total", "topic" => topic.to_owned(), "stage" => stage)
        .increment(1);
}

/// Counts and logs a record sent to a dead-letter topic at `stage`.
pub(crate) fn count_dead_lettered(
    topic: &str,
    stage: &'static str,
    what: &dyn fmt::Display,
    error: &dyn fmt::Display,
    dead_letter_topic: &str,
) {
    tracing::warn!(record = %what, stage, %error, dead_letter_topic, "dead-lettering a record");
    metrics::counter!("kstreams_dead_lettered_records_total", "topic" => topic.to_owned(), "stage" => stage)
        .increment(1);
}

/// Whether a processor's error is about the data of the records it was given (and so goes through
/// the processing policy of the record it is about), rather than about the infrastructure (and so
/// fails the batch as it is).
///
/// Record-level: [`Error::Processing`] and [`Error::User`] (what a processor says about a record),
/// and the store errors about a key or value: [`Error::StoreCorrupt`] (bytes a store's serde
/// cannot read, or a damaged long-key entry) and [`Error::StoreSerialize`] (a key or value a
/// store's serde cannot write); an [`Error::Serialize`] or [`Error::Deserialize`] a processor
/// returns. Everything else fails the batch: LMDB and I/O
/// errors (a full map, a full disk), [`Error::StateDirLocked`], [`Error::Store`] (a store the
/// processor did not declare), configuration, runtime and internal errors.
///
/// ```
/// use kstreams::Error;
/// use kstreams::policy::is_record_level;
/// assert!(is_record_level(&Error::processing("unknown currency")));
/// assert!(!is_record_level(&Error::Internal("a bug".into())));
/// ```
pub fn is_record_level(error: &Error) -> bool {
    matches!(
        error,
        Error::Processing { .. }
            | Error::User(_)
            | Error::StoreCorrupt { .. }
            | Error::StoreSerialize { .. }
            | Error::Serialize { .. }
            | Error::Deserialize { .. }
    )
}

/// The error-policy builder methods of a config type with an [`ErrorPolicies`] field: one copy for
/// [`AppConfig`](crate::kafka::AppConfig), [`DriverBuilder`](crate::testing::DriverBuilder) and
/// [`SplitCheck`](crate::testing::SplitCheck) (inherent methods, so callers import nothing).
/// `base` gives the per-stage policies; `per_topic` adds the per-topic overrides, with `checked`
/// naming what rejects an override for a topic the topology does not have.
macro_rules! error_policy_builders {
    (base: $field:ident, production = $production:literal) => {
        /// Every error policy at once (replaces what the `on_*` methods set).
        #[must_use]
        pub fn error_policies(mut self, errors: $crate::policy::ErrorPolicies) -> Self {
            self.$field = errors;
            self
        }

        /// What to do with records that cannot be deserialized (default: fail).
        #[must_use]
        pub fn on_deserialization_error(mut self, policy: $crate::policy::OnBadRecord) -> Self {
            self.$field = self.$field.on_deserialization_error(policy);
            self
        }

        /// What to do with records a processor fails with
        /// [`Context::fail_record`](crate::Context::fail_record) (default: fail).
        #[must_use]
        pub fn on_processing_error(mut self, policy: $crate::policy::OnBadRecord) -> Self {
            self.$field = self.$field.on_processing_error(policy);
            self
        }

        #[doc = concat!("What to do with output records that cannot be ", $production, " (default: fail).")]
        #[must_use]
        pub fn on_production_error(mut self, policy: $crate::policy::OnBadRecord) -> Self {
            self.$field = self.$field.on_production_error(policy);
            self
        }
    };
    (per_topic: $field:ident, production = $production:literal, checked = $checked:literal) => {
        $crate::policy::error_policy_builders!(base: $field, production = $production);

        #[doc = concat!(
            "What to do with records of source topic `topic` that cannot be deserialized \
             (overrides [`on_deserialization_error`](Self::on_deserialization_error) for that \
             topic; ", $checked, " rejects a topic the topology does not read)."
        )]
        #[must_use]
        pub fn on_deserialization_error_for(
            mut self,
            topic: impl Into<String>,
            policy: $crate::policy::OnBadRecord,
        ) -> Self {
            self.$field = self.$field.on_deserialization_error_for(topic, policy);
            self
        }

        #[doc = concat!(
            "What to do with failed records read from source topic `topic` (overrides \
             [`on_processing_error`](Self::on_processing_error) for that topic; ", $checked,
            " rejects a topic the topology does not read)."
        )]
        #[must_use]
        pub fn on_processing_error_for(
            mut self,
            topic: impl Into<String>,
            policy: $crate::policy::OnBadRecord,
        ) -> Self {
            self.$field = self.$field.on_processing_error_for(topic, policy);
            self
        }

        #[doc = concat!(
            "What to do with output records for sink topic `topic` (overrides \
             [`on_production_error`](Self::on_production_error) for that topic; ", $checked,
            " rejects a topic the topology does not write)."
        )]
        #[must_use]
        pub fn on_production_error_for(
            mut self,
            topic: impl Into<String>,
            policy: $crate::policy::OnBadRecord,
        ) -> Self {
            self.$field = self.$field.on_production_error_for(topic, policy);
            self
        }
    };
}
pub(crate) use error_policy_builders;
