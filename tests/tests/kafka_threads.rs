//! Processing threads (`AppConfig::num_threads`, issue #13 §2): each thread is a consumer of its
//! own in the group, the app's status and shutdown cover them all. Word count with 2 threads on
//! the real broker and on the embedded default. (Exactly-once with 2 threads and a SIGKILL:
//! `kafka_faults.rs`.)

use std::sync::Arc;
use std::time::Duration;

use kstreams::kafka::{App, AppConfig, TopicSpec};
use kstreams_tests::*;

const DONE: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn word_count_with_two_threads_on_the_broker() {
    let b = bootstrap();
    let t = WordCountTopics::create(&b, "threads", 4).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let app = Arc::new(
        App::new(
            t.topology(),
            config(&t.app_id, &b, dir.path()).num_threads(2),
        )
        .expect("app"),
    );
    let run = spawn(app.clone());
    // Both threads in the group, each with its assignment (the second one's join makes the
    // first one's rebalance, after up to a heartbeat).
    wait_for("two members in a stable group", DONE, || {
        app.status().rebalances >= 2
            && app.status().assigned.len() == 8
            && group_state(&b, &t.app_id) == ("Stable".to_owned(), 2)
    })
    .await;
    let lines = sample_lines(91, 2000);
    produce_lines(&b, &t.input, t.partitions, &lines);
    t.wait_done(&b, DONE).await;
    assert_eq!(group_state(&b, &t.app_id).1, 2);
    app.shutdown_handle().shutdown();
    run.await.expect("join").expect("run");
    assert!(!app.status().running);

    let out = read_all(&b, &t.output, t.partitions);
    assert_eq!(last_counts(&out), independent_count(&lines));
    let words: u64 = independent_count(&lines).values().sum();
    assert_eq!(out.len() as u64, words, "nothing processed twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn word_count_with_two_threads_on_the_embedded_cluster() {
    let id = unique("threads-embedded");
    let (input, words, output) = (
        format!("{id}-lines"),
        format!("{id}-words"),
        format!("{id}-counts"),
    );
    let state = tempfile::tempdir().expect("tempdir");
    let config = AppConfig::new(&id)
        .state_dir(state.path())
        .commit_interval(Duration::from_millis(100))
        .handle_ctrl_c(false)
        .num_threads(2);
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
    let run = spawn(app.clone());
    wait_for("both threads assigned", DONE, || {
        let s = app.status();
        s.rebalances >= 2 && s.assigned.len() == 5
    })
    .await;
    let lines = sample_lines(92, 2000);
    produce_lines(&b, &input, 2, &lines);
    for (topic, partitions) in [(&input, 2), (&words, 3)] {
        let ends = end_offsets(&b, topic, partitions);
        wait_for("input committed", DONE, || {
            committed_to(&app.status(), &ends)
        })
        .await;
    }
    app.shutdown_handle().shutdown();
    run.await.expect("join").expect("run");
    assert_eq!(
        last_counts(&read_all(&b, &output, 3)),
        independent_count(&lines)
    );
}
