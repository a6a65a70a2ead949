//! The group consumer's context: librdkafka calls the rebalance callbacks from inside `poll`.
//!
//! Owns: [`GroupContext`] (what the processing loop and the callbacks share: the engine, the
//! rebalance generation, the partitions revoked since the loop last looked, the first error) and
//! the callbacks themselves, which only do what must happen inside them and return quickly:
//! `revoke`, the commit the protocol requires, then closing the revoked tasks (running or still
//! restoring); `assign`, recording the partitions and pausing their fetching
//! ([`Engine::assigned`](super::engine::Engine::assigned): no request to the cluster). May not
//! touch: processing, restoring, the commit protocol's steps, or the trust rule (those are
//! `engine`, `restore`, `commit` and `eos`).
//!
//! Rebalances (librdkafka's eager protocol by default). Before partitions are revoked, the commit
//! runs and their tasks are closed; records of revoked partitions already polled but not
//! processed are dropped (the next owner fetches them from the committed offset). Assigned
//! partitions stay paused until the processing loop has opened their tasks (LMDB in
//! `<state dir>/<application id>/<task id>`) and restored every changelogged store, a bounded
//! step per turn (`Engine::restore_step`, `restore::Restorer`), while the tasks already running
//! go on; then their fetching resumes from the group's committed offset.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rdkafka::ClientContext;
use rdkafka::TopicPartitionList;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;

use super::admin;
use super::engine::Engine;
use super::fetch::FetchQueue;
use super::lock;
use crate::error::Error;

/// The group consumer's context: rebalance callbacks commit and close revoked tasks, and record
/// (and pause) assigned partitions, before the consumer goes on.
pub(super) struct GroupContext {
    pub(super) engine: Mutex<Option<Engine>>,
    pub(super) generation: AtomicU64,
    /// Partitions revoked since the processing loop last looked: records of them polled before
    /// the revocation are dropped (they are fetched again from the committed offset by their next
    /// owner, possibly this instance).
    pub(super) revoked: Mutex<BTreeSet<(String, i32)>>,
    pub(super) error: Mutex<Option<Error>>,
    /// The queue assigned partitions deliver their records to (read in batches by the processing
    /// loop); `None` before the loop starts and once the consumer is closing.
    pub(super) fetch: Mutex<Option<Arc<FetchQueue>>>,
    /// librdkafka's last connection failure message (start-up reports it).
    pub(super) last_failure: Mutex<Option<String>>,
}

impl admin::ConnectionFailures for GroupContext {
    fn last_connection_failure(&self) -> Option<String> {
        lock(&self.last_failure).clone()
    }
}

impl GroupContext {
    fn fail(&self, e: Error) {
        let mut slot = lock(&self.error);
        if slot.is_none() {
            *slot = Some(e);
        }
    }
}

impl ClientContext for GroupContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        if fac == "FAIL" && (level as i32) <= RDKafkaLogLevel::Error as i32 {
            // Without librdkafka's "[thrd:NAME]: " prefix: the message names the broker itself.
            let message = log_message
                .strip_prefix("[thrd:")
                .and_then(|m| m.split_once("]: "))
                .map_or(log_message, |(_, rest)| rest);
            *lock(&self.last_failure) = Some(message.to_owned());
        }
        super::observe::librdkafka_log(level, fac, log_message);
    }
    fn error(&self, error: KafkaError, reason: &str) {
        super::observe::client_error("consumer", &error, reason);
    }
}

fn tpl_partitions(tpl: &TopicPartitionList) -> Vec<(String, i32)> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect()
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance
            && let Some(fetch) = lock(&self.fetch).as_ref()
        {
            // Before rdkafka applies the assignment: the partitions' fetching starts routed.
            fetch.route(&tpl_partitions(tpl));
        }
        if let Rebalance::Revoke(tpl) = rebalance {
            self.generation.fetch_add(1, Ordering::SeqCst);
            let revoked = tpl_partitions(tpl);
            lock(&self.revoked).extend(revoked.iter().cloned());
            let mut engine = lock(&self.engine);
            if let Some(engine) = engine.as_mut()
                && let Err(e) = engine.revoke(consumer, &revoked)
            {
                self.fail(e);
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                self.generation.fetch_add(1, Ordering::SeqCst);
                let assigned = tpl_partitions(tpl);
                let mut engine = lock(&self.engine);
                if let Some(engine) = engine.as_mut() {
                    engine.assigned(consumer, &assigned);
                }
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }
}
