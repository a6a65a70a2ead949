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

/// How long topics just created may take to appear in the cluster's metadata.
const TOPICS_VISIBLE: Duration = Duration::from_secs(30);

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
    Ok(prepare(topology, config, partitions, extra).await?.run())
}

/// An app whose topics exist, not running yet: its client can produce input the app will find
/// all there when it starts ([`Prepared::run`]), as the `join` example needs (both of its inputs
/// in before it processes either).
#[derive(Debug)]
pub struct Prepared {
    /// The client of the app's topics.
    pub client: AppClient,
}

/// [`start`]'s first half: creates the topics (as [`start`] does) and waits until the cluster
/// shows them, without running the app.
pub async fn prepare(
    topology: Topology,
    config: AppConfig,
    partitions: i32,
    extra: &[TopicSpec],
) -> Result<Prepared> {
    let app = Arc::new(App::new(topology, config.handle_ctrl_c(false))?);
    let client = AppClient::new(&app)?;
    client.create_app_topics(partitions).await?;
    if !extra.is_empty() {
        // An empty list is an invalid request to a real broker.
        client.create_topics(extra).await?;
    }
    // A real broker may answer a metadata request without a topic it has just created, and the
    // app fails at start-up on a source topic it cannot see: wait until the client sees them
    // all (its check of the source topics' ends fails while one is unknown).
    let began = std::time::Instant::now();
    while let Err(e) = client.wait_until_processed(Duration::ZERO).await {
        if began.elapsed() > TOPICS_VISIBLE {
            return Err(e);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(Prepared { client })
}

impl Prepared {
    /// Runs the app in a tokio task.
    pub fn run(self) -> Running {
        let app = self.client.app().clone();
        let task = tokio::spawn(async move { app.run().await });
        Running {
            client: self.client,
            task: Some(task),
        }
    }
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

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use kstreams::{Emit, Record, processor};

    use super::*;

    /// Fails on every record (the default policy for processing errors stops the app).
    #[processor]
    fn reject(r: &Record<String, String>, _out: &mut Emit<String, String>) -> Result<()> {
        Err(Error::processing(format!("rejected `{}`", r.value)))
    }

    /// An app that stops on an error is reported with that error at once, not as input still
    /// unprocessed after [`TIMEOUT`].
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_app_that_fails_is_reported_with_its_error_at_once() -> Result<()> {
        let mut t = Topology::builder();
        let input = t.source::<String, String>("glue-in");
        let out = t.add(reject, &input);
        t.sink("glue-out", &out);
        let state = tempfile::tempdir().map_err(|e| Error::Runtime(e.to_string()))?;
        let config = AppConfig::new("embedded-glue-test").state_dir(state.path());
        let mut app = start(t.build()?, config, 1, &[]).await?;
        let began = Instant::now();
        app.client
            .produce("glue-in", [Record::new("k".to_owned(), "boom".to_owned())])
            .await?;
        let err = app.processed().await.expect_err("the app failed");
        assert!(err.to_string().contains("rejected `boom`"), "{err}");
        assert!(began.elapsed() < TIMEOUT / 2, "{:?}", began.elapsed());
        // The app's end was reported once; stopping it again is no error.
        assert!(app.processed().await.is_err());
        app.stop().await
    }
}
