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
        reply: mpsc::Sender<Result<()>>,
    },
    Stop,
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
    pub(crate) fn create_topic(&self, name: &str, partitions: i32) -> Result<()> {
        let (reply, rx) = mpsc::channel();
        self.0
            .send(Command::CreateTopic {
                name: name.to_owned(),
                partitions,
                reply,
            })
            .map_err(|_| Error::Runtime("the embedded cluster has stopped".into()))?;
        rx.recv()
            .map_err(|_| Error::Runtime("the embedded cluster has stopped".into()))?
    }
}

impl EmbeddedCluster {
    /// Starts a one-broker mock cluster whose groups rebalance without the initial 3 s delay.
    pub fn start() -> Result<Self> {
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
                        let _ = ready_tx.send(Err(Error::Kafka {
                            context: "starting the embedded mock cluster".into(),
                            source,
                        }));
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
                                rdkafka_sys::rd_kafka_mock_group_initial_rebalance_delay_ms(ptr, 0);
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
                while let Ok(Command::CreateTopic {
                    name,
                    partitions,
                    reply,
                }) = cmd_rx.recv()
                {
                    let result = match client.client().mock_cluster() {
                        Some(mock) => {
                            mock.create_topic(&name, partitions, 1)
                                .map_err(|source| Error::Kafka {
                                    context: format!(
                                        "creating topic `{name}` on the embedded cluster"
                                    ),
                                    source,
                                })
                        }
                        None => Err(Error::Runtime("the embedded cluster is gone".into())),
                    };
                    let _ = reply.send(result);
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
