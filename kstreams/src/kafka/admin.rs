//! Topics: metadata checks and topic creation, on a real cluster or the embedded one.
//!
//! Owns: [`TopicSpec`], the start-up checks (input topics exist, co-partitioned topics agree on
//! their partition count, changelog topics exist or are created compacted with the source's
//! partition count), each bounded in time and reported as a clear [`Error::Runtime`]; a
//! partition's offsets, asked again while its leader is not known yet.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{Client, ClientContext, DefaultClientContext};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::types::RDKafkaErrorCode;

use super::backoff::Backoff;
use super::config::AppConfig;
use super::mock::MockCommands;
use crate::error::{Error, Result};
use crate::topology::Topology;

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TopicSpec {
    /// The name.
    pub name: String,
    /// The partition count.
    pub partitions: i32,
    /// The replication factor (-1: the broker's default).
    pub replication: i32,
    /// Topic configs, e.g. `cleanup.policy=compact`.
    pub configs: Vec<(String, String)>,
}

impl TopicSpec {
    /// A topic with the broker's default replication and no configs.
    pub fn new(name: impl Into<String>, partitions: i32) -> Self {
        TopicSpec {
            name: name.into(),
            partitions,
            replication: -1,
            configs: Vec::new(),
        }
    }

    /// Sets a topic config.
    #[must_use]
    pub fn config(mut self, name: &str, value: &str) -> Self {
        self.configs.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets the replication factor.
    #[must_use]
    pub fn replication(mut self, factor: i32) -> Self {
        self.replication = factor;
        self
    }
}

/// Creates topics on the app's cluster, leaving existing ones as they are.
pub(crate) async fn create_topics(
    config: &AppConfig,
    bootstrap: &str,
    mock: Option<&MockCommands>,
    topics: &[TopicSpec],
) -> Result<()> {
    // Nothing to create (a broker's admin API refuses an empty request).
    if topics.is_empty() {
        return Ok(());
    }
    if let Some(mock) = mock {
        for t in topics {
            mock.create_topic_async(&t.name, t.partitions).await?;
        }
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> = config
        .admin_config(bootstrap)
        .create()
        .map_err(super::config::redact_client_error)
        .map_err(|source| Error::kafka("creating the admin client", source))?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            let mut n = NewTopic::new(
                &t.name,
                t.partitions,
                TopicReplication::Fixed(t.replication),
            );
            for (k, v) in &t.configs {
                n = n.set(k, v);
            }
            n
        })
        .collect();
    let options = AdminOptions::new()
        .request_timeout(Some(config.startup_timeout))
        .operation_timeout(Some(config.startup_timeout));
    let results = tokio::time::timeout(
        config.startup_timeout + Duration::from_secs(1),
        admin.create_topics(new.iter(), &options),
    )
    .await
    .map_err(|_| {
        Error::Runtime(format!(
            "cannot create topics on the Kafka cluster at {bootstrap}: no answer within {:?}",
            config.startup_timeout
        ))
    })?
    .map_err(|source| {
        Error::kafka(
            format!("creating topics on the Kafka cluster at {bootstrap}"),
            source,
        )
    })?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(Error::Runtime(format!(
                    "cannot create topic `{name}`: {code}"
                )));
            }
        }
    }
    Ok(())
}

/// A client context that remembers librdkafka's last connection failure message (facility
/// `FAIL`, logged at error level): the detail behind an error code, such as "SASL
/// authentication error: Authentication failed: Invalid username or password" or "SSL handshake
/// failed: ... certificate verify failed".
pub(crate) trait ConnectionFailures {
    /// The last failure message, if any.
    fn last_connection_failure(&self) -> Option<String>;
}

/// Whether a client error is a security failure (the cluster refused the credentials, or the
/// TLS handshake failed) that start-up reports at once: retrying does not fix it.
pub(crate) fn is_security_error(error: &rdkafka::error::KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SSL)
    )
}

/// A partition's low and high offsets (the high one is the last stable offset under
/// `read_committed`), asked again (100 ms doubling to 2 s, within `timeout` in all) while the
/// answer is that the partition has no leader the client knows of yet: right after its topic was
/// created (the controller answers `CreateTopics` before every broker's metadata names the
/// leader) or while its leadership moves. Any other error returns at once.
///
/// An empty answer (low = high) is asked once more, at once, and taken when the second is the
/// same. librdkafka's query sends its two `ListOffsets` requests at once, and when it serves both
/// answers together the second overwrites the first one's error: one leaderless answer comes
/// back as success, the other answer given as both offsets (seen in this function's tests on the
/// embedded cluster). A restore that took that for the log's start would skip its changelog.
pub(crate) fn watermarks<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    partition: i32,
    timeout: Duration,
) -> KafkaResult<(i64, i64)> {
    let mut backoff = Backoff::within(timeout);
    let mut empty = None;
    loop {
        let left = timeout.saturating_sub(backoff.elapsed());
        match client.fetch_watermarks(topic, partition, left) {
            Ok((low, high)) if low == high && empty != Some(low) && !left.is_zero() => {
                empty = Some(low);
            }
            Err(e) if is_leaderless(&e) && backoff.may_retry() => {
                empty = None;
                backoff.wait();
            }
            answer => return answer,
        }
    }
}

/// Whether an error says only that a partition's leader is not known yet.
fn is_leaderless(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::NotLeaderForPartition
                | RDKafkaErrorCode::LeaderNotAvailable
                | RDKafkaErrorCode::UnknownTopicOrPartition
        )
    )
}

/// The partition count of every existing topic, from one metadata answer within `timeout`.
/// Fails at once, not at the timeout, when the client meets an authentication or TLS error.
/// Call it before subscribing: it polls the consumer for the errors librdkafka reported.
pub(crate) fn partition_counts<C: rdkafka::consumer::ConsumerContext + ConnectionFailures>(
    consumer: &BaseConsumer<C>,
    bootstrap: &str,
    timeout: Duration,
) -> Result<BTreeMap<String, i32>> {
    let deadline = std::time::Instant::now() + timeout;
    let md = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let e = match consumer.fetch_metadata(None, left.min(Duration::from_millis(500))) {
            Ok(md) => break md,
            Err(e) => e,
        };
        // Serve what the client queued meanwhile: its logs (forwarded to `tracing`, the last
        // failure remembered) and its errors. Nothing is subscribed yet, so no records come.
        // A zero timeout would serve only one queued event per call.
        while let Some(polled) = consumer.poll(Duration::from_millis(50)) {
            if let Err(error) = polled
                && is_security_error(&error)
            {
                // librdkafka's message names the broker and the failure, never a property value.
                let why = consumer
                    .context()
                    .last_connection_failure()
                    .unwrap_or_else(|| error.to_string());
                return Err(Error::Runtime(format!(
                    "cannot connect to the Kafka cluster at {bootstrap}: {why}; check the \
                     security settings (security.protocol, sasl.mechanism, sasl.username, \
                     sasl.password, ssl.ca.location)"
                )));
            }
            if std::time::Instant::now() >= deadline {
                break;
            }
        }
        if std::time::Instant::now() >= deadline {
            return Err(Error::Runtime(format!(
                "cannot reach the Kafka cluster at {bootstrap} within {timeout:?} ({e}); \
                 check bootstrap servers, network and security settings"
            )));
        }
    };
    Ok(md
        .topics()
        .iter()
        .filter(|t| t.error().is_none() && !t.partitions().is_empty())
        .map(|t| (t.name().to_owned(), t.partitions().len() as i32))
        .collect())
}

/// Checks the topology against the cluster and creates missing changelog and repartition
/// topics. Returns the partition count of each sub-topology (indexed like
/// [`Topology::subtopologies`]) and of every topic on the cluster, the created ones included.
pub(crate) async fn prepare_topics<C: rdkafka::consumer::ConsumerContext + ConnectionFailures>(
    topology: &Topology,
    config: &AppConfig,
    bootstrap: &str,
    mock: Option<&MockCommands>,
    consumer: &BaseConsumer<C>,
) -> Result<(Vec<i32>, BTreeMap<String, i32>)> {
    let mut counts = partition_counts(consumer, bootstrap, config.startup_timeout)?;
    let replication = if mock.is_some() {
        1
    } else {
        config.changelog_replication_factor
    };
    // Repartition topics first: the sub-topologies that read them are checked with their counts.
    let mut created = repartition_topics(topology, &counts, replication)?;
    let mut planned = counts.clone();
    planned.extend(created.iter().map(|t| (t.name.clone(), t.partitions)));
    let mut per_sub = Vec::new();
    for sub in topology.subtopologies() {
        let n = copartitioned_count(&sub.source_topics, &planned, bootstrap)?.unwrap_or(1);
        per_sub.push(n);
        for store in &sub.stores {
            let Some(spec) = topology.stores().iter().find(|s| s.name() == &**store) else {
                continue;
            };
            // A table's store whose source topic is its changelog has no topic of its own.
            if !spec.changelog_enabled() || spec.source_changelog().is_some() {
                continue;
            }
            let name = crate::task::changelog_topic(&config.application_id, store);
            match counts.get(&name) {
                Some(&c) if c != n => {
                    return Err(Error::Runtime(format!(
                        "changelog topic `{name}` has {c} partitions but its input has {n}; \
                         delete it (the state is rebuilt from the input) or use another \
                         application id"
                    )));
                }
                Some(_) => {}
                None => {
                    created.push(changelog_topic_spec(spec, name, n, replication));
                }
            }
        }
    }
    for sink in topology.sink_topics() {
        if mock.is_none() && !planned.contains_key(&*sink) {
            return Err(Error::Runtime(format!(
                "output topic `{sink}` does not exist on the Kafka cluster at {bootstrap}; \
                 create it before starting the application"
            )));
        }
    }
    if !created.is_empty() {
        for c in &created {
            let what = if topology.is_repartition_topic(&c.name) {
                "creating repartition topic"
            } else {
                "creating changelog topic"
            };
            tracing::info!(topic = %c.name, partitions = c.partitions, "{what}");
        }
        create_topics(config, bootstrap, mock, &created).await?;
        // Wait until the new topics show up in metadata (bounded).
        let deadline = std::time::Instant::now() + config.startup_timeout;
        let mut poll = Duration::from_millis(5);
        loop {
            counts = partition_counts(consumer, bootstrap, config.startup_timeout)?;
            if created.iter().all(|c| counts.contains_key(&c.name)) {
                break;
            }
            if std::time::Instant::now() > deadline {
                return Err(Error::Runtime(
                    "created changelog and repartition topics did not appear in metadata in time"
                        .into(),
                ));
            }
            std::thread::sleep(poll);
            poll = (poll * 2).min(Duration::from_millis(100));
        }
    }
    Ok((per_sub, counts))
}

/// The repartition topics to create (`counts`: the partition count of every existing topic),
/// each with the partition count [`Topology::repartition_partitions`] gives: that of the topics
/// its reading sub-topology also reads, else the largest its writing sub-topology reads. One
/// that exists with another count is an error naming it.
fn repartition_topics(
    topology: &Topology,
    counts: &BTreeMap<String, i32>,
    replication: i32,
) -> Result<Vec<TopicSpec>> {
    let mut create = Vec::new();
    for r in topology.repartition_topics() {
        let existing = |t: &str| {
            if topology.is_repartition_topic(t) {
                None
            } else {
                counts.get(t).copied()
            }
        };
        let Some(want) = topology.repartition_partitions(&r.topic, &existing) else {
            return Err(Error::Runtime(format!(
                "cannot tell the partition count of repartition topic `{}`: no topic read by the \
                 sub-topologies that write or read it exists",
                r.topic
            )));
        };
        match counts.get(&*r.topic) {
            Some(&c) if c != want => {
                return Err(Error::Runtime(format!(
                    "repartition topic `{}` has {c} partitions but needs {want} (the topics it is \
                     co-partitioned with, or its upstream's); delete it (it is created again at \
                     start-up) or use another application id",
                    r.topic
                )));
            }
            Some(_) => {}
            None => create.push(TopicSpec::new(&*r.topic, want).replication(replication)),
        }
    }
    Ok(create)
}

/// The partition count of a sub-topology's input topics, which must all have the same one (they
/// are co-partitioned: partition `p` of each goes to task `<sub-topology>_p`, as a join of a
/// stream and a table, or of two streams, needs); `None` without inputs. A missing topic, or
/// two with different counts, is an error naming them.
fn copartitioned_count(
    topics: &[std::sync::Arc<str>],
    counts: &BTreeMap<String, i32>,
    bootstrap: &str,
) -> Result<Option<i32>> {
    let mut n: Option<(i32, &str)> = None;
    for topic in topics {
        let Some(&c) = counts.get(&**topic) else {
            return Err(Error::Runtime(format!(
                "input topic `{topic}` does not exist on the Kafka cluster at {bootstrap}; \
                 create it before starting the application"
            )));
        };
        match n {
            None => n = Some((c, topic)),
            Some((m, first)) if m != c => {
                return Err(Error::Runtime(format!(
                    "input topics `{first}` ({m} partitions) and `{topic}` ({c} partitions) are \
                     read by one sub-topology (a join, or a table and the stream that reads it): \
                     they must be co-partitioned for the join, with the same number of \
                     partitions (repartition one of them, or recreate it)"
                )));
            }
            Some(_) => {}
        }
    }
    Ok(n.map(|(c, _)| c))
}

/// The changelog topic of `spec`: compacted for a key-value store, `compact,delete` with the
/// store's retention plus a day for a window or session store (as Kafka Streams' window
/// changelogs), so old windows leave the topic as they leave the store.
fn changelog_topic_spec(
    spec: &crate::store::StoreSpec,
    name: String,
    partitions: i32,
    replication: i32,
) -> TopicSpec {
    spec.changelog_topic_config().into_iter().fold(
        TopicSpec::new(name, partitions).replication(replication),
        |t, (k, v)| t.config(k, &v),
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::store::StoreSpec;

    mod leaderless {
        use rdkafka::mocking::MockCluster;
        use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer};
        use rdkafka_sys::types::{RDKafkaApiKey, RDKafkaRespErr};

        use super::*;

        const NOT_LEADER: RDKafkaRespErr =
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION;

        /// A mock cluster with topic `t` (one partition, 3 records) and a consumer of it;
        /// `errors` are the answers of its next `ListOffsets` requests, in order.
        fn cluster_answering(
            errors: &[RDKafkaRespErr],
        ) -> (MockCluster<'static, DefaultProducerContext>, BaseConsumer) {
            let cluster = MockCluster::new(1).expect("mock cluster");
            cluster.create_topic("t", 1, 1).expect("topic");
            let producer: BaseProducer = rdkafka::ClientConfig::new()
                .set("bootstrap.servers", cluster.bootstrap_servers())
                .create()
                .expect("producer");
            for _ in 0..3 {
                producer
                    .send(BaseRecord::<(), [u8]>::to("t").payload(b"x"))
                    .expect("queued");
            }
            producer.flush(Duration::from_secs(10)).expect("flushed");
            let consumer: BaseConsumer = rdkafka::ClientConfig::new()
                .set("bootstrap.servers", cluster.bootstrap_servers())
                .create()
                .expect("consumer");
            // Known metadata first, so that the errors go to the offset requests.
            consumer
                .fetch_metadata(Some("t"), Duration::from_secs(10))
                .expect("metadata");
            cluster.request_errors(RDKafkaApiKey::ListOffsets, errors);
            (cluster, consumer)
        }

        #[test]
        fn a_partition_without_a_leader_yet_is_asked_again() {
            let (_cluster, consumer) = cluster_answering(&[NOT_LEADER, NOT_LEADER, NOT_LEADER]);
            let got = watermarks(consumer.client(), "t", 0, Duration::from_secs(10));
            assert_eq!(
                got.expect("watermarks after three leaderless answers"),
                (0, 3)
            );
        }

        #[test]
        fn one_leaderless_answer_is_never_taken_for_offsets() {
            // librdkafka's own watermark query answers (3, 3) or (0, 0) here now and then.
            for _ in 0..10 {
                let (_cluster, consumer) = cluster_answering(&[NOT_LEADER]);
                let got = watermarks(consumer.client(), "t", 0, Duration::from_secs(10));
                assert_eq!(got.expect("watermarks after one leaderless answer"), (0, 3));
            }
        }

        #[test]
        fn a_partition_that_stays_leaderless_fails_within_the_timeout() {
            let (_cluster, consumer) = cluster_answering(&[NOT_LEADER; 64]);
            let began = std::time::Instant::now();
            let e = watermarks(consumer.client(), "t", 0, Duration::from_millis(800))
                .expect_err("still leaderless");
            assert!(is_leaderless(&e), "{e}");
            assert!(
                began.elapsed() < Duration::from_secs(3),
                "{:?}",
                began.elapsed()
            );
        }

        #[test]
        fn another_error_is_not_asked_again() {
            let denied = RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED;
            // Both requests of one query (one alone may be overwritten, see `watermarks`), and
            // a third that a second query would meet.
            let (_cluster, consumer) = cluster_answering(&[denied; 3]);
            let e = watermarks(consumer.client(), "t", 0, Duration::from_secs(10))
                .expect_err("not authorized");
            assert_eq!(
                e.rdkafka_error_code(),
                Some(RDKafkaErrorCode::TopicAuthorizationFailed)
            );
        }
    }

    fn configs(spec: &StoreSpec) -> Vec<(String, String)> {
        changelog_topic_spec(spec, "app-s-changelog".to_owned(), 4, 3).configs
    }

    #[test]
    fn topics_of_one_subtopology_with_different_partition_counts_are_named_in_the_error() {
        let counts: BTreeMap<String, i32> = [("orders", 4), ("customers", 2), ("more", 4)]
            .into_iter()
            .map(|(t, n)| (t.to_owned(), n))
            .collect();
        let topics = |ts: &[&str]| ts.iter().map(|&t| t.into()).collect::<Vec<_>>();
        let same = copartitioned_count(&topics(&["orders", "more"]), &counts, "b:1");
        assert_eq!(same.ok().flatten(), Some(4));
        assert_eq!(copartitioned_count(&[], &counts, "b:1").ok(), Some(None));
        let Err(Error::Runtime(message)) =
            copartitioned_count(&topics(&["orders", "customers"]), &counts, "b:1")
        else {
            panic!("different partition counts accepted");
        };
        for part in [
            "`orders` (4 partitions)",
            "`customers` (2 partitions)",
            "must be co-partitioned for the join",
        ] {
            assert!(message.contains(part), "{part:?} not in {message:?}");
        }
        let Err(Error::Runtime(missing)) =
            copartitioned_count(&topics(&["orders", "nope"]), &counts, "b:1")
        else {
            panic!("a missing topic accepted");
        };
        assert!(
            missing.contains("input topic `nope` does not exist"),
            "{missing}"
        );
    }

    #[test]
    fn a_repartition_topic_is_created_with_its_upstreams_count_and_a_wrong_existing_one_refused() {
        let mut t = Topology::builder();
        let input = t.source::<String, String>("in");
        let rekeyed = t.repartition(&input, "bykey");
        t.sink("out", &rekeyed);
        let topology = t.build().expect("topology").resolve("app");
        let counts = |pairs: &[(&str, i32)]| -> BTreeMap<String, i32> {
            pairs.iter().map(|(t, n)| ((*t).to_owned(), *n)).collect()
        };
        let created = repartition_topics(&topology, &counts(&[("in", 3)]), 2).ok();
        assert_eq!(
            created,
            Some(vec![
                TopicSpec::new("app-bykey-repartition", 3).replication(2)
            ])
        );
        // Already there with that count: nothing to create.
        let there = counts(&[("in", 3), ("app-bykey-repartition", 3)]);
        assert_eq!(repartition_topics(&topology, &there, 2).ok(), Some(vec![]));
        let wrong = counts(&[("in", 3), ("app-bykey-repartition", 2)]);
        let Err(Error::Runtime(message)) = repartition_topics(&topology, &wrong, 2) else {
            panic!("a repartition topic with the wrong count accepted");
        };
        assert!(
            message.contains("`app-bykey-repartition` has 2 partitions but needs 3"),
            "{message}"
        );
    }

    #[test]
    fn a_key_value_changelog_is_compacted() {
        let spec = StoreSpec::new::<String, u64>("s");
        assert_eq!(
            configs(&spec),
            [("cleanup.policy".to_owned(), "compact".to_owned())]
        );
    }

    #[test]
    fn window_and_session_changelogs_expire_a_day_after_the_store() -> Result<()> {
        let hour = Duration::from_secs(3600);
        let windows = StoreSpec::new::<String, u64>("w").windowed(Duration::from_secs(60), hour)?;
        let sessions = StoreSpec::new::<String, u64>("s").sessions(hour)?;
        for spec in [windows, sessions] {
            assert_eq!(
                configs(&spec),
                [
                    ("cleanup.policy".to_owned(), "compact,delete".to_owned()),
                    (
                        "retention.ms".to_owned(),
                        (3_600_000 + 86_400_000).to_string()
                    ),
                ],
                "{}",
                spec.name()
            );
        }
        let topic = changelog_topic_spec(&StoreSpec::new::<String, u64>("s"), "t".into(), 4, 3);
        assert_eq!((topic.partitions, topic.replication), (4, 3));
        Ok(())
    }
}
