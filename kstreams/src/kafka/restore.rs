//! Restoration: bringing a task's stores up to date from their changelog topics.
//!
//! Owns: [`restore_task`]. For each store with a changelog, it reads the changelog partition from
//! the offset the task's LMDB environment recorded (`Position::changelog`) to the high watermark,
//! in batches, each written with [`Task::restore`](crate::task::Task::restore) (one state
//! transaction that also records the next changelog offset: invariant 5). It never processes
//! input.

use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};

use crate::error::{Error, Result};
use crate::record::{Headers, RawRecord};
use crate::task::Task;

/// The restore consumer's context: logs to `tracing`.
#[derive(Debug, Default)]
pub(crate) struct RestoreContext;

impl ClientContext for RestoreContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        super::observe::librdkafka_log(level, fac, log_message);
    }
    fn error(&self, error: KafkaError, reason: &str) {
        super::observe::client_error("restore consumer", &error, reason);
    }
}
impl ConsumerContext for RestoreContext {}

/// What a restore found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Restored {
    /// The stores are up to date; this many changelog records were applied.
    Done(u64),
    /// The local state claims changelog offsets past the changelog's end (the changelog was
    /// recreated, or the cluster is another one): the local state must be wiped and rebuilt.
    LocalStateInvalid,
}

fn raw<'a>(m: &'a BorrowedMessage<'a>) -> RawRecord<'a> {
    RawRecord {
        key: m.key(),
        value: m.payload(),
        timestamp: m.timestamp().to_millis().unwrap_or(0),
        offset: m.offset(),
        headers: Headers::new(),
    }
}

/// Restores every changelogged store of `task` from its changelog partition.
///
/// `read_committed` (exactly-once): the consumer's "high watermark" is then the last stable offset,
/// which trails the log while a transaction on the changelog is not decided yet (its markers are
/// written a few ms after `commit_transaction` returns, or never, if the broker skipped them: a
/// hanging transaction). Local state that recorded more than that is not taken for a recreated
/// changelog: the restore waits up to `timeout` for the stable offset to reach it, and otherwise
/// fails. Wiping the state and restoring only up to a stable offset that trails committed
/// transactions would silently lose their effects.
pub(crate) fn restore_task(
    consumer: &BaseConsumer<RestoreContext>,
    task: &mut Task,
    batch_records: usize,
    timeout: Duration,
    read_committed: bool,
) -> Result<Restored> {
    let partition = task.id().partition;
    let position = task.position()?;
    let stores: Vec<(String, String)> = task
        .stores()
        .iter()
        .zip(task.changelog_topics())
        .filter_map(|(s, t)| t.as_ref().map(|t| (s.name().to_owned(), t.to_string())))
        .collect();
    let mut total = 0;
    for (store, topic) in stores {
        let watermarks = || {
            consumer
                .fetch_watermarks(&topic, partition, timeout)
                .map_err(|source| Error::Kafka {
                    context: format!(
                        "reading the offsets of changelog `{topic}` partition {partition}"
                    ),
                    source,
                })
        };
        let (low, mut high) = watermarks()?;
        let recorded = position.changelog(&store);
        if read_committed && recorded.is_some_and(|r| r > high) {
            let waited = Instant::now();
            while recorded.is_some_and(|r| r > high) && waited.elapsed() < timeout {
                std::thread::sleep(Duration::from_millis(100));
                high = watermarks()?.1;
            }
            if let Some(r) = recorded.filter(|r| *r > high) {
                return Err(Error::Runtime(format!(
                    "restoring store `{store}` of task {}: its local state recorded changelog \
                     `{topic}` partition {partition} up to offset {r}, but the last stable offset \
                     stayed at {high} for {timeout:?}: a transaction on the changelog is not \
                     decided (a hanging transaction: see `kafka-transactions.sh find-hanging`), \
                     or the changelog was recreated (then delete the state directory)",
                    task.id()
                )));
            }
            tracing::info!(task = %task.id(), %store, recorded = ?recorded, high,
                waited_ms = waited.elapsed().as_millis() as u64,
                "the changelog's last stable offset caught up with the local state");
        }
        if recorded.is_some_and(|r| r > high) {
            tracing::warn!(task = %task.id(), %store, ?recorded, high,
                "local state is ahead of its changelog (changelog recreated?); rebuilding it");
            return Ok(Restored::LocalStateInvalid);
        }
        let start = recorded.unwrap_or(low).max(low);
        if recorded.is_some_and(|r| r < low) {
            tracing::warn!(task = %task.id(), %store, ?recorded, low,
                "changelog records the local state has not seen were deleted; restoring from the low watermark");
        }
        if start >= high {
            continue;
        }
        let began = Instant::now();
        tracing::info!(task = %task.id(), %store, %topic, from = start, to = high, "restoring");
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, partition, Offset::Offset(start))
            .map_err(|source| Error::Kafka {
                context: "building a restore assignment".into(),
                source,
            })?;
        consumer.assign(&tpl).map_err(|source| Error::Kafka {
            context: format!("assigning changelog `{topic}` partition {partition}"),
            source,
        })?;
        let mut next = start;
        let mut progress =
            super::observe::RestoreProgress::new(&store, partition, (high - start) as u64);
        let mut last_progress = Instant::now();
        let mut done = false;
        while !done {
            let mut batch: Vec<BorrowedMessage<'_>> = Vec::new();
            let deadline = Instant::now() + Duration::from_millis(100);
            while batch.len() < batch_records {
                let wait = deadline.saturating_duration_since(Instant::now());
                match consumer.poll(wait) {
                    None => break,
                    Some(Ok(m)) => {
                        if m.topic() == topic && m.partition() == partition && m.offset() >= next {
                            let end = m.offset() + 1 >= high;
                            batch.push(m);
                            if end {
                                done = true;
                                break;
                            }
                        }
                    }
                    Some(Err(KafkaError::PartitionEOF(p))) if p == partition => {
                        done = true;
                        break;
                    }
                    Some(Err(e)) => {
                        tracing::warn!(task = %task.id(), %topic, error = %e, "restore consumer error");
                        break;
                    }
                }
            }
            if let Some(last) = batch.last() {
                let next_offset = last.offset() + 1;
                let records: Vec<RawRecord<'_>> = batch.iter().map(raw).collect();
                task.restore(&store, &records, next_offset)?;
                total += records.len() as u64;
                next = next_offset;
                progress.update((next - start) as u64);
                last_progress = Instant::now();
            } else if !done && last_progress.elapsed() > timeout {
                let _ = consumer.unassign();
                return Err(Error::Runtime(format!(
                    "restoring store `{store}` of task {} stalled at offset {next} of changelog \
                     `{topic}` partition {partition} (end {high}) for {timeout:?}",
                    task.id()
                )));
            }
        }
        progress.done();
        if next < high {
            // The end was reached through EOF below the high watermark (e.g. compaction gaps):
            // record the high watermark as the position.
            task.restore(&store, &[], high)?;
        }
        consumer.unassign().map_err(|source| Error::Kafka {
            context: "unassigning the restore consumer".into(),
            source,
        })?;
        tracing::info!(task = %task.id(), %store, records = total, elapsed_ms = began.elapsed().as_millis() as u64, "restored");
    }
    Ok(Restored::Done(total))
}
