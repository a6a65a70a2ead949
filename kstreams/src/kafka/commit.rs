//! The commit protocol (at-least-once) and the consumer's last steps.
//!
//! Owns: [`Engine::commit`](super::engine::Engine), the offset commit with its deadline (an FFI
//! call: librdkafka's synchronous commit has none), the classification of commit failures, and
//! closing the group consumer within a bound. May not touch: processing, task lifecycle, or the
//! exactly-once recovery (`eos`; step 3 under exactly-once is the sink's `commit_transaction`).
//!
//! A commit (every `commit_interval`, before partitions are revoked, on shutdown):
//! 1. handles the delivery failures reported so far through the production policy of their sink
//!    topic (at-least-once; one that fails the app leaves nothing after the last commit
//!    committed); before a revoke and at shutdown it first waits until the broker acknowledged
//!    every record sent so far (`Sink::wait_acked`), at an interval it does not wait
//!    (`Sink::settle`): records still in flight keep their input batches uncommitted,
//! 2. records the acknowledged changelog offsets in each task's LMDB environment
//!    (`record_changelog_positions`) and fsyncs it (`Task::sync`),
//! 3. commits the input offsets to the group, synchronously: at an interval each partition up to
//!    its watermark (`Sink::watermark`: the first offset of its oldest input batch with an output
//!    or changelog record not acknowledged or handled yet, or the next offset to process), else
//!    everything processed. While the broker or the group coordinator cannot be reached (an
//!    outage) the commit is retried with backoff for at most the delivery timeout; if the group
//!    moved on without this member meanwhile, nothing is committed and the rebalance that follows
//!    hands the partitions over (see `commit_offsets_retrying`).
//!
//! An interval commit that stopped at a watermark below what was processed is followed by
//! another as soon as nothing is in flight any more ([`Engine::caught_up`]).
//!
//! Under exactly-once, step 1 waits only before a revoke and at shutdown, and step 3 is the
//! sink's `commit_transaction` (the transaction commits all its records or none: no watermark),
//! after waiting for the delivery reports: so an interval commit syncs LMDB while the
//! transaction's records are in flight.
//!
//! So a committed offset never points past a record whose outputs or state could be lost.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

use super::backoff::Backoff;
use super::engine::{Engine, kafka_err};
use super::lock;
use super::rebalance::GroupContext;
use crate::error::{Error, Result};

impl Engine {
    /// The commit protocol: deliveries settled (all of them before a revoke or at shutdown),
    /// then changelog positions + fsync, then offsets (up to the watermarks at an interval
    /// commit under at-least-once).
    pub(super) fn commit<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        why: &str,
    ) -> Result<()> {
        let drain = why != "interval";
        self.behind = false;
        let any_dirty = self.tasks.values().any(|r| r.dirty);
        let all_committed = self
            .processed
            .iter()
            .all(|(k, v)| self.committed.get(k) == Some(v));
        if all_committed
            && !any_dirty
            && self.sink.outstanding() == 0
            && !self.sink.in_transaction()
        {
            return Ok(());
        }
        let began = Instant::now();
        // 1. Delivery failures go through their policies: at an interval, those reported so
        //    far (the records in flight keep their batches' watermarks down); before a revoke
        //    and at shutdown, every record sent so far is acknowledged or handled first.
        let settled = if drain {
            self.sink.wait_acked()
        } else {
            self.sink.settle()
        };
        let (skipped, dead_lettered) = self.sink.take_handled();
        if skipped + dead_lettered > 0 {
            let mut st = lock(&self.status);
            st.skipped_outputs += skipped;
            st.dead_lettered_outputs += dead_lettered;
        }
        if let Err(e) = settled {
            self.transaction_failed = self.exactly_once();
            return Err(e);
        }
        // What may be committed: everything processed under exactly-once (the transaction
        // commit waits for its records) and once drained; at an interval, each partition up to
        // its watermark (every output and changelog record of the input below it settled).
        let watermarks = !drain && !self.exactly_once();
        let targets: Vec<((String, i32), i64, i64)> = self
            .processed
            .iter()
            .map(|((t, p), next)| {
                let to = if watermarks {
                    self.sink.watermark(t, *p, *next)
                } else {
                    *next
                };
                ((t.clone(), *p), to, *next)
            })
            .collect();
        let behind = targets.iter().any(|(_, to, next)| to < next);
        let pending: Vec<((String, i32), i64)> = targets
            .into_iter()
            .filter(|(k, to, _)| self.committed.get(k).is_none_or(|c| c < to))
            .map(|(k, to, _)| (k, to))
            .collect();
        // 2. The state is durable, with the changelog offsets acknowledged so far: all of those
        //    of the committed input, which is all the state the offsets claim.
        let synced = Instant::now();
        for (id, running) in &mut self.tasks {
            let mut positions: Vec<(String, i64)> = Vec::new();
            for (i, (spec, topic)) in running
                .task
                .stores()
                .iter()
                .zip(running.task.changelog_topics())
                .enumerate()
            {
                let Some(topic) = topic else { continue };
                if let Some(acked) = self.sink.changelog_acked(topic, id.partition)
                    && running.recorded.get(i).copied().flatten() != Some(acked)
                {
                    positions.push((spec.name().to_owned(), acked));
                    if let Some(slot) = running.recorded.get_mut(i) {
                        *slot = Some(acked);
                    }
                }
            }
            // Acknowledgements that came after the last commit move the positions too.
            if !running.dirty && positions.is_empty() {
                continue;
            }
            let refs: Vec<(&str, i64)> = positions.iter().map(|(s, o)| (s.as_str(), *o)).collect();
            running.task.record_changelog_positions(&refs)?;
            running.task.sync()?;
            running.dirty = false;
        }
        let sync_us = synced.elapsed().as_micros() as u64;
        // 3. Only now the input offsets: in the transaction with the outputs and changelog
        //    records (exactly-once), or committed to the group (at-least-once).
        if self.exactly_once() {
            let mut tpl = TopicPartitionList::new();
            for ((t, p), o) in &pending {
                tpl.add_partition_offset(t, *p, Offset::Offset(*o))
                    .map_err(kafka_err("building the offsets to commit"))?;
            }
            let group = consumer.group_metadata().ok_or_else(|| {
                Error::Runtime("the consumer has no group metadata to commit with".into())
            })?;
            // The transaction commit would flush the records in flight itself, but by polling
            // (in 1 ms slices here, 100 ms in rust-rdkafka): wait on the delivery reports
            // instead, after the fsync, which overlapped them. A failure names its record.
            let committed = self
                .sink
                .wait_acked()
                .and_then(|()| self.sink.commit_transaction(&tpl, &group));
            if let Err(e) = committed {
                self.transaction_failed = true;
                return Err(e);
            }
            self.recoveries = 0;
            for (k, v) in &pending {
                self.committed.insert(k.clone(), *v);
            }
        } else if !pending.is_empty() {
            let mut tpl = TopicPartitionList::new();
            for ((t, p), o) in &pending {
                tpl.add_partition_offset(t, *p, Offset::Offset(*o))
                    .map_err(kafka_err("building the offsets to commit"))?;
            }
            if !commit_offsets_retrying(consumer, &tpl, why, self.config.delivery_timeout)? {
                // The group moved on: nothing is committed; the rebalance that follows revokes
                // the partitions and their next owner reprocesses since the last commit. (Or,
                // at an interval, the group is rebalancing: the offsets stay pending.)
                return Ok(());
            }
            for (k, v) in &pending {
                self.committed.insert(k.clone(), *v);
            }
        }
        self.behind = behind;
        tracing::debug!(
            why,
            partitions = pending.len(),
            in_flight = self.sink.outstanding(),
            queue_full_waits = self.sink.take_queue_full_waits(),
            sync_us,
            elapsed_us = began.elapsed().as_micros() as u64,
            "committed"
        );
        let mut st = lock(&self.status);
        for (k, v) in pending {
            st.committed.insert(k, v);
        }
        st.commits += 1;
        metrics::counter!("kstreams_commits_total").increment(1);
        metrics::histogram!("kstreams_commit_seconds").record(began.elapsed().as_secs_f64());
        Ok(())
    }
}

impl Engine {
    /// Whether to commit before the interval is up: the last interval commit stopped at a
    /// watermark below what was processed, and nothing is in flight any more.
    pub(super) fn caught_up(&self) -> bool {
        self.behind && self.sink.outstanding() == 0
    }
}

/// What a failed offset commit means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CommitFailure {
    /// The broker or the group coordinator is unreachable, moving or loading (an outage): the
    /// same commit may succeed later.
    Retriable,
    /// The group went on to another generation without this member (e.g. its session expired
    /// during an outage): the offsets are not this member's to commit any more.
    GroupMovedOn,
    /// Anything else.
    Fatal,
}

fn commit_failure(e: &KafkaError) -> CommitFailure {
    use rdkafka::types::RDKafkaErrorCode as C;
    match e.rdkafka_error_code() {
        Some(
            C::BrokerTransportFailure
            | C::AllBrokersDown
            | C::OperationTimedOut
            | C::WaitingForCoordinator
            | C::RequestTimedOut
            | C::NetworkException
            | C::CoordinatorLoadInProgress
            | C::CoordinatorNotAvailable
            | C::NotCoordinator
            | C::RebalanceInProgress,
        ) => CommitFailure::Retriable,
        Some(C::UnknownMemberId | C::IllegalGeneration) => CommitFailure::GroupMovedOn,
        _ => CommitFailure::Fatal,
    }
}

/// `topic:partition@offset, ...` of a list of offsets, for messages.
fn describe_offsets(tpl: &TopicPartitionList) -> String {
    tpl.elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => format!("{}:{}@{o}", e.topic(), e.partition()),
            other => format!("{}:{}@{other:?}", e.topic(), e.partition()),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// At-least-once step 3: commits input offsets to the group, synchronously. While the broker or
/// the group coordinator cannot be reached (an outage), the commit is retried with backoff
/// (100 ms doubling to 2 s, each retry logged at warn) for at most `bound` from the first attempt
/// (the delivery timeout: the time a commit already waits for acknowledgements); after that, or
/// on any other error, it fails naming the offsets. (One attempt itself may wait up to
/// `session.timeout.ms` for a coordinator librdkafka knows is gone, or up to `socket.timeout.ms`
/// for a request already queued for it.) Returns `false`,
/// committing nothing, when the group moved on without this member: the rebalance that follows
/// revokes the partitions and their next owner processes them again from the last commit, which
/// at-least-once allows.
fn commit_offsets_retrying<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    tpl: &TopicPartitionList,
    why: &str,
    bound: Duration,
) -> Result<bool> {
    let mut backoff = Backoff::within(bound);
    let mut attempt = 1u32;
    loop {
        // Each attempt gets what is left of the bound (at least 1 s).
        let left = bound
            .saturating_sub(backoff.elapsed())
            .max(Duration::from_secs(1));
        let Err(e) = commit_sync_within(consumer, tpl, left) else {
            if attempt > 1 {
                tracing::warn!(
                    why,
                    attempt,
                    elapsed_ms = backoff.elapsed().as_millis() as u64,
                    "offsets committed after the broker came back: {}",
                    describe_offsets(tpl)
                );
            }
            return Ok(true);
        };
        let elapsed = backoff.elapsed();
        if why == "interval"
            && e.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::RebalanceInProgress)
        {
            // The group rebalances (e.g. another processing thread joins): this member must poll
            // to take part, so the interval commit does not wait for the rebalance to end. Its
            // offsets stay pending: committed before the revocation, or at the next interval.
            tracing::debug!(why, error = %e, "commit skipped: the group is rebalancing");
            return Ok(false);
        }
        match commit_failure(&e) {
            CommitFailure::Retriable if backoff.may_retry() => {
                tracing::warn!(why, attempt, elapsed_ms = elapsed.as_millis() as u64, error = %e,
                    "committing offsets failed (broker or group coordinator unreachable); \
                     retrying in {:?}: {}", backoff.delay(), describe_offsets(tpl));
                backoff.wait();
                attempt += 1;
            }
            CommitFailure::GroupMovedOn => {
                tracing::warn!(why, error = %e, "committing offsets failed: the group moved on \
                    without this member; the partitions' next owner processes them again from \
                    the last commit (at-least-once): {}", describe_offsets(tpl));
                return Ok(false);
            }
            kind => {
                let context = if kind == CommitFailure::Retriable {
                    format!(
                        "committing offsets ({why}) of {}: the broker or group coordinator did \
                         not answer for {elapsed:?} ({attempt} attempts; the bound is the delivery \
                         timeout, {bound:?})",
                        describe_offsets(tpl)
                    )
                } else {
                    format!("committing offsets ({why}) of {}", describe_offsets(tpl))
                };
                return Err(Error::kafka(context, e));
            }
        }
    }
}

/// `consumer.commit(tpl, CommitMode::Sync)` with a deadline. librdkafka's synchronous commit waits
/// for its reply without one (`RD_POLL_INFINITE`), and when the group coordinator died with the
/// request queued for it, the reply can take until the broker is back (seen: over 100 s into an
/// outage, at shutdown). This sends the same commit with the reply on a queue of its own, which it
/// polls for at most `timeout`; past that the commit fails with `OperationTimedOut` (retriable),
/// and a late reply is dropped with the queue.
fn commit_sync_within<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    tpl: &TopicPartitionList,
    timeout: Duration,
) -> rdkafka::error::KafkaResult<()> {
    use rdkafka::bindings as rd;
    use rdkafka::types::RDKafkaRespErr as E;
    let rk = consumer.client().native_ptr();
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: `rk` is the handle of `consumer`, alive for this call; the queue is created,
    // polled and destroyed here, once (librdkafka keeps its own reference for a late reply);
    // `tpl` outlives the call (librdkafka copies the list); the event is destroyed once.
    let err = unsafe {
        let queue = rd::rd_kafka_queue_new(rk);
        let mut err = rd::rd_kafka_commit_queue(rk, tpl.ptr(), queue, None, std::ptr::null_mut());
        if err == E::RD_KAFKA_RESP_ERR_NO_ERROR {
            let event = rd::rd_kafka_queue_poll(queue, ms);
            if event.is_null() {
                err = E::RD_KAFKA_RESP_ERR__TIMED_OUT;
            } else {
                err = rd::rd_kafka_event_error(event);
                rd::rd_kafka_event_destroy(event);
            }
        }
        rd::rd_kafka_queue_destroy(queue);
        err
    };
    if err == E::RD_KAFKA_RESP_ERR_NO_ERROR {
        Ok(())
    } else {
        Err(KafkaError::ConsumerCommit(err.into()))
    }
}

/// How long closing the group consumer (leaving the group) may take at the end of `run`.
pub(super) const CONSUMER_CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Closes the group consumer (revokes its assignment, leaves the group) within `timeout`.
///
/// The consumer is dropped on a thread of its own: rust-rdkafka's `Drop` closes it (its close
/// serves the revoke callback, which finds no engine: it was taken, and drops any record still
/// fetched) and polls until librdkafka says it is closed. Closing it here first and dropping it
/// after would make `Drop` close it a second time, which fails and logs
/// `ERROR Failed to close consumer queue on drop ... BrokerDestroy` on every normal run. With the
/// group coordinator unreachable and a request still queued for it (an outage) the close can take
/// until the broker is back: past `timeout` the thread is left to finish (or to end with the
/// process) with a warning, so that `run` returns.
pub(super) fn close_consumer_within(consumer: BaseConsumer<GroupContext>, timeout: Duration) {
    let (closed_tx, closed_rx) = std::sync::mpsc::channel();
    let closing = std::thread::Builder::new()
        .name("kstreams-consumer-close".into())
        .spawn(move || {
            drop(consumer);
            let _ = closed_tx.send(());
        });
    match closing {
        Ok(closing) => match closed_rx.recv_timeout(timeout) {
            Ok(()) => {
                let _ = closing.join();
            }
            Err(_) => tracing::warn!(
                ?timeout,
                "the consumer could not leave the group in time (broker unreachable?); \
                 leaving its close to a background thread"
            ),
        },
        // No thread for it: `spawn` dropped the closure, so the consumer was closed by its
        // `Drop` right here, without the bound.
        Err(e) => tracing::warn!(error = %e, "cannot spawn a thread to close the consumer"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_commit_failures_are_classified() {
        use rdkafka::types::RDKafkaErrorCode as C;
        let kind = |c| commit_failure(&KafkaError::ConsumerCommit(c));
        // An outage: the broker or the coordinator cannot be reached (yet).
        for c in [
            C::WaitingForCoordinator,
            C::BrokerTransportFailure,
            C::AllBrokersDown,
            C::OperationTimedOut,
            C::CoordinatorNotAvailable,
            C::NotCoordinator,
            C::CoordinatorLoadInProgress,
            C::RequestTimedOut,
        ] {
            assert_eq!(kind(c), CommitFailure::Retriable, "{c:?}");
        }
        // The session was lost (e.g. during a long outage) and the group went on.
        assert_eq!(kind(C::UnknownMemberId), CommitFailure::GroupMovedOn);
        assert_eq!(kind(C::IllegalGeneration), CommitFailure::GroupMovedOn);
        // Anything else stops the app.
        assert_eq!(kind(C::GroupAuthorizationFailed), CommitFailure::Fatal);
        assert_eq!(kind(C::OffsetMetadataTooLarge), CommitFailure::Fatal);
    }
}
