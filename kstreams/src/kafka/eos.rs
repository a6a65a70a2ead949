//! Exactly-once: the trust rule for local state and the recovery from a failed transaction.
//!
//! Owns: deciding whether a task's local state may be used ([`untrusted_state`]), aborting a
//! failed transaction (or replacing the producer), and rewinding to the committed offsets. May
//! not touch: the transactional producer's own calls (`sink`), the commit protocol's steps
//! (`commit`) or processing (`engine`).
//!
//! See ARCHITECTURE.md, "The commit protocol (exactly-once)": step 3 of the commit becomes
//! `send_offsets_to_transaction` with the consumer's group metadata and `commit_transaction`,
//! inputs and changelogs are read `read_committed`, and a task opens its local state only if its
//! input position equals the committed offsets; otherwise the state is wiped and restored from
//! the committed changelog. When the transaction fails while processing (a send, a delivery, the
//! offsets or the commit; e.g. the broker was down longer than the 10 s transaction timeout), it
//! is aborted (or the producer replaced), the tasks are closed, the consumer is rewound to the
//! committed offsets and the tasks reopened, which wipes and restores their state by the rule
//! above (`Engine::recover_transaction`; at most 3 times without a successful commit in between).
//! Any other error, and a failed commit before a revoke or at shutdown, aborts the open
//! transaction and stops the app.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

use super::backoff::Backoff;
use super::engine::{Engine, kafka_err};
use super::sink::Sink;
use crate::error::{Error, Result};
use crate::task::{Task, TaskId};

impl Engine {
    /// Exactly-once, on opening a task: keeps its local state if the trust rule allows it
    /// ([`untrusted_state`]), else wipes it so that it is restored from the committed changelog.
    pub(super) fn trusted_or_wiped(
        &self,
        task: Task,
        id: TaskId,
        committed: &TopicPartitionList,
    ) -> Result<Task> {
        let Some(why) = untrusted_state(&task, id, committed)? else {
            return Ok(task);
        };
        tracing::warn!(task = %id, "{why}: wiping local state and restoring it from the \
            committed changelog (exactly-once)");
        self.reopen_wiped(task, id, "untrusted")
    }

    /// Exactly-once: recovers from a failed transaction (`cause`: a send, a delivery, the offsets
    /// or the commit failed, e.g. because the broker was down longer than the transaction or
    /// delivery timeout). The transaction is aborted (retried while the broker cannot be reached;
    /// if it cannot be aborted, e.g. the producer was fenced or failed fatally, the producer is
    /// replaced: `init_transactions` aborts it for us), then every task is closed, the consumer is
    /// rewound to the group's committed offsets and the tasks are reopened: their local state went
    /// ahead of the committed input, so the trust rule wipes it and restores it from the committed
    /// changelog. The result is the state of a replay of exactly the committed input. Bounded: the
    /// abort is retried for at most the delivery timeout, and after 3 recoveries without a
    /// successful commit in between the app stops with `cause`.
    pub(super) fn recover_transaction<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        cause: Error,
    ) -> Result<()> {
        self.transaction_failed = false;
        self.recoveries += 1;
        if self.recoveries > 3 {
            tracing::error!(error = %cause, "exactly-once: the transaction failed again after 3 \
                recoveries without a successful commit; stopping");
            return Err(cause);
        }
        tracing::warn!(error = %cause, attempt = self.recoveries, "exactly-once: the transaction \
            failed; aborting it, rewinding to the committed offsets and rebuilding local state");
        let bound = self.config.delivery_timeout;
        let began = Instant::now();
        let mut backoff = Backoff::since(began, bound);
        loop {
            match self.sink.abort_transaction() {
                Ok(()) => break,
                Err(e) if is_retriable_transaction_error(&e) && backoff.may_retry() => {
                    tracing::warn!(error = %e, elapsed_ms = backoff.elapsed().as_millis() as u64,
                        "exactly-once: aborting the transaction failed (broker unreachable?); \
                         retrying in {:?}", backoff.delay());
                    backoff.wait();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "exactly-once: the transaction cannot be aborted; \
                        replacing the producer (its init_transactions aborts it)");
                    self.replace_producer(began, bound)?;
                    break;
                }
            }
        }
        self.sink.clear_deliveries();
        let partitions: Vec<(String, i32)> = self.assignment.iter().cloned().collect();
        // Reopening reads the committed offsets (and restores): retried, within the same bound,
        // while the broker or the group coordinator is not back yet.
        let mut backoff = Backoff::since(began, bound);
        loop {
            self.processed.clear();
            match self
                .close_all()
                .and_then(|()| self.reopen_and_rewind(consumer, &partitions))
            {
                Ok(()) => break,
                Err(e) if backoff.may_retry() => {
                    tracing::warn!(error = %e, elapsed_ms = backoff.elapsed().as_millis() as u64,
                        "exactly-once: reopening the tasks after the abort failed; retrying in \
                         {:?}", backoff.delay());
                    backoff.wait();
                }
                Err(e) => {
                    return Err(Error::Runtime(format!(
                        "exactly-once: the tasks could not be reopened after an aborted \
                         transaction within {:?} (the bound is the delivery timeout, {bound:?}): \
                         {e}. If the broker is up, a transaction it never completed (a hanging \
                         transaction, `kafka-transactions.sh find-hanging`) keeps the committed \
                         offsets or the changelog unstable",
                        began.elapsed()
                    )));
                }
            }
        }
        tracing::warn!(
            ?partitions,
            elapsed_ms = began.elapsed().as_millis() as u64,
            "exactly-once: recovered; processing again from the committed offsets"
        );
        Ok(())
    }

    /// Exactly-once recovery: reopens (and so restores) the tasks of `partitions`, and seeks
    /// them back to the group's committed offsets.
    fn reopen_and_rewind<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        partitions: &[(String, i32)],
    ) -> Result<()> {
        let mut tpl = TopicPartitionList::new();
        for (t, p) in partitions {
            tpl.add_partition(t, *p);
        }
        // A short probe first: librdkafka's `committed()`, when the group coordinator is not
        // ready, waits for a change of broker state for up to its whole timeout, and after a
        // broker restart none may come; a fresh, short request per retry does not get stuck.
        consumer
            .committed_offsets(tpl, Duration::from_secs(2))
            .map_err(kafka_err(
                "reading the committed offsets (probe before reopening)",
            ))?;
        // Reopened and restored here, not step by step in the loop: every task is rebuilt, so
        // none could process meanwhile. Each seeks back to the committed offset it read when it
        // opened, once restored.
        self.begin(consumer, partitions, true);
        self.restore_all(consumer)
    }

    /// Exactly-once: replaces the transactional producer, retrying while the transaction
    /// coordinator cannot be reached, until `began + bound`.
    fn replace_producer(&mut self, began: Instant, bound: Duration) -> Result<()> {
        let mut backoff = Backoff::since(began, bound);
        loop {
            match Sink::new(
                &self.config,
                &self.bootstrap,
                self.transactional_id.as_deref(),
            ) {
                Ok(sink) => {
                    self.sink = sink;
                    return Ok(());
                }
                Err(e) if is_retriable_transaction_error(&e) && backoff.may_retry() => {
                    tracing::warn!(error = %e, elapsed_ms = backoff.elapsed().as_millis() as u64,
                        "exactly-once: initializing the new producer's transactions failed \
                         (broker unreachable?); retrying in {:?}", backoff.delay());
                    backoff.wait();
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Whether `e` is a transactional call of the client that failed in a way worth retrying (the
/// transaction coordinator could not be reached, say).
fn is_retriable_transaction_error(e: &Error) -> bool {
    matches!(e.kafka_source(), Some(KafkaError::Transaction(t)) if t.is_retriable())
}

/// The committed offset of one partition in a list read from the group (`None`: none).
pub(super) fn committed_offset(
    committed: &TopicPartitionList,
    topic: &str,
    partition: i32,
) -> Option<i64> {
    committed
        .find_partition(topic, partition)
        .and_then(|e| match e.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        })
}

/// Exactly-once: why a task's local state cannot be trusted (`None`: it can). It can if its
/// recorded input position equals the group's committed offset for every input partition of the
/// task: then it reflects exactly the committed input. Ahead means it holds effects of input whose
/// transaction never committed (a crash); behind means it lost transactions (no fsync after a
/// power loss). It can also if it has no input position at all: then it holds nothing, or only
/// what restores wrote (a task processes input and punctuates only once restored, and the end of
/// its restore records the input position), which is a prefix of the committed changelog (read
/// `read_committed`, each batch in one LMDB transaction with the changelog offset it reaches), so
/// restoring on from its recorded changelog offsets gives the committed state: a restore cut
/// short (a revocation, a stop) goes on where it stopped instead of starting over.
fn untrusted_state(
    task: &Task,
    id: TaskId,
    committed: &TopicPartitionList,
) -> Result<Option<String>> {
    if task.state_path().is_none() {
        return Ok(None);
    }
    let pos = task.position()?;
    if task
        .source_topics()
        .all(|t| pos.input(t, id.partition).is_none())
    {
        return Ok(None);
    }
    for topic in task.source_topics() {
        let local = pos.input(topic, id.partition);
        let group = committed_offset(committed, topic, id.partition);
        if local != group {
            return Ok(Some(format!(
                "local state of `{topic}` partition {} is at input offset {local:?}, the group \
                 committed {group:?}",
                id.partition
            )));
        }
    }
    Ok(None)
}
