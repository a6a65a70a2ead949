//! The embedded default: with no bootstrap servers, the app runs on librdkafka's mock cluster.

use std::sync::Arc;
use std::time::Duration;

use kstreams::kafka::{App, AppConfig, TopicSpec};
use kstreams_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn word_count_runs_on_the_embedded_cluster() {
    let id = unique("embedded");
    let (input, words, output) = (
        format!("{id}-lines"),
        format!("{id}-words"),
        format!("{id}-counts"),
    );
    let state = tempfile::tempdir().expect("tempdir");
    let config = AppConfig::new(&id)
        .state_dir(state.path())
        .commit_interval(Duration::from_millis(100))
        .handle_ctrl_c(false);
    let topology =
        kstreams_examples::wordcount::topology(&input, &words, &output).expect("topology");
    let app = Arc::new(App::new(topology, config).expect("app"));
    assert!(app.is_embedded());
    let b = app.bootstrap_servers().to_owned();
    app.create_topics(&[
        TopicSpec::new(&input, 2),
        TopicSpec::new(&words, 3),
        TopicSpec::new(&output, 3),
    ])
    .await
    .expect("topics");
    let lines = sample_lines(5, 2000);
    produce_lines(&b, &input, 2, &lines);
    let run = spawn(app.clone());
    let ends = end_offsets(&b, &input, 2);
    wait_for("lines committed", Duration::from_secs(120), || {
        committed_to(&app.status(), &ends)
    })
    .await;
    let ends = end_offsets(&b, &words, 3);
    wait_for("words committed", Duration::from_secs(120), || {
        committed_to(&app.status(), &ends)
    })
    .await;
    app.shutdown_handle().shutdown();
    run.await.expect("join").expect("run");
    let out = read_all(&b, &output, 3);
    assert_eq!(last_counts(&out), independent_count(&lines));
}
