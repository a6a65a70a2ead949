//! An HTTP server for interactive queries (feature `http`): a running [`App`]'s stores as JSON,
//! and its metrics for Prometheus, on one listener (axum, on the tokio runtime the caller runs
//! it on).
//!
//! Owns: the routes, how a key is read from a path and a store's answer becomes a status and a
//! JSON body, the redirect to the instance holding a key. May not touch: the stores themselves
//! (it reads through [`Queries`]), the metrics' recording
//! (`kafka/observe.rs`).
//!
//! | route | answer |
//! |---|---|
//! | `GET /stores/{store}/keys/{key}` | `200 {"key": .., "value": ..}`; `404 {"error": ..}` when the key is absent or the store unknown; `503 {"error": .., "status": "restoring", "partition": p, "lag": n}` while the key's partition restores here (with `Retry-After: 1`); `307` to the instance that holds the key |
//! | `GET /stores/{store}/range?from=..&to=..` | `200 [{"key": .., "value": ..}, ..]`: the keys from `from` to `to` (both included, either may be left out) that this instance holds, in key order; `503` while one of its tasks of the store restores |
//! | `GET /metrics` | the process's metrics in Prometheus' text format (the recorder of [`AppConfig::prometheus_endpoint`](crate::kafka::AppConfig::prometheus_endpoint) when an app set one, else one installed for this server) |
//! | anything else | `404 {"error": ..}` naming the routes |
//!
//! Keys are read from the path through serde: the path segment (percent-decoded) is tried
//! first as a JSON string, then as JSON, so a `String` key is the segment as it is and a `u64`
//! key is `42`; keys and values are rendered with [`serde::Serialize`]. Stores are registered
//! typed ([`Server::store`], [`Server::store_by_name`]); a store of the topology that is not
//! registered (its types may not implement serde's traits), or whose key or value cannot be
//! rendered as JSON, answers `415 {"error": ..}` saying so.
//!
//! **Another instance holds the key.** The answer is a `307 Temporary Redirect` to the same path
//! on the holder's [`application_server`](crate::kafka::AppConfig::application_server) (found
//! with the group's assignment, [`KeyMetadata`](crate::kafka::KeyMetadata)), not a proxied
//! answer: the value travels once, from the instance that has it, this instance keeps no
//! connection to the others and holds no request open while another answers, and the client
//! learns where the key lives (it may ask there next time). `307` (not `302`) keeps the method.
//! When the holder advertises no address, or the group is rebalancing and no instance holds the
//! partition yet, the answer is `503 {"status": "not_here", "partition": p}` with
//! `Retry-After: 1`. A range covers only this instance's keys: ask every instance for all keys.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::ops::Bound;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::kafka::GroupMetadata;
use crate::kafka::{App, HostInfo};
use crate::query::{Queries, QueryError, StoreQuery};
use crate::store::StoreHandle;

/// Why a store gave no value for a key or a range (what the query handles answer besides a
/// value), as the server turns it into a status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Miss {
    /// The key's partition (a partition of the store, for a range) is restoring here.
    Restoring { partition: i32, lag: u64 },
    /// Another instance holds the key's partition; `owner` when known.
    NotHere {
        partition: i32,
        owner: Option<HostInfo>,
    },
    /// No such store.
    UnknownStore,
    /// Anything else.
    Failed(String),
}

/// A store as the server reads it: typed lookups (the query handles of
/// [`Queries`], or a stand-in in tests).
pub(crate) trait Lookup<K, V>: Send + Sync + 'static {
    /// The key's value here.
    fn get(&self, key: &K) -> std::result::Result<Option<V>, Miss>;
    /// This instance's entries from `from` to `to`, in key order.
    fn range(&self, from: Bound<K>, to: Bound<K>) -> std::result::Result<Vec<(K, V)>, Miss>;
    /// The advertised address of the instance that holds `key`, when the answer said "not
    /// here" without one (asked again of the group).
    fn owner(&self, key: &K) -> Option<HostInfo>;
}

/// A response: status, an optional `Location`, a JSON body.
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    location: Option<String>,
    retry: bool,
    body: Value,
}

impl Reply {
    fn json(status: StatusCode, body: Value) -> Reply {
        Reply {
            status,
            location: None,
            retry: false,
            body,
        }
    }

    fn error(status: StatusCode, message: String, extra: Value) -> Reply {
        let mut body = json!({ "error": message });
        if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
            b.extend(e);
        }
        Reply::json(status, body)
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(self.body)).into_response();
        if let Some(l) = self.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
            r.headers_mut().insert(header::LOCATION, l);
        }
        if self.retry {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

/// One registered store, type-erased.
trait Endpoint: Send + Sync {
    fn get(&self, raw_key: &str) -> Reply;
    fn range(&self, from: Option<&str>, to: Option<&str>) -> Reply;
}

/// A registered store of `K` to `V`.
struct Typed<K, V, L> {
    store: String,
    lookup: L,
    local: Option<HostInfo>,
    _types: std::marker::PhantomData<fn() -> (K, V)>,
}

/// Reads a key from its path segment: as a JSON string first (a string key as it is), then as
/// JSON (`42`, `true`, `[1, "a"]`).
fn parse_key<K: DeserializeOwned>(raw: &str) -> std::result::Result<K, String> {
    match K::deserialize(Value::String(raw.to_owned())) {
        Ok(k) => Ok(k),
        Err(as_string) => serde_json::from_str::<K>(raw).map_err(|as_json| {
            format!("neither as a string ({as_string}) nor as JSON ({as_json})")
        }),
    }
}

/// Percent-encodes a path segment (everything but RFC 3986's unreserved characters).
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl<K, V, L> Typed<K, V, L>
where
    K: Serialize + DeserializeOwned + Send + Sync + 'static,
    V: Serialize + Send + Sync + 'static,
    L: Lookup<K, V>,
{
    fn key(&self, raw: &str) -> std::result::Result<K, Reply> {
        parse_key(raw).map_err(|why| {
            Reply::error(
                StatusCode::BAD_REQUEST,
                format!(
                    "`{raw}` is not a key of store `{}` (`{}`): {why}",
                    self.store,
                    std::any::type_name::<K>()
                ),
                json!({ "store": self.store }),
            )
        })
    }

    fn render<T: Serialize>(&self, what: &str, t: &T) -> std::result::Result<Value, Reply> {
        serde_json::to_value(t).map_err(|e| {
            Reply::error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "a {what} of store `{}` cannot be rendered as JSON: {e}",
                    self.store
                ),
                json!({ "store": self.store }),
            )
        })
    }

    fn entry(&self, k: &K, v: &V) -> std::result::Result<Value, Reply> {
        Ok(json!({ "key": self.render("key", k)?, "value": self.render("value", v)? }))
    }

    fn miss(&self, miss: Miss, key: Option<(&K, &str)>) -> Reply {
        let store = &self.store;
        match miss {
            Miss::Restoring { partition, lag } => Reply {
                retry: true,
                ..Reply::error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    if partition == crate::query::GLOBAL_PARTITION {
                        format!(
                            "store `{store}` (a global table's) is restoring here ({lag} \
                             records of its topic to go)"
                        )
                    } else {
                        format!(
                            "store `{store}` is restoring partition {partition} here ({lag} \
                             changelog records to go)"
                        )
                    },
                    json!({ "store": store, "status": "restoring", "partition": partition,
                            "lag": lag }),
                )
            },
            Miss::NotHere { partition, owner } => {
                let owner = owner.or_else(|| key.and_then(|(k, _)| self.lookup.owner(k)));
                match (owner, key) {
                    (Some(owner), Some((_, raw))) if Some(&owner) != self.local.as_ref() => {
                        let location = format!(
                            "http://{owner}/stores/{}/keys/{}",
                            encode_segment(store),
                            encode_segment(raw)
                        );
                        Reply {
                            location: Some(location.clone()),
                            ..Reply::error(
                                StatusCode::TEMPORARY_REDIRECT,
                                format!(
                                    "partition {partition} of store `{store}` is held by \
                                     {owner}"
                                ),
                                json!({ "store": store, "partition": partition,
                                        "location": location }),
                            )
                        }
                    }
                    _ => Reply {
                        retry: true,
                        ..Reply::error(
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!(
                                "partition {partition} of store `{store}` is not here, and \
                                 no other instance advertises it (rebalancing?)"
                            ),
                            json!({ "store": store, "status": "not_here",
                                    "partition": partition }),
                        )
                    },
                }
            }
            Miss::UnknownStore => Reply::error(
                StatusCode::NOT_FOUND,
                format!("no store `{store}` in this app"),
                json!({ "store": store }),
            ),
            Miss::Failed(why) => Reply::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("store `{store}`: {why}"),
                json!({ "store": store }),
            ),
        }
    }
}

impl<K, V, L> Endpoint for Typed<K, V, L>
where
    K: Serialize + DeserializeOwned + Send + Sync + 'static,
    V: Serialize + Send + Sync + 'static,
    L: Lookup<K, V>,
{
    fn get(&self, raw: &str) -> Reply {
        let key = match self.key(raw) {
            Ok(k) => k,
            Err(r) => return r,
        };
        match self.lookup.get(&key) {
            Ok(Some(v)) => match self.entry(&key, &v) {
                Ok(body) => Reply::json(StatusCode::OK, body),
                Err(r) => r,
            },
            Ok(None) => Reply::error(
                StatusCode::NOT_FOUND,
                format!("no key `{raw}` in store `{}`", self.store),
                json!({ "store": self.store, "key": raw }),
            ),
            Err(miss) => self.miss(miss, Some((&key, raw))),
        }
    }

    fn range(&self, from: Option<&str>, to: Option<&str>) -> Reply {
        let bound = |raw: Option<&str>| match raw {
            None => Ok(Bound::Unbounded),
            Some(raw) => self.key(raw).map(Bound::Included),
        };
        let (from, to) = match (bound(from), bound(to)) {
            (Ok(f), Ok(t)) => (f, t),
            (Err(r), _) | (_, Err(r)) => return r,
        };
        match self.lookup.range(from, to) {
            Ok(entries) => {
                let mut out = Vec::with_capacity(entries.len());
                for (k, v) in &entries {
                    match self.entry(k, v) {
                        Ok(e) => out.push(e),
                        Err(r) => return r,
                    }
                }
                Reply::json(StatusCode::OK, Value::Array(out))
            }
            Err(miss) => self.miss(miss, None),
        }
    }
}

/// The routes' shared state.
struct Routes {
    stores: BTreeMap<String, Arc<dyn Endpoint>>,
    /// Every store of the topology with its `(key, value)` type names (for the 415 answer).
    known: BTreeMap<String, (&'static str, &'static str)>,
    metrics: std::result::Result<metrics_exporter_prometheus::PrometheusHandle, String>,
}

/// The HTTP server of one [`App`]'s stores; see the [module docs](self) for
/// its routes and answers.
///
/// ```no_run
/// use kstreams::http::Server;
/// use kstreams::kafka::{App, AppConfig};
/// # async fn demo(topology: kstreams::Topology) -> kstreams::Result<()> {
/// let app = std::sync::Arc::new(App::new(
///     topology,
///     AppConfig::new("wordcount").application_server("10.0.0.5:8080"),
/// )?);
/// let server = Server::new(&app).store_by_name::<String, u64>("word-counts")?;
/// let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await.map_err(|e| {
///     kstreams::Error::Io { context: "binding 0.0.0.0:8080".into(), source: e }
/// })?;
/// tokio::spawn(server.serve(listener, std::future::pending()));
/// app.run().await
/// # }
/// ```
pub struct Server {
    routes: Routes,
    local: Option<HostInfo>,
    app: Option<(Queries, GroupMetadata)>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("stores", &self.routes.stores.keys().collect::<Vec<_>>())
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A server with no store registered yet, for an app whose stores are `known` and whose
    /// advertised address is `local`.
    fn with_known(
        known: BTreeMap<String, (&'static str, &'static str)>,
        local: Option<HostInfo>,
    ) -> Server {
        Server {
            routes: Routes {
                stores: BTreeMap::new(),
                known,
                metrics: crate::kafka::prometheus_handle().map_err(|e| e.to_string()),
            },
            local,
            app: None,
        }
    }

    /// Registers store `name` of `K` to `V` read through `lookup`.
    fn register<K, V, L>(mut self, name: &str, lookup: L) -> Result<Server>
    where
        K: Serialize + DeserializeOwned + Send + Sync + 'static,
        V: Serialize + Send + Sync + 'static,
        L: Lookup<K, V>,
    {
        if let Some((k, v)) = self.routes.known.get(name)
            && (*k != std::any::type_name::<K>() || *v != std::any::type_name::<V>())
        {
            return Err(Error::Config(format!(
                "store `{name}` holds `{k}` -> `{v}`, not `{}` -> `{}`",
                std::any::type_name::<K>(),
                std::any::type_name::<V>()
            )));
        }
        let endpoint = Typed {
            store: name.to_owned(),
            lookup,
            local: self.local.clone(),
            _types: std::marker::PhantomData,
        };
        self.routes
            .stores
            .insert(name.to_owned(), Arc::new(endpoint));
        Ok(self)
    }

    /// The routes, to serve with axum (or to nest in a router of your own).
    pub fn router(self) -> Router {
        let state = Arc::new(self.routes);
        Router::new()
            .route("/stores/{store}/keys/{key}", get(get_key))
            .route("/stores/{store}/range", get(get_range))
            .route("/metrics", get(metrics))
            .fallback(no_route)
            .with_state(state)
    }

    /// Serves on `listener` until `shutdown` completes (then lets requests in flight finish).
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|source| Error::Io {
                context: "serving HTTP".into(),
                source,
            })
    }
}

/// The query handles of a running app, as the server reads a store.
struct Local<K, V> {
    query: StoreQuery<K, V>,
    metadata: GroupMetadata,
}

fn miss(e: QueryError) -> Miss {
    match e {
        QueryError::Restoring { partition, lag, .. } => Miss::Restoring { partition, lag },
        QueryError::NotHere {
            partition, owner, ..
        } => Miss::NotHere { partition, owner },
        QueryError::UnknownStore(_) => Miss::UnknownStore,
        other => Miss::Failed(other.to_string()),
    }
}

impl<K: Send + Sync + 'static, V: Send + Sync + 'static> Lookup<K, V> for Local<K, V> {
    fn get(&self, key: &K) -> std::result::Result<Option<V>, Miss> {
        self.query.get(key).map_err(miss)
    }
    fn range(&self, from: Bound<K>, to: Bound<K>) -> std::result::Result<Vec<(K, V)>, Miss> {
        self.query.range(from, to).map_err(miss)
    }
    fn owner(&self, key: &K) -> Option<HostInfo> {
        let partition = self.query.partition_of(key).ok()?;
        self.metadata.owner_of(self.query.name(), partition)
    }
}

impl Server {
    /// A server of `app`'s stores (none registered yet: see [`store`](Self::store)). Installs
    /// the process's metrics recorder for `/metrics` unless an app's Prometheus endpoint did.
    pub fn new(app: &App) -> Server {
        let topology = app.topology();
        let known = topology
            .stores()
            .iter()
            .chain(&topology.global_stores())
            .map(|s| (s.name().to_owned(), s.type_names()))
            .collect();
        let queries = app.queries();
        let metadata = queries.metadata().cloned();
        let local = metadata.as_ref().and_then(|m| m.local_server().cloned());
        let mut server = Server::with_known(known, local);
        server.app = metadata.map(|m| (queries, m));
        server
    }

    /// Serves the key-value store of handle type `S` (declared with `#[kstreams::store]`).
    pub fn store<S>(self) -> Result<Server>
    where
        S: StoreHandle<'static>,
        S::Key: Serialize + DeserializeOwned + Send + Sync,
        S::Value: Serialize + Send + Sync,
    {
        self.store_by_name::<S::Key, S::Value>(S::NAME)
    }

    /// Serves the key-value store `name` of keys `K` and values `V` (checked against its
    /// declaration).
    pub fn store_by_name<K, V>(self, name: &str) -> Result<Server>
    where
        K: Serialize + DeserializeOwned + Send + Sync + 'static,
        V: Serialize + Send + Sync + 'static,
    {
        let Some((queries, metadata)) = self.app.clone() else {
            return Err(Error::Config("this server has no app".into()));
        };
        let query = queries
            .store_by_name::<K, V>(name)
            .map_err(|e| Error::Config(e.to_string()))?;
        self.register(name, Local { query, metadata })
    }
}

/// The endpoint of `store`, or the answer for a store that has none.
fn endpoint(routes: &Routes, store: &str) -> std::result::Result<Arc<dyn Endpoint>, Reply> {
    if let Some(e) = routes.stores.get(store) {
        return Ok(e.clone());
    }
    Err(match routes.known.get(store) {
        Some((k, v)) => Reply::error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "store `{store}` (`{k}` -> `{v}`) is not served as JSON: register it with \
                 `Server::store` or `Server::store_by_name` (its key type must implement \
                 serde's `Deserialize` and `Serialize`, its value type `Serialize`)"
            ),
            json!({ "store": store }),
        ),
        None => Reply::error(
            StatusCode::NOT_FOUND,
            format!(
                "no store `{store}`; served: {}",
                routes.stores.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
            json!({ "store": store }),
        ),
    })
}

/// Runs a store read off the async workers (reads are LMDB read transactions; finding another
/// instance may ask the cluster).
async fn blocking(f: impl FnOnce() -> Reply + Send + 'static) -> Reply {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Reply::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the query failed: {e}"),
            json!({}),
        )
    })
}

async fn get_key(
    State(routes): State<Arc<Routes>>,
    Path((store, key)): Path<(String, String)>,
) -> Reply {
    match endpoint(&routes, &store) {
        Ok(e) => blocking(move || e.get(&key)).await,
        Err(r) => r,
    }
}

#[derive(Debug, serde::Deserialize)]
struct RangeParams {
    from: Option<String>,
    to: Option<String>,
}

async fn get_range(
    State(routes): State<Arc<Routes>>,
    Path(store): Path<String>,
    Query(params): Query<RangeParams>,
) -> Reply {
    match endpoint(&routes, &store) {
        Ok(e) => blocking(move || e.range(params.from.as_deref(), params.to.as_deref())).await,
        Err(r) => r,
    }
}

async fn no_route(uri: axum::http::Uri) -> Reply {
    Reply::error(
        StatusCode::NOT_FOUND,
        format!(
            "no route `{}`: GET /stores/{{store}}/keys/{{key}}, /stores/{{store}}/range or \
             /metrics",
            uri.path()
        ),
        json!({}),
    )
}

async fn metrics(State(routes): State<Arc<Routes>>) -> Response {
    match &routes.metrics {
        Ok(handle) => {
            handle.run_upkeep();
            (
                [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                handle.render(),
            )
                .into_response()
        }
        Err(why) => Reply::error(
            StatusCode::NOT_FOUND,
            format!("no metrics here: {why}"),
            json!({}),
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A store in a map, answering what it is told to for some keys.
    #[derive(Default)]
    struct Fake {
        data: BTreeMap<String, u64>,
        misses: Mutex<BTreeMap<String, Miss>>,
        owner: Option<HostInfo>,
    }

    impl Lookup<String, u64> for Arc<Fake> {
        fn get(&self, key: &String) -> std::result::Result<Option<u64>, Miss> {
            if let Some(m) = crate::kafka::lock(&self.misses).get(key) {
                return Err(m.clone());
            }
            Ok(self.data.get(key).copied())
        }
        fn range(
            &self,
            from: Bound<String>,
            to: Bound<String>,
        ) -> std::result::Result<Vec<(String, u64)>, Miss> {
            if let Some(m) = crate::kafka::lock(&self.misses).get("") {
                return Err(m.clone());
            }
            Ok(self
                .data
                .range((from, to))
                .map(|(k, v)| (k.clone(), *v))
                .collect())
        }
        fn owner(&self, _: &String) -> Option<HostInfo> {
            self.owner.clone()
        }
    }

    impl Lookup<u64, Vec<u8>> for () {
        fn get(&self, key: &u64) -> std::result::Result<Option<Vec<u8>>, Miss> {
            Ok(Some(vec![*key as u8]))
        }
        fn range(
            &self,
            _: Bound<u64>,
            _: Bound<u64>,
        ) -> std::result::Result<Vec<(u64, Vec<u8>)>, Miss> {
            Ok(vec![])
        }
        fn owner(&self, _: &u64) -> Option<HostInfo> {
            None
        }
    }

    /// A map whose keys are not strings cannot be rendered as JSON.
    struct Unrenderable;
    impl Lookup<String, BTreeMap<Vec<u8>, u8>> for Unrenderable {
        fn get(&self, _: &String) -> std::result::Result<Option<BTreeMap<Vec<u8>, u8>>, Miss> {
            Ok(Some(BTreeMap::from([(vec![1], 1)])))
        }
        fn range(
            &self,
            _: Bound<String>,
            _: Bound<String>,
        ) -> std::result::Result<Vec<(String, BTreeMap<Vec<u8>, u8>)>, Miss> {
            Ok(vec![])
        }
        fn owner(&self, _: &String) -> Option<HostInfo> {
            None
        }
    }

    async fn serve(server: Server) -> (String, tokio::sync::oneshot::Sender<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server.serve(listener, async {
            let _ = stopped.await;
        }));
        (format!("http://{addr}"), stop)
    }

    async fn call(client: &reqwest::Client, url: &str) -> (u16, Option<String>, Value) {
        let r = client.get(url).send().await.expect("request");
        let status = r.status().as_u16();
        let location = r
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .map(str::to_owned);
        let body = r.json::<Value>().await.expect("JSON body");
        (status, location, body)
    }

    fn no_redirects() -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client")
    }

    fn server_with(fake: &Arc<Fake>) -> Server {
        let known = BTreeMap::from([
            (
                "counts".to_owned(),
                (
                    std::any::type_name::<String>(),
                    std::any::type_name::<u64>(),
                ),
            ),
            ("opaque".to_owned(), ("Opaque", "Opaque")),
        ]);
        Server::with_known(known, Some(HostInfo::new("127.0.0.1", 1)))
            .register::<String, u64, _>("counts", fake.clone())
            .expect("counts")
            .register::<u64, Vec<u8>, _>("bytes", ())
            .expect("bytes")
            .register::<String, BTreeMap<Vec<u8>, u8>, _>("maps", Unrenderable)
            .expect("maps")
    }

    #[tokio::test]
    async fn keys_values_absent_keys_and_unknown_stores_over_http() {
        let fake = Arc::new(Fake {
            data: BTreeMap::from([
                ("hello".to_owned(), 3),
                ("a/b c".to_owned(), 1),
                ("42".to_owned(), 42),
                ("zebra".to_owned(), 9),
            ]),
            ..Fake::default()
        });
        let (base, _stop) = serve(server_with(&fake)).await;
        let c = no_redirects();
        let (s, _, body) = call(&c, &format!("{base}/stores/counts/keys/hello")).await;
        assert_eq!((s, body), (200, json!({"key": "hello", "value": 3})));
        // A string key is the segment as it is, percent-decoded, even when it reads as JSON.
        let (s, _, body) = call(&c, &format!("{base}/stores/counts/keys/a%2Fb%20c")).await;
        assert_eq!((s, body), (200, json!({"key": "a/b c", "value": 1})));
        let (s, _, body) = call(&c, &format!("{base}/stores/counts/keys/42")).await;
        assert_eq!((s, body), (200, json!({"key": "42", "value": 42})));
        // A number key from its JSON form.
        let (s, _, body) = call(&c, &format!("{base}/stores/bytes/keys/7")).await;
        assert_eq!((s, body), (200, json!({"key": 7, "value": [7]})));
        let (s, _, body) = call(&c, &format!("{base}/stores/bytes/keys/seven")).await;
        assert_eq!(s, 400);
        assert!(
            body["error"]
                .as_str()
                .unwrap_or_default()
                .contains("`seven` is not a key of store `bytes` (`u64`)"),
            "{body}"
        );

        let (s, _, body) = call(&c, &format!("{base}/stores/counts/keys/nope")).await;
        assert_eq!(s, 404);
        assert_eq!(body["error"], "no key `nope` in store `counts`");
        let (s, _, body) = call(&c, &format!("{base}/stores/missing/keys/x")).await;
        assert_eq!(s, 404);
        assert!(
            body["error"]
                .as_str()
                .unwrap_or_default()
                .starts_with("no store `missing`"),
            "{body}"
        );
        let (s, _, body) = call(&c, &format!("{base}/stores/counts")).await;
        assert_eq!(s, 404);
        assert!(
            body["error"]
                .as_str()
                .unwrap_or_default()
                .starts_with("no route `/stores/counts`"),
            "{body}"
        );
        // Known to the topology but not served as JSON, or not renderable: 415.
        let (s, _, body) = call(&c, &format!("{base}/stores/opaque/keys/x")).await;
        assert_eq!(s, 415);
        assert!(
            body["error"]
                .as_str()
                .unwrap_or_default()
                .contains("`Opaque` -> `Opaque`"),
            "{body}"
        );
        let (s, _, body) = call(&c, &format!("{base}/stores/maps/keys/x")).await;
        assert_eq!(s, 415);
        assert!(
            body["error"]
                .as_str()
                .unwrap_or_default()
                .contains("cannot be rendered as JSON"),
            "{body}"
        );

        let (s, _, body) = call(&c, &format!("{base}/stores/counts/range?from=b&to=y")).await;
        assert_eq!(s, 200);
        assert_eq!(body, json!([{"key": "hello", "value": 3}]));
        let (s, _, body) = call(&c, &format!("{base}/stores/counts/range?to=b")).await;
        assert_eq!(s, 200);
        assert_eq!(
            body,
            json!([{"key": "42", "value": 42}, {"key": "a/b c", "value": 1}])
        );
        let (s, _, body) = call(&c, &format!("{base}/stores/counts/range")).await;
        assert_eq!((s, body.as_array().map(Vec::len)), (200, Some(4)));

        // The metrics on the same listener.
        metrics::counter!("kstreams_http_test_total").increment(1);
        let r = c
            .get(format!("{base}/metrics"))
            .send()
            .await
            .expect("metrics");
        assert_eq!(r.status().as_u16(), 200);
        let text = r.text().await.expect("text");
        assert!(text.contains("kstreams_http_test_total 1"), "{text}");
    }

    #[tokio::test]
    async fn restoring_is_503_and_another_holder_is_a_redirect() {
        let fake = Arc::new(Fake {
            owner: Some(HostInfo::new("10.1.2.3", 8080)),
            ..Fake::default()
        });
        let set = |k: &str, m: Miss| {
            crate::kafka::lock(&fake.misses).insert(k.to_owned(), m);
        };
        set(
            "r",
            Miss::Restoring {
                partition: 2,
                lag: 17,
            },
        );
        set(
            "",
            Miss::Restoring {
                partition: 1,
                lag: 5,
            },
        );
        set(
            "there",
            Miss::NotHere {
                partition: 3,
                owner: Some(HostInfo::new("10.9.9.9", 81)),
            },
        );
        set(
            "asked again",
            Miss::NotHere {
                partition: 0,
                owner: None,
            },
        );
        set(
            "me",
            Miss::NotHere {
                partition: 0,
                owner: Some(HostInfo::new("127.0.0.1", 1)),
            },
        );
        set(
            "global",
            Miss::Restoring {
                partition: crate::query::GLOBAL_PARTITION,
                lag: 9,
            },
        );
        set("boom", Miss::Failed("the disk is on fire".into()));
        let (base, _stop) = serve(server_with(&fake)).await;
        let c = no_redirects();

        let r = c
            .get(format!("{base}/stores/counts/keys/r"))
            .send()
            .await
            .expect("r");
        assert_eq!(r.status().as_u16(), 503);
        assert_eq!(
            r.headers().get("retry-after").map(|v| v.as_bytes()),
            Some(&b"1"[..])
        );
        let body: Value = r.json().await.expect("json");
        assert_eq!(
            (&body["status"], &body["partition"], &body["lag"]),
            (&json!("restoring"), &json!(2), &json!(17))
        );
        let (s, _, body) = call(&c, &format!("{base}/stores/counts/range")).await;
        assert_eq!(
            (s, &body["status"], &body["lag"]),
            (503, &json!("restoring"), &json!(5))
        );
        // A global table's store restoring at start-up: no partition, its topic's lag.
        let (s, _, body) = call(&c, &format!("{base}/stores/counts/keys/global")).await;
        assert_eq!(
            (s, &body["status"], &body["partition"], &body["lag"]),
            (503, &json!("restoring"), &json!(-1), &json!(9))
        );
        let message = body["error"].as_str().unwrap_or_default();
        assert!(
            message.contains("(a global table's) is restoring here (9 records of its topic"),
            "{message}"
        );

        let (s, location, body) = call(&c, &format!("{base}/stores/counts/keys/there")).await;
        assert_eq!(s, 307);
        assert_eq!(
            location.as_deref(),
            Some("http://10.9.9.9:81/stores/counts/keys/there")
        );
        assert_eq!(body["partition"], 3);
        // No owner in the answer: the group is asked; the segment is encoded again.
        let (s, location, _) = call(&c, &format!("{base}/stores/counts/keys/asked%20again")).await;
        assert_eq!(s, 307);
        assert_eq!(
            location.as_deref(),
            Some("http://10.1.2.3:8080/stores/counts/keys/asked%20again")
        );
        // Never a redirect to itself (a stale answer): 503, try again.
        let (s, location, body) = call(&c, &format!("{base}/stores/counts/keys/me")).await;
        assert_eq!(
            (s, location, &body["status"]),
            (503, None, &json!("not_here"))
        );
        let (s, _, body) = call(&c, &format!("{base}/stores/counts/keys/boom")).await;
        assert_eq!(s, 500);
        assert!(
            body["error"]
                .as_str()
                .unwrap_or_default()
                .contains("the disk is on fire"),
            "{body}"
        );
    }

    #[test]
    fn a_store_registered_with_other_types_than_the_topology_s_is_an_error() {
        let known = BTreeMap::from([("counts".to_owned(), ("alloc::string::String", "u32"))]);
        let e = Server::with_known(known, None)
            .register::<u64, Vec<u8>, _>("counts", ())
            .expect_err("wrong types");
        assert!(
            e.to_string()
                .contains("holds `alloc::string::String` -> `u32`, not `u64`"),
            "{e}"
        );
    }

    #[test]
    fn keys_parse_as_strings_first_then_json() {
        assert_eq!(parse_key::<String>("42"), Ok("42".to_owned()));
        assert_eq!(parse_key::<String>("\"q\""), Ok("\"q\"".to_owned()));
        assert_eq!(parse_key::<u64>("42"), Ok(42));
        assert_eq!(
            parse_key::<(u8, String)>("[1,\"a\"]"),
            Ok((1, "a".to_owned()))
        );
        assert!(parse_key::<u64>("-1").is_err());
        assert_eq!(encode_segment("a b/ü~"), "a%20b%2F%C3%BC~");
    }
}
