//! Where is a key: which instance of an application holds the partition of a key for a store
//! (Kafka Streams' `queryMetadataForKey`), from what the consumer group already carries.
//!
//! Owns: [`HostInfo`] (an instance's advertised query address,
//! [`AppConfig::application_server`](super::AppConfig::application_server)), [`KeyMetadata`], how the
//! address travels (appended to each group member's `client.id` as `;q=<host:port>`), the decoder
//! of a member's assignment (the classic consumer protocol's bytes) and [`GroupMetadata`], the
//! cached answer of the group coordinator (`DescribeGroups` through rdkafka's
//! `fetch_group_list`). No coordination of its own: every instance reads the group as the
//! coordinator describes it. May not touch: tasks, stores, the group consumer.
//!
//! A key's partition is the one its store's input topic would give it (murmur2 over the key's
//! serialized bytes and the topic's partition count, Java's default partitioner), and the
//! instance that holds it is the group member the partition of that topic is assigned to.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use super::app::AppStatus;
use super::lock;
use crate::error::{Error, Result};
use crate::topology::Topology;

/// The address an instance serves queries on (Kafka Streams' `HostInfo`): `host:port` as given
/// to [`AppConfig::application_server`](super::AppConfig::application_server).
///
/// ```
/// use kstreams::kafka::HostInfo;
/// let h = HostInfo::parse("node-1.example:8080")?;
/// assert_eq!((h.host.as_str(), h.port), ("node-1.example", 8080));
/// assert_eq!(h.to_string(), "node-1.example:8080");
/// assert!(HostInfo::parse("node-1.example").is_err());
/// # Ok::<(), kstreams::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct HostInfo {
    /// The host name or IP address (an IPv6 address in brackets: `[::1]`).
    pub host: String,
    /// The port.
    pub port: u16,
}

impl HostInfo {
    /// A host and port.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        HostInfo {
            host: host.into(),
            port,
        }
    }

    /// Parses `host:port` (`[v6 address]:port` for IPv6); anything else is an
    /// [`Error::Config`] saying what is wrong.
    pub fn parse(s: &str) -> Result<HostInfo> {
        let bad = |why: &str| {
            Error::Config(format!(
                "application server `{s}` is not `host:port` ({why}), e.g. `10.0.0.5:8080` or \
                 `[::1]:8080`"
            ))
        };
        let (host, port) = s.rsplit_once(':').ok_or_else(|| bad("no port"))?;
        if host.is_empty() {
            return Err(bad("no host"));
        }
        if host.contains(|c: char| c.is_whitespace() || c.is_control() || c == ';' || c == '/') {
            return Err(bad("the host has a space, `;` or `/`"));
        }
        let v6 = host.starts_with('[') || host.ends_with(']');
        if v6 && !(host.starts_with('[') && host.ends_with(']') && host.len() > 2) {
            return Err(bad("an IPv6 address goes in brackets"));
        }
        if !v6 && host.contains(':') {
            return Err(bad("an IPv6 address goes in brackets"));
        }
        let port: u16 = port
            .parse()
            .map_err(|_| bad("the port is not a number from 1 to 65535"))?;
        if port == 0 {
            return Err(bad("port 0 is not an address others can reach"));
        }
        Ok(HostInfo::new(host, port))
    }
}

impl fmt::Display for HostInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Where a key of a store lives: its partition, the instance that holds that partition now (its
/// advertised [`HostInfo`], when it advertises one) and whether that is this instance.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyMetadata {
    /// The partition of the store's input topic the key belongs to;
    /// [`GLOBAL_PARTITION`](crate::query::GLOBAL_PARTITION) (-1) for a global table's store,
    /// which every instance has whole (`local` is then `true`).
    pub partition: i32,
    /// The `application_server` of the instance the group assigned that partition to: `None`
    /// while the group rebalances, or when that instance advertises no address.
    pub active: Option<HostInfo>,
    /// Whether this instance holds the partition (running or restoring its task).
    pub local: bool,
}

/// What separates the client id from the advertised address in a member's `client.id`.
const SERVER_MARK: &str = ";q=";

/// `client_id` with `server` appended, as the group consumer's `client.id`.
pub(crate) fn advertise(client_id: &str, server: &HostInfo) -> String {
    format!("{client_id}{SERVER_MARK}{server}")
}

/// The address a member advertises in its client id, if any.
pub(crate) fn advertised(client_id: &str) -> Option<HostInfo> {
    let (_, server) = client_id.rsplit_once(SERVER_MARK)?;
    HostInfo::parse(server).ok()
}

/// A member's assignment that is not the classic consumer protocol's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot decode a consumer group member's assignment: {0}")]
pub(crate) struct AssignmentError(String);

/// Decodes a member's assignment in the classic consumer protocol (`ConsumerProtocolAssignment`,
/// every version: `version: i16`, `[topic: string, [partition: i32]]`, `user_data: bytes`, all
/// big-endian, arrays and bytes prefixed by an `i32` length, strings by an `i16` one); the user
/// data is not read. An empty assignment (a member between generations) is no topic.
pub(crate) fn decode_assignment(
    bytes: &[u8],
) -> std::result::Result<Vec<(String, Vec<i32>)>, AssignmentError> {
    struct Reader<'a>(&'a [u8], usize);
    impl Reader<'_> {
        fn take(&mut self, n: usize, what: &str) -> std::result::Result<&[u8], AssignmentError> {
            let end = self.1.checked_add(n).filter(|e| *e <= self.0.len());
            let end = end.ok_or_else(|| {
                AssignmentError(format!(
                    "{} bytes end inside the {what} at byte {}",
                    self.0.len(),
                    self.1
                ))
            })?;
            let s = &self.0[self.1..end];
            self.1 = end;
            Ok(s)
        }
        fn i16(&mut self, what: &str) -> std::result::Result<i16, AssignmentError> {
            let b = self.take(2, what)?;
            Ok(i16::from_be_bytes([b[0], b[1]]))
        }
        fn i32(&mut self, what: &str) -> std::result::Result<i32, AssignmentError> {
            let b = self.take(4, what)?;
            Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        }
        fn count(&mut self, what: &str) -> std::result::Result<usize, AssignmentError> {
            let n = self.i32(what)?;
            // -1 is a null array; each element takes at least 2 bytes, which bounds the count.
            let n = usize::try_from(n.max(0)).unwrap_or(0);
            if n > self.0.len().saturating_sub(self.1) / 2 + 1 {
                return Err(AssignmentError(format!(
                    "{what} says {n} elements in {} bytes",
                    self.0.len() - self.1
                )));
            }
            Ok(n)
        }
    }
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let mut r = Reader(bytes, 0);
    let version = r.i16("version")?;
    if version < 0 {
        return Err(AssignmentError(format!("version {version}")));
    }
    let topics = r.count("topic count")?;
    let mut out = Vec::with_capacity(topics);
    for _ in 0..topics {
        let len = r.i16("topic name length")?;
        let len = usize::try_from(len)
            .map_err(|_| AssignmentError(format!("topic name length {len}")))?;
        let name = std::str::from_utf8(r.take(len, "topic name")?)
            .map_err(|e| AssignmentError(format!("topic name is not UTF-8: {e}")))?
            .to_owned();
        let n = r.count("partition count")?;
        let mut partitions = Vec::with_capacity(n);
        for _ in 0..n {
            partitions.push(r.i32("partition")?);
        }
        out.push((name, partitions));
    }
    Ok(out)
}

/// How long a group answer is used before it is asked again (a rebalance seen by this instance
/// refreshes it at once).
const FRESH_FOR: Duration = Duration::from_secs(1);
/// How long an answer from a group that is not stable (rebalancing: no assignments) is used.
const UNSTABLE_FOR: Duration = Duration::from_millis(200);
/// How long one request to the cluster may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// One answer of the group coordinator and the cluster's metadata.
#[derive(Debug)]
struct Snapshot {
    at: Instant,
    /// `AppStatus::rebalances` when it was taken.
    rebalances: u64,
    stable: bool,
    /// Who holds each assigned `(topic, partition)`: the advertised address, if any.
    owners: HashMap<(String, i32), Option<HostInfo>>,
}

/// The group's assignment as this instance sees it, cached briefly, shared by every query
/// handle of one [`App`](super::App). Cheap to clone.
#[derive(Clone)]
pub(crate) struct GroupMetadata {
    inner: Arc<Inner>,
}

struct Inner {
    group: String,
    client_config: ClientConfig,
    topology: Topology,
    status: Arc<Mutex<AppStatus>>,
    local_server: Option<HostInfo>,
    client: Mutex<Option<Arc<BaseConsumer<super::local::Quiet>>>>,
    snapshot: Mutex<Option<Arc<Snapshot>>>,
    /// Held while the group is asked, so that callers arriving meanwhile wait for that answer
    /// instead of asking too.
    refresh: Mutex<()>,
    partition_counts: Mutex<HashMap<String, i32>>,
}

impl fmt::Debug for GroupMetadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupMetadata")
            .field("group", &self.inner.group)
            .field("local_server", &self.inner.local_server)
            .finish_non_exhaustive()
    }
}

impl GroupMetadata {
    /// The metadata of `config`'s group on `bootstrap`, for `topology`; `status` says which
    /// partitions this instance holds.
    pub(crate) fn new(
        config: &super::AppConfig,
        bootstrap: &str,
        topology: &Topology,
        status: Arc<Mutex<AppStatus>>,
    ) -> Result<GroupMetadata> {
        let local_server = config
            .get_application_server()
            .map(HostInfo::parse)
            .transpose()?;
        Ok(GroupMetadata {
            inner: Arc::new(Inner {
                group: config.application_id().to_owned(),
                client_config: config.admin_config(bootstrap),
                topology: topology.clone(),
                status,
                local_server,
                client: Mutex::new(None),
                snapshot: Mutex::new(None),
                refresh: Mutex::new(()),
                partition_counts: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// This instance's advertised address.
    #[cfg_attr(not(feature = "http"), allow(dead_code))] // the HTTP server's
    pub(crate) fn local_server(&self) -> Option<&HostInfo> {
        self.inner.local_server.as_ref()
    }

    /// The input topic whose partitions place the keys of `store` (the first source of the
    /// sub-topology that holds it; its sources are co-partitioned), `None` for a store the
    /// topology does not have.
    pub(crate) fn store_topic(&self, store: &str) -> Option<Arc<str>> {
        self.inner
            .topology
            .subtopologies()
            .iter()
            .find(|s| s.stores.iter().any(|n| &**n == store))
            .and_then(|s| s.source_topics.first().cloned())
    }

    /// Where the key of `store` whose serialized bytes are `key` lives. The partition count of
    /// the store's topic is asked of the cluster once; the group's assignment at most every
    /// second (and after each rebalance this instance sees). When the group cannot be described
    /// (the embedded mock cluster does not implement it) a partition this instance holds is still
    /// answered, as local.
    pub(crate) fn for_serialized_key(
        &self,
        store: &str,
        key: Option<&[u8]>,
    ) -> Result<KeyMetadata> {
        let topic = self.store_topic(store).ok_or_else(|| {
            Error::Config(format!(
                "the topology has no store `{store}` fed by a source topic"
            ))
        })?;
        let key = key.ok_or_else(|| {
            Error::Config(format!(
                "the key serializes to null: a null key has no partition in store `{store}`"
            ))
        })?;
        let partitions = self.partition_count(&topic)?;
        let partition = crate::partitioner::partition_for_key(key, partitions);
        let tp = (topic.to_string(), partition);
        let local = {
            let s = lock(&self.inner.status);
            s.assigned.contains(&tp) || s.restoring.contains(&tp)
        };
        let snapshot = match self.snapshot() {
            Ok(s) => s,
            Err(_) if local => {
                return Ok(KeyMetadata {
                    partition,
                    active: self.inner.local_server.clone(),
                    local,
                });
            }
            Err(e) => return Err(e),
        };
        let active = match snapshot.owners.get(&tp) {
            Some(owner) => owner.clone(),
            None if local => self.inner.local_server.clone(),
            None => None,
        };
        Ok(KeyMetadata {
            partition,
            active,
            local,
        })
    }

    /// The advertised address of the instance that holds `partition` of `store`'s topic, when
    /// the group says (for `QueryError::NotHere`).
    pub(crate) fn owner_of(&self, store: &str, partition: i32) -> Option<HostInfo> {
        let topic = self.store_topic(store)?;
        let snapshot = self.snapshot().ok()?;
        snapshot
            .owners
            .get(&(topic.to_string(), partition))
            .cloned()
            .flatten()
    }

    fn client(&self) -> Result<Arc<BaseConsumer<super::local::Quiet>>> {
        let mut client = lock(&self.inner.client);
        if let Some(c) = &*client {
            return Ok(c.clone());
        }
        let c: BaseConsumer<super::local::Quiet> = self
            .inner
            .client_config
            .create_with_context(super::local::Quiet)
            .map_err(super::config::redact_client_error)
            .map_err(|e| Error::kafka("creating the client that reads the group's metadata", e))?;
        let c = Arc::new(c);
        *client = Some(c.clone());
        Ok(c)
    }

    fn partition_count(&self, topic: &str) -> Result<i32> {
        if let Some(n) = lock(&self.inner.partition_counts).get(topic) {
            return Ok(*n);
        }
        let md = self
            .client()?
            .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
            .map_err(|e| Error::kafka(format!("reading the metadata of topic `{topic}`"), e))?;
        let n = md
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .map(|t| t.partitions().len())
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                Error::Runtime(format!("topic `{topic}` is not in the cluster's metadata"))
            })?;
        let n = i32::try_from(n).unwrap_or(i32::MAX);
        lock(&self.inner.partition_counts).insert(topic.to_owned(), n);
        Ok(n)
    }

    /// The cached answer, if it is still fresh.
    fn fresh_snapshot(&self) -> Option<Arc<Snapshot>> {
        let rebalances = lock(&self.inner.status).rebalances;
        let cached = lock(&self.inner.snapshot);
        let s = cached.as_ref()?;
        let ttl = if s.stable { FRESH_FOR } else { UNSTABLE_FOR };
        (s.rebalances == rebalances && s.at.elapsed() < ttl).then(|| s.clone())
    }

    /// The group's assignment: the cached answer while fresh, else a new one.
    fn snapshot(&self) -> Result<Arc<Snapshot>> {
        if let Some(s) = self.fresh_snapshot() {
            return Ok(s);
        }
        let _refreshing = lock(&self.inner.refresh);
        if let Some(s) = self.fresh_snapshot() {
            return Ok(s);
        }
        let rebalances = lock(&self.inner.status).rebalances;
        let client = self.client()?;
        let group = &self.inner.group;
        let list = client
            .fetch_group_list(Some(group), REQUEST_TIMEOUT)
            .map_err(|e| Error::kafka(format!("describing consumer group `{group}`"), e))?;
        let mut owners = HashMap::new();
        let mut stable = false;
        for g in list.groups().iter().filter(|g| g.name() == group) {
            stable = g.state() == "Stable";
            for m in g.members() {
                let Some(bytes) = m.assignment() else {
                    continue;
                };
                let assignment = decode_assignment(bytes).map_err(|e| {
                    Error::Runtime(format!(
                        "consumer group `{group}`, member `{}`: {e}",
                        m.client_id()
                    ))
                })?;
                let server = advertised(m.client_id());
                for (topic, partitions) in assignment {
                    for p in partitions {
                        owners.insert((topic.clone(), p), server.clone());
                    }
                }
            }
        }
        let s = Arc::new(Snapshot {
            at: Instant::now(),
            rebalances,
            stable,
            owners,
        });
        *lock(&self.inner.snapshot) = Some(s.clone());
        Ok(s)
    }
}

/// Serializes `key` as `store`'s input partitioner sees it: with `K`'s default serde, after
/// checking that `K` is the store's key type.
pub(crate) fn serialize_key<K: crate::serde::DefaultSerde>(
    topology: &Topology,
    store: &str,
    key: &K,
) -> Result<Option<Vec<u8>>> {
    use crate::serde::Serde as _;
    if let Some(spec) = topology.stores().iter().find(|s| s.name() == store) {
        check_key_type::<K>(spec)?;
    }
    K::Serde::default()
        .serialize(key)
        .map_err(|source| Error::StoreSerialize {
            store: store.to_owned(),
            part: crate::error::Part::Key,
            source,
        })
}

/// Whether `K` is the key type of `spec`'s store.
fn check_key_type<K>(spec: &crate::store::StoreSpec) -> Result<()> {
    let (key_type, _) = spec.type_names();
    if key_type != std::any::type_name::<K>() {
        return Err(Error::Config(format!(
            "store `{}` has keys of type `{key_type}`, not `{}`",
            spec.name(),
            std::any::type_name::<K>()
        )));
    }
    Ok(())
}

impl crate::query::Queries {
    /// Where `key` of `store` lives: its partition, the advertised address of the instance
    /// holding it now, and whether that is this one (see [`KeyMetadata`]; Kafka Streams'
    /// `queryMetadataForKey`). The key is serialized with `K`'s default serde (that of the
    /// store's input, whose partitioner placed it). The group's assignment is read from the
    /// group coordinator (`DescribeGroups`) at most once a second, and again after each
    /// rebalance this instance sees. A blocking call (a few seconds at most when the cluster is
    /// slow): from async code, call it in `tokio::task::spawn_blocking`.
    ///
    /// A global table's store is on every instance: the answer is this instance (`local`, its
    /// own address as `active`) with no partition ([`GLOBAL_PARTITION`](
    /// crate::query::GLOBAL_PARTITION)), as Kafka Streams answers for global stores; the
    /// cluster is not asked.
    ///
    /// Errors: [`QueryError::UnknownStore`](crate::query::QueryError::UnknownStore) for a store
    /// the topology does not have; [`QueryError::Failed`](crate::query::QueryError::Failed) for
    /// a key type other than the store's, a key that serializes to null, or a cluster that
    /// cannot be asked (unless this instance holds the key's partition itself).
    ///
    /// ```no_run
    /// # fn demo(app: &kstreams::kafka::App) -> Result<(), kstreams::query::QueryError> {
    /// let m = app.queries().metadata_for_key("word-counts", &"kafka".to_owned())?;
    /// match (m.local, &m.active) {
    ///     (true, _) => println!("here, partition {}", m.partition),
    ///     (false, Some(host)) => println!("ask http://{host}"),
    ///     (false, None) => println!("nobody advertises partition {} now", m.partition),
    /// }
    /// # Ok(()) }
    /// ```
    pub fn metadata_for_key<K: crate::serde::DefaultSerde>(
        &self,
        store: &str,
        key: &K,
    ) -> std::result::Result<KeyMetadata, crate::query::QueryError> {
        let metadata = self.metadata().ok_or_else(|| {
            Error::Internal("these queries belong to no app (no group metadata)".into())
        })?;
        let topology = &metadata.inner.topology;
        if let Some(spec) = topology.global_stores().iter().find(|s| s.name() == store) {
            // Every instance has all of a global store (Kafka Streams: this host, no partition).
            check_key_type::<K>(spec)?;
            return Ok(KeyMetadata {
                partition: crate::query::GLOBAL_PARTITION,
                active: metadata.inner.local_server.clone(),
                local: true,
            });
        }
        if metadata.store_topic(store).is_none() {
            return Err(crate::query::QueryError::UnknownStore(store.to_owned()));
        }
        let bytes = serialize_key(topology, store, key)?;
        Ok(metadata.for_serialized_key(store, bytes.as_deref())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encodes an assignment as the Java client (and librdkafka) does.
    fn encode(version: i16, topics: &[(&str, &[i32])], user_data: Option<&[u8]>) -> Vec<u8> {
        let mut b = version.to_be_bytes().to_vec();
        b.extend((topics.len() as i32).to_be_bytes());
        for (t, ps) in topics {
            b.extend((t.len() as i16).to_be_bytes());
            b.extend(t.as_bytes());
            b.extend((ps.len() as i32).to_be_bytes());
            for p in *ps {
                b.extend(p.to_be_bytes());
            }
        }
        match user_data {
            Some(u) => {
                b.extend((u.len() as i32).to_be_bytes());
                b.extend(u);
            }
            None => b.extend((-1i32).to_be_bytes()),
        }
        b
    }

    #[test]
    fn decodes_every_version_of_the_classic_assignment() {
        for version in [0i16, 1, 2, 3] {
            let b = encode(version, &[("words", &[0, 2]), ("lines", &[1])], Some(b"ud"));
            assert_eq!(
                decode_assignment(&b),
                Ok(vec![
                    ("words".to_owned(), vec![0, 2]),
                    ("lines".to_owned(), vec![1])
                ]),
                "version {version}"
            );
        }
        let b = encode(0, &[], None);
        assert_eq!(decode_assignment(&b), Ok(vec![]));
        assert_eq!(decode_assignment(&[]), Ok(vec![]));
    }

    #[test]
    fn refuses_truncated_or_garbled_bytes_with_a_reason() {
        let b = encode(1, &[("words", &[0, 2])], None);
        for cut in 1..b.len() - 4 {
            let e = decode_assignment(&b[..cut]).expect_err("truncated");
            let e = e.to_string();
            assert!(
                e.contains("end inside") || e.contains("elements in"),
                "{cut}: {e}"
            );
        }
        let mut huge = encode(0, &[], None);
        huge[2..6].copy_from_slice(&i32::MAX.to_be_bytes());
        let e = decode_assignment(&huge).expect_err("huge count");
        assert!(e.to_string().contains("topic count"), "{e}");
        assert!(decode_assignment(&[0xff, 0xff, 0, 0, 0, 0]).is_err());
        let bad_utf8 = encode(0, &[("\u{e9}", &[0])], None);
        let mut bad = bad_utf8.clone();
        bad[8] = 0xff;
        assert!(
            decode_assignment(&bad)
                .expect_err("bad utf-8")
                .to_string()
                .contains("UTF-8")
        );
    }

    #[test]
    fn an_address_travels_in_the_client_id_and_back() {
        let h = HostInfo::new("10.0.0.5", 8080);
        let id = advertise("wordcount-kstreams", &h);
        assert_eq!(id, "wordcount-kstreams;q=10.0.0.5:8080");
        assert_eq!(advertised(&id), Some(h));
        let v6 = HostInfo::parse("[::1]:9000").expect("v6");
        assert_eq!(advertised(&advertise("a;b", &v6)), Some(v6));
        assert_eq!(advertised("wordcount-kstreams"), None);
        assert_eq!(advertised("x;q=nonsense"), None);
    }

    /// `App::new` refuses an advertised address that is not `host:port`, before it starts
    /// anything.
    #[test]
    fn app_new_checks_the_application_server() {
        let mut t = Topology::builder();
        let s = t.source::<String, String>("in");
        t.sink("out", &s);
        let topology = t.build().expect("topology");
        let config = super::super::AppConfig::new("app").application_server("10.0.0.5");
        let e = super::super::App::new(topology, config).expect_err("no port");
        assert!(
            e.to_string()
                .contains("`10.0.0.5` is not `host:port` (no port)"),
            "{e}"
        );
    }

    #[test]
    fn host_and_port_are_checked_with_a_reason() {
        for (bad, why) in [
            ("localhost", "no port"),
            (":8080", "no host"),
            ("host:0", "port 0"),
            ("host:70000", "1 to 65535"),
            ("host:http", "1 to 65535"),
            ("::1:8080", "brackets"),
            ("[::1:8080", "brackets"),
            ("a b:1", "space"),
            ("a;q=b:1", "`;`"),
            ("http://a:1", "`/`"),
        ] {
            let e = HostInfo::parse(bad).expect_err(bad).to_string();
            assert!(e.contains(why) && e.contains(bad), "{bad}: {e}");
        }
        assert_eq!(
            HostInfo::parse("[fe80::1]:80").expect("v6"),
            HostInfo::new("[fe80::1]", 80)
        );
    }
}
