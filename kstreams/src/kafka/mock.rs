//! The embedded cluster: librdkafka's in-process mock cluster, for running without a broker.
//!
//! Owns: [`EmbeddedCluster`]. The mock cluster is not `Send`, so it lives on a dedicated thread for
//! as long as the handle lives; the handle (which is `Send`) only knows its bootstrap address and
//! how to stop it. Limits of librdkafka 2.12's mock: a partition keeps about 5 MiB or 100,000
//! records before its low watermark moves, and transactions are accepted but not applied.

use std::sync::mpsc;
use std::thread::JoinHandle;

use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, Producer};

use crate::error::{Error, Result};

/// librdkafka's in-process mock cluster, kept on its own thread.
#[derive(Debug)]
pub struct EmbeddedCluster {
    bootstrap: String,
    commands: MockCommands,
    thread: Option<JoinHandle<()>>,
}

enum Command {
    CreateTopic {
        name: String,
        partitions: i32,
        reply: Reply,
    },
    /// Test hook: the cluster's thread waits until the sender is dropped or sends.
    #[cfg(test)]
    Hold(mpsc::Receiver<()>),
    Stop,
}

/// Where the mock cluster's thread sends a command's result: a blocking caller waits on a
/// channel, an async one on a oneshot (so that it never blocks its executor).
enum Reply {
    Blocking(mpsc::Sender<Result<()>>),
    Async(tokio::sync::oneshot::Sender<Result<()>>),
}

impl Reply {
    fn send(self, result: Result<()>) {
        // The caller may have gone (a dropped future): nobody is left to tell.
        match self {
            Reply::Blocking(tx) => {
                let _ = tx.send(result);
            }
            Reply::Async(tx) => {
                let _ = tx.send(result);
            }
        }
    }
}

fn stopped() -> Error {
    Error::Runtime("the embedded cluster has stopped".into())
}

/// A `Send` handle to the mock cluster's thread, for creating topics (the mock has no
/// CreateTopics API).
#[derive(Clone)]
pub(crate) struct MockCommands(mpsc::Sender<Command>);

impl std::fmt::Debug for MockCommands {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MockCommands")
    }
}

impl MockCommands {
    /// Creates a topic on the mock cluster (an error if it exists with another partition count is
    /// left to the caller's metadata check).
    /// Blocks the calling thread until the cluster's thread answered: not for async code (see
    /// [`create_topic_async`](Self::create_topic_async)).
    pub(crate) fn create_topic(&self, name: &str, partitions: i32) -> Result<()> {
        let (reply, rx) = mpsc::channel();
        self.command(name, partitions, Reply::Blocking(reply))?;
        rx.recv().map_err(|_| stopped())?
    }

    /// [`create_topic`](Self::create_topic) for async callers: waits without blocking the
    /// executor's thread.
    pub(crate) async fn create_topic_async(&self, name: &str, partitions: i32) -> Result<()> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.command(name, partitions, Reply::Async(reply))?;
        rx.await.map_err(|_| stopped())?
    }

    fn command(&self, name: &str, partitions: i32, reply: Reply) -> Result<()> {
        self.0
            .send(Command::CreateTopic {
                name: name.to_owned(),
                partitions,
                reply,
            })
            .map_err(|_| stopped())
    }
}

impl EmbeddedCluster {
    /// Starts a one-broker mock cluster whose groups rebalance without the initial 3 s delay.
    pub fn start() -> Result<Self> {
        Self::start_for_threads(1)
    }

    /// Starts the mock cluster for an app of `threads` processing threads. With more than one,
    /// a group's first rebalance keeps the initial 3 s delay, so that every thread's consumer
    /// joins the first generation: the mock cluster refuses offset commits while a group
    /// rebalances (also the one before a revocation, which a broker accepts), so a later
    /// rebalance would make the revoked partitions' records be processed again.
    pub(crate) fn start_for_threads(threads: usize) -> Result<Self> {
        let initial_rebalance_delay_ms = if threads > 1 { 3000 } else { 0 };
        let (ready_tx, ready_rx) = mpsc::channel::<Result<String>>();
        let (cmd_tx, cmd_rx) = mpsc::channel::<Command>();
        let thread = std::thread::Builder::new()
            .name("kstreams-mock-cluster".into())
            .spawn(move || {
                // The mock cluster belongs to this client handle and dies with it.
                let client: BaseProducer = match ClientConfig::new()
                    .set("test.mock.num.brokers", "1")
                    .set("log_level", "3")
                    .create()
                {
                    Ok(c) => c,
                    Err(source) => {
                        let _ = ready_tx.send(Err(Error::kafka(
                            "starting the embedded mock cluster",
                            source,
                        )));
                        return;
                    }
                };
                let bootstrap = match client.client().mock_cluster() {
                    Some(mock) => {
                        // SAFETY: the client is alive for the whole call and owns the mock
                        // cluster; the pointer is only used here, on the cluster's thread.
                        unsafe {
                            let ptr = rdkafka_sys::rd_kafka_handle_mock_cluster(
                                client.client().native_ptr(),
                            );
                            if !ptr.is_null() {
                                rdkafka_sys::rd_kafka_mock_group_initial_rebalance_delay_ms(
                                    ptr,
                                    initial_rebalance_delay_ms,
                                );
                            }
                        }
                        mock.bootstrap_servers()
                    }
                    None => {
                        let _ = ready_tx.send(Err(Error::Runtime(
                            "librdkafka did not create the embedded mock cluster".into(),
                        )));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(bootstrap));
                // Serve commands until the handle is dropped.
                loop {
                    let (name, partitions, reply) = match cmd_rx.recv() {
                        Ok(Command::CreateTopic {
                            name,
                            partitions,
                            reply,
                        }) => (name, partitions, reply),
                        #[cfg(test)]
                        Ok(Command::Hold(until)) => {
                            let _ = until.recv();
                            continue;
                        }
                        Ok(Command::Stop) | Err(_) => break,
                    };
                    let result = match client.client().mock_cluster() {
                        Some(mock) => mock.create_topic(&name, partitions, 1).map_err(|source| {
                            Error::kafka(
                                format!("creating topic `{name}` on the embedded cluster"),
                                source,
                            )
                        }),
                        None => Err(Error::Runtime("the embedded cluster is gone".into())),
                    };
                    reply.send(result);
                }
                let _ = client.flush(std::time::Duration::from_millis(100));
                drop(client);
            })
            .map_err(|e| Error::Io {
                context: "spawning the embedded cluster thread".into(),
                source: e,
            })?;
        let bootstrap = ready_rx
            .recv()
            .map_err(|_| Error::Runtime("the embedded cluster thread died at start-up".into()))??;
        tracing::info!(%bootstrap, "no bootstrap servers configured: started librdkafka's embedded mock cluster (in-process, keeps ~100,000 records or ~5 MiB per partition)");
        Ok(EmbeddedCluster {
            bootstrap,
            commands: MockCommands(cmd_tx),
            thread: Some(thread),
        })
    }

    /// The mock cluster's bootstrap address.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    /// Creates a topic with this many partitions (the mock cluster has no CreateTopics API).
    pub fn create_topic(&self, name: &str, partitions: i32) -> Result<()> {
        self.commands.create_topic(name, partitions)
    }

    pub(crate) fn commands(&self) -> MockCommands {
        self.commands.clone()
    }
}

impl Drop for EmbeddedCluster {
    fn drop(&mut self) {
        let _ = self.commands.0.send(Command::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// `App::create_topics` on the embedded cluster waits without blocking its executor: on a
    /// current-thread runtime, the task that lets the cluster's thread go on must run while
    /// `create_topics` waits. (Before, `create_topics` blocked the only thread on a channel, so
    /// that task never ran and the runtime hung.)
    #[test]
    fn create_topics_does_not_block_a_current_thread_runtime() {
        let app = {
            let mut t = crate::Topology::builder();
            let s = t.source::<String, String>("in");
            t.sink("out", &s);
            crate::kafka::App::new(
                t.build().expect("topology"),
                crate::kafka::AppConfig::new("create-topics-async").handle_ctrl_c(false),
            )
            .expect("app on the embedded cluster")
        };
        let commands = app.embedded.as_ref().map(EmbeddedCluster::commands);
        let Some(commands) = commands else {
            panic!("no embedded cluster");
        };
        let (release, hold) = mpsc::channel();
        commands.0.send(Command::Hold(hold)).expect("hold");
        let (done_tx, done_rx) = mpsc::channel();
        let runner = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let result = rt.block_on(async {
                let releaser = tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let _ = release.send(());
                });
                let created = app
                    .create_topics(&[crate::kafka::TopicSpec::new("in", 2)])
                    .await;
                let _ = releaser.await;
                created
            });
            let _ = done_tx.send(result);
            app
        });
        let result = done_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("create_topics blocked the executor: the releasing task never ran");
        result.expect("topic created");
        drop(runner.join().expect("runner"));
    }
}
