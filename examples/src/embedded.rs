//! The examples' glue around [`AppClient`]: start an app with its topics in a tokio task, wait
//! until it processed its input (or stopped), stop it.
//!
//! Everything else (producing typed input, reading typed output) the examples do with the
//! [`AppClient`] itself, as a user trying their own app would. The cluster is the embedded one
//! unless the config names bootstrap servers.

use std::sync::Arc;
use std::time::Duration;

use kstreams::kafka::{App, AppClient, AppConfig, TopicSpec};
use kstreams::{Error, Result, Topology};
use tokio::task::JoinHandle;

/// How long an example's input may take to be processed.
pub const TIMEOUT: Duration = Duration::from_secs(120);

/// An app running in a tokio task, with a client of its topics. Dropping it asks the app to stop.
#[derive(Debug)]
pub struct Running {
    /// The client of the app's topics.
    pub client: AppClient,
    /// The app's task, until it ended.
    task: Option<JoinHandle<Result<()>>>,
}

/// Creates every topic `topology` reads or writes with `partitions` partitions, and `extra`
/// topics (e.g. a dead-letter topic), then runs the app (`config`, Ctrl-C not handled).
pub async fn start(
    topology: Topology,
    config: AppConfig,
    partitions: i32,
    extra: &[TopicSpec],
) -> Result<Running> {
    let app = Arc::new(App::new(topology, config.handle_ctrl_c(false))?);
    let client = AppClient::new(&app)?;
    client.create_app_topics(partitions).await?;
    if !extra.is_empty() {
        // An empty list is an invalid request to a real broker.
        client.create_topics(extra).await?;
    }
    let task = tokio::spawn(async move { app.run().await });
    Ok(Running {
        client,
        task: Some(task),
    })
}

impl Running {
    /// Waits until the app processed and committed all its input ([`TIMEOUT`] at most); an
    /// error at once if the app stopped first.
    pub async fn processed(&mut self) -> Result<()> {
        self.processed_within(TIMEOUT).await
    }

    /// [`processed`](Self::processed), waiting `timeout` at most.
    pub async fn processed_within(&mut self, timeout: Duration) -> Result<()> {
        let Some(task) = self.task.as_mut() else {
            return Err(stopped());
        };
        tokio::select! {
            done = self.client.wait_until_processed(timeout) => done,
            ended = task => {
                self.task = None;
                joined(ended)?;
                Err(stopped())
            }
        }
    }

    /// Stops the app gracefully (outputs flushed, offsets committed) and returns how its run
    /// ended. The client stays usable: the app, and the embedded cluster, live as long as it.
    pub async fn stop(&mut self) -> Result<()> {
        self.client.app().shutdown_handle().shutdown();
        match self.task.take() {
            Some(task) => joined(task.await),
            None => Ok(()),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.client.app().shutdown_handle().shutdown();
    }
}

fn stopped() -> Error {
    Error::Runtime("the app stopped before it processed its input".into())
}

fn joined(ended: std::result::Result<Result<()>, tokio::task::JoinError>) -> Result<()> {
    ended.map_err(|e| Error::Runtime(format!("the app's task failed: {e}")))?
}
