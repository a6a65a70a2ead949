//! Observability of a running [`App`](super::App): the metrics it records, its periodic progress
//! log and the optional Prometheus scrape endpoint.
//!
//! Owns: what [`AppConfig::progress_log_interval`] and `AppConfig::prometheus_endpoint` set, the
//! per-app observer the processing loop feeds, and the process-wide Prometheus exporter. It
//! only records what the runtime tells it; it never touches tasks, stores or offsets.
//!
//! Metrics go through the [`metrics`] facade, so any recorder works (install your own, or switch
//! on the Prometheus endpoint with the `prometheus` feature). Every name starts with `kstreams_`:
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `kstreams_records_in_total` | counter | `topic` | input records handed to tasks |
//! | `kstreams_records_out_total` | counter | `topic` | records sent to sink and dead-letter topics |
//! | `kstreams_batch_size` | histogram | | records per batch |
//! | `kstreams_batch_seconds` | histogram | `topic` | time to process one batch (one LMDB transaction) |
//! | `kstreams_commit_seconds` | histogram | | time of one commit (acks, fsync, offsets) |
//! | `kstreams_commits_total` | counter | | commits made |
//! | `kstreams_producer_queue_full_waits_total` | counter | | sends that found the producer's queue full (`queue.buffering.max.messages`) and waited 1 ms for room |
//! | `kstreams_consumer_lag` | gauge | `topic`, `partition` | high watermark minus next offset to process |
//! | `kstreams_restore_records_total` | counter | `store` | changelog records restored |
//! | `kstreams_restore_remaining` | gauge | `store`, `partition` | changelog records still to restore (0 when done) |
//! | `kstreams_skipped_records_total` | counter | `topic`, `stage` | records skipped by `OnBadRecord::Skip` (`stage`: `deserialize`, `process`, `produce`; `topic`: the input topic, the sink topic for `produce`) |
//! | `kstreams_dead_lettered_records_total` | counter | `topic`, `stage` | records sent to a dead-letter topic (labels as for skipped) |
//!
//! The progress log is one `info` line every [`AppConfig::progress_log_interval`] (10 s by
//! default) with the records per second in and out and the total lag.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use super::config::AppConfig;
#[cfg(feature = "prometheus")]
use crate::error::Error;
use crate::error::Result;
use crate::record::ProducerRecord;

/// What an app reports besides its logs (part of [`AppConfig`]).
#[derive(Debug, Clone)]
pub(crate) struct ObserveConfig {
    pub(crate) progress_interval: Option<Duration>,
    #[cfg(feature = "prometheus")]
    pub(crate) prometheus: Option<std::net::SocketAddr>,
}

impl Default for ObserveConfig {
    fn default() -> Self {
        ObserveConfig {
            progress_interval: Some(Duration::from_secs(10)),
            #[cfg(feature = "prometheus")]
            prometheus: None,
        }
    }
}

impl AppConfig {
    /// How often the one-line progress summary (records/s in and out, total lag) is logged at
    /// `info` level; `None` switches it off. Default: every 10 seconds; at most
    /// [`MAX_DURATION`](super::config::MAX_DURATION).
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = kstreams::kafka::AppConfig::new("app").progress_log_interval(Some(Duration::from_secs(30)));
    /// # let _ = config;
    /// ```
    #[must_use]
    pub fn progress_log_interval(mut self, interval: Option<Duration>) -> Self {
        self.observe.progress_interval = interval;
        self
    }

    /// Serves the app's metrics for Prometheus on `http://ADDR/metrics` (feature `prometheus`).
    ///
    /// The exporter is the process's global [`metrics`] recorder, installed by
    /// [`App::new`](super::App::new): several apps in one process share it, and they must all
    /// name the same address (another one is a configuration error, as is a recorder installed
    /// by someone else).
    ///
    /// ```no_run
    /// use kstreams::kafka::AppConfig;
    /// let config = AppConfig::new("app").prometheus_endpoint(([0, 0, 0, 0], 9464).into());
    /// # let _ = config;
    /// ```
    #[cfg(feature = "prometheus")]
    #[must_use]
    pub fn prometheus_endpoint(mut self, addr: std::net::SocketAddr) -> Self {
        self.observe.prometheus = Some(addr);
        self
    }
}

/// Installs what the config asks for (the Prometheus exporter) once per process.
pub(crate) fn install(config: &AppConfig) -> Result<()> {
    #[cfg(feature = "prometheus")]
    if let Some(addr) = config.observe.prometheus {
        install_prometheus(addr)?;
    }
    let _ = config;
    Ok(())
}

/// The process's Prometheus recorder, once installed: the address of its own scrape listener
/// (`None` when only the HTTP server of feature `http` renders it) and its handle.
#[cfg(feature = "prometheus")]
static PROMETHEUS: std::sync::Mutex<
    Option<(
        Option<std::net::SocketAddr>,
        metrics_exporter_prometheus::PrometheusHandle,
    )>,
> = std::sync::Mutex::new(None);

#[cfg(feature = "prometheus")]
fn install_prometheus(addr: std::net::SocketAddr) -> Result<()> {
    let mut installed = super::lock(&PROMETHEUS);
    match &*installed {
        Some((Some(a), _)) if *a == addr => return Ok(()),
        Some((Some(a), _)) => {
            return Err(Error::Config(format!(
                "the Prometheus endpoint already listens on {a}; one process has one endpoint, \
                 cannot also listen on {addr}"
            )));
        }
        Some((None, _)) => {
            return Err(Error::Config(format!(
                "the metrics recorder was installed for the HTTP server's `/metrics` before an \
                 app asked for a Prometheus endpoint on {addr}: create that app first, or read \
                 the metrics from the HTTP server"
            )));
        }
        None => {}
    }
    // Built on a runtime of its own, run by a thread of its own, as `PrometheusBuilder::install`
    // does without a runtime (the caller's may be a short-lived or current-thread one), and from
    // a thread of its own (a runtime may not be dropped, on an error, inside the caller's);
    // built here so that the handle is kept for the HTTP server's `/metrics`.
    let built = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let (recorder, exporter) = {
            let _entered = runtime.enter();
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .with_http_listener(addr)
                .build()
                .map_err(|e| e.to_string())?
        };
        let handle = recorder.handle();
        metrics::set_global_recorder(recorder).map_err(|e| e.to_string())?;
        std::thread::Builder::new()
            .name("kstreams-prometheus".into())
            .spawn(move || runtime.block_on(exporter))
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(handle)
    })
    .join()
    .unwrap_or_else(|_| Err("the exporter's installer panicked".into()));
    let handle = built.map_err(|e| Error::Config(format!("Prometheus endpoint on {addr}: {e}")))?;
    *installed = Some((Some(addr), handle));
    tracing::info!(%addr, "Prometheus metrics at http://{addr}/metrics");
    Ok(())
}

/// The process's Prometheus recorder, for the HTTP server's `/metrics` (feature `http`): the
/// one an app's Prometheus endpoint installed, else one installed now without a listener of
/// its own. An error when another recorder is the process's.
#[cfg(feature = "http")]
pub(crate) fn prometheus_handle() -> Result<metrics_exporter_prometheus::PrometheusHandle> {
    let mut installed = super::lock(&PROMETHEUS);
    if let Some((_, handle)) = &*installed {
        return Ok(handle.clone());
    }
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| Error::Config(format!("the metrics recorder for `/metrics`: {e}")))?;
    *installed = Some((None, handle.clone()));
    Ok(handle)
}

/// Logs an error event librdkafka reported to a client's context at the level it deserves:
/// the end of a partition (`PartitionEOF`, which the restore consumer asks for to know a
/// changelog is restored; librdkafka reports it as an error event, as `KafkaError::Global`) is
/// information, logged at `debug`; anything else is a `warn` (the runtime handles what it can,
/// and what stops the app is returned as an error).
pub(crate) fn client_error(client: &str, error: &KafkaError, reason: &str) {
    if is_informational(error) {
        tracing::debug!(target: "librdkafka", %error, "{client}: {reason}");
    } else {
        tracing::warn!(target: "librdkafka", %error, "{client}: {reason}");
    }
}

/// Forwards one line of librdkafka's log to `tracing` (target `librdkafka`) at the level it
/// deserves: librdkafka's own, except for a warning that only says it retries while a
/// coordinator is still loading its state (after a broker start, e.g. `Failed to acquire
/// idempotence PID from broker ...: Coordinator load in progress: retrying`), which is `info`:
/// a normal run prints no WARN.
pub(crate) fn librdkafka_log(level: RDKafkaLogLevel, fac: &str, message: &str) {
    super::sink::log_to_tracing(log_level(level, message), fac, message);
}

fn log_level(level: RDKafkaLogLevel, message: &str) -> RDKafkaLogLevel {
    if matches!(level, RDKafkaLogLevel::Warning)
        && message.contains("Coordinator load in progress")
        && message.trim_end().ends_with("retrying")
    {
        RDKafkaLogLevel::Info
    } else {
        level
    }
}

/// Whether an error event is only information: the end of a partition was reached.
fn is_informational(error: &KafkaError) -> bool {
    matches!(error, KafkaError::PartitionEOF(_))
        || error.rdkafka_error_code() == Some(RDKafkaErrorCode::PartitionEOF)
}

/// The per-app bookkeeping behind the metrics and the progress log.
#[derive(Debug)]
pub(crate) struct Observer {
    progress_interval: Option<Duration>,
    last_progress: Instant,
    last_lag: Instant,
    records_in: u64,
    records_out: u64,
    total_lag: i64,
}

impl Observer {
    pub(crate) fn new(config: &AppConfig) -> Self {
        Observer {
            progress_interval: config.observe.progress_interval,
            last_progress: Instant::now(),
            last_lag: Instant::now(),
            records_in: 0,
            records_out: 0,
            total_lag: 0,
        }
    }

    /// One batch of `records` input records of `topic` was processed in `elapsed`.
    pub(crate) fn batch(&mut self, topic: &str, records: usize, elapsed: Duration) {
        self.records_in += records as u64;
        metrics::histogram!("kstreams_batch_seconds", "topic" => topic.to_owned())
            .record(elapsed.as_secs_f64());
    }

    /// Records handed to the producer for sink and dead-letter topics.
    pub(crate) fn records_out(&mut self, records: &[ProducerRecord]) {
        if records.is_empty() {
            return;
        }
        self.records_out += records.len() as u64;
        let mut per_topic: BTreeMap<&str, u64> = BTreeMap::new();
        for r in records {
            *per_topic.entry(&r.topic).or_default() += 1;
        }
        for (topic, n) in per_topic {
            metrics::counter!("kstreams_records_out_total", "topic" => topic.to_owned())
                .increment(n);
        }
    }

    /// Called from the processing loop: updates the lag gauges (at most once a second, from the
    /// consumer's cached watermarks, no request) and writes the progress line when it is due.
    pub(crate) fn tick<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        processed: &HashMap<(String, i32), i64>,
    ) {
        if self.last_lag.elapsed() >= Duration::from_secs(1) {
            self.last_lag = Instant::now();
            let mut total = 0;
            for ((topic, partition), next) in processed {
                if let Some(high) = cached_high_watermark(consumer, topic, *partition) {
                    let lag = (high - next).max(0);
                    total += lag;
                    metrics::gauge!("kstreams_consumer_lag", "topic" => topic.clone(),
                        "partition" => partition.to_string())
                    .set(lag as f64);
                }
            }
            self.total_lag = total;
        }
        let Some(interval) = self.progress_interval else {
            return;
        };
        let elapsed = self.last_progress.elapsed();
        if elapsed < interval {
            return;
        }
        let secs = elapsed.as_secs_f64().max(1e-3);
        tracing::info!(
            in_per_sec = (self.records_in as f64 / secs).round() as u64,
            out_per_sec = (self.records_out as f64 / secs).round() as u64,
            lag = self.total_lag,
            "progress: {:.0} records/s in, {:.0} records/s out, lag {}",
            self.records_in as f64 / secs,
            self.records_out as f64 / secs,
            self.total_lag
        );
        self.records_in = 0;
        self.records_out = 0;
        self.last_progress = Instant::now();
    }
}

/// The high watermark librdkafka last saw in a fetch response (no request; `None` before the
/// first fetch). rdkafka 0.39 does not wrap `rd_kafka_get_watermark_offsets`.
fn cached_high_watermark<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
) -> Option<i64> {
    cached_watermarks(consumer, topic, partition).map(|(_, high)| high)
}

/// The low and high watermarks librdkafka last saw (no request; `None` before the first
/// fetch).
pub(super) fn cached_watermarks<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
) -> Option<(i64, i64)> {
    let topic = std::ffi::CString::new(topic).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client pointer is valid while `consumer` lives; the topic is a NUL-terminated
    // string that outlives the call; `low` and `high` are valid for writes.
    let err = unsafe {
        rdkafka_sys::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (err == rdkafka_sys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
        .then_some((low, high))
}

/// Restore progress of one store partition: the counter of records restored and the gauge of
/// what is left (`store`, `partition`), `info` lines when it begins and ends (with records/s)
/// and at most every 5 s between, a `debug` line per step.
#[derive(Debug)]
pub(crate) struct RestoreProgress {
    task: crate::task::TaskId,
    store: String,
    partition: i32,
    start: i64,
    high: i64,
    restored: u64,
    began: Instant,
    last_log: Instant,
}

impl RestoreProgress {
    /// The restore of `store` (changelog `topic`, `partition`) of `task` begins at offset
    /// `start`; the changelog ends at `high`.
    pub(crate) fn new(
        task: crate::task::TaskId,
        store: &str,
        topic: &str,
        partition: i32,
        start: i64,
        high: i64,
    ) -> Self {
        let p = RestoreProgress {
            task,
            store: store.to_owned(),
            partition,
            start,
            high,
            restored: 0,
            began: Instant::now(),
            last_log: Instant::now(),
        };
        tracing::info!(%task, %store, %topic, partition, from = start, to = high,
            "restoring: {} changelog records at most", high - start);
        p.gauge(p.remaining(start));
        p
    }

    fn remaining(&self, next: i64) -> u64 {
        u64::try_from(self.high - next).unwrap_or(0)
    }

    fn gauge(&self, remaining: u64) {
        metrics::gauge!("kstreams_restore_remaining", "store" => self.store.clone(),
            "partition" => self.partition.to_string())
        .set(remaining as f64);
    }

    /// `records` more changelog records were written; the next offset to read is `next`
    /// (offsets may skip, so what remains is an estimate until [`done`](Self::done)).
    pub(crate) fn step(&mut self, records: u64, next: i64) {
        self.restored += records;
        metrics::counter!("kstreams_restore_records_total", "store" => self.store.clone())
            .increment(records);
        let remaining = self.remaining(next);
        self.gauge(remaining);
        tracing::debug!(task = %self.task, store = %self.store, records, next, remaining,
            "restore step");
        if self.last_log.elapsed() >= Duration::from_secs(5) {
            self.last_log = Instant::now();
            tracing::info!(task = %self.task, store = %self.store, partition = self.partition,
                restored = self.restored, remaining, "restoring: {} records, {remaining} to go",
                self.restored);
        }
    }

    /// The store is up to date.
    pub(crate) fn done(&self) {
        self.gauge(0);
        let secs = self.began.elapsed().as_secs_f64();
        let per_sec = (self.restored as f64 / secs.max(1e-3)).round() as u64;
        tracing::info!(task = %self.task, store = %self.store, partition = self.partition,
            records = self.restored, elapsed_ms = (secs * 1000.0) as u64, records_per_sec = per_sec,
            "restored: {} records in {secs:.1} s ({per_sec} records/s)", self.restored);
    }

    /// The restore stopped before its end (its task was closed): nothing is left to restore
    /// here for now.
    pub(crate) fn abandoned(&self) {
        self.gauge(0);
        tracing::debug!(task = %self.task, store = %self.store, start = self.start,
            restored = self.restored, "restore abandoned");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The end of a partition, as librdkafka's error callback reports it (`Global`) and as a
    /// poll returns it, is information; a broker failure is not.
    #[test]
    fn partition_eof_is_information_not_a_warning() {
        assert!(is_informational(&KafkaError::Global(
            RDKafkaErrorCode::PartitionEOF
        )));
        assert!(is_informational(&KafkaError::PartitionEOF(3)));
        assert!(!is_informational(&KafkaError::Global(
            RDKafkaErrorCode::BrokerTransportFailure
        )));
        assert!(!is_informational(&KafkaError::Global(
            RDKafkaErrorCode::AllBrokersDown
        )));
    }

    /// The HTTP server's `/metrics` renders the process's one recorder, and once it is
    /// installed a Prometheus endpoint cannot install another: a config error saying why.
    #[cfg(feature = "http")]
    #[test]
    fn the_http_server_and_a_prometheus_endpoint_share_one_recorder() {
        let handle = prometheus_handle().expect("recorder");
        metrics::counter!("kstreams_observe_test_total").increment(2);
        assert!(
            handle.render().contains("kstreams_observe_test_total 2"),
            "{}",
            handle.render()
        );
        let e = install_prometheus(([127, 0, 0, 1], 1).into()).expect_err("a second recorder");
        assert!(
            matches!(&e, Error::Config(m) if m.contains("127.0.0.1:1")),
            "{e}"
        );
    }

    /// A retry while a coordinator loads is information; other warnings stay warnings.
    #[test]
    fn a_retry_while_a_coordinator_loads_is_information() {
        let level = |l, m| log_level(l, m) as i32;
        let getpid = "[thrd:main]: Failed to acquire idempotence PID from broker \
                      127.0.0.1:45593/1: Broker: Coordinator load in progress: retrying";
        assert_eq!(
            level(RDKafkaLogLevel::Warning, getpid),
            RDKafkaLogLevel::Info as i32
        );
        for other in [
            "[thrd:main]: Failed to acquire idempotence PID from broker b/1: Broker: \
             Transactional Id authorization failed",
            "127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused",
        ] {
            assert_eq!(
                level(RDKafkaLogLevel::Warning, other),
                RDKafkaLogLevel::Warning as i32
            );
        }
        assert_eq!(
            level(RDKafkaLogLevel::Error, getpid),
            RDKafkaLogLevel::Error as i32
        );
    }
}
