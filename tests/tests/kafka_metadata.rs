//! Where is a key (issue #16 §2), on the real broker: two instances of one word count in one
//! process, each advertising its own `application_server`; every word's owner is found by both
//! instances alike (the instance the group assigned the word's partition to), and after one
//! instance stops and the group settles, every word points at the survivor.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use kstreams::kafka::{App, HostInfo};
use kstreams_examples::wordcount::STORE;
use kstreams_tests::*;

const DONE: Duration = Duration::from_secs(120);

/// Asks `app` where `word` lives, off the async runtime (the call blocks on the cluster).
async fn where_is(app: &Arc<App>, word: &str) -> kstreams::kafka::KeyMetadata {
    let (app, word) = (app.clone(), word.to_owned());
    tokio::task::spawn_blocking(move || app.queries().metadata_for_key(STORE, &word))
        .await
        .expect("join")
        .unwrap_or_else(|e| panic!("metadata_for_key: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_owner_is_found_before_and_after_one_instance_stops() {
    let b = bootstrap();
    let t = WordCountTopics::create(&b, "metadata", 4).await;
    let dirs = tempfile::tempdir().expect("tempdir");
    let (server_a, server_b) = (
        HostInfo::new("127.0.0.1", 18_081),
        HostInfo::new("127.0.0.1", 18_082),
    );
    let app = |dir: &str, server: &HostInfo| {
        Arc::new(
            App::new(
                t.topology(),
                config(&t.app_id, &b, &dirs.path().join(dir))
                    .application_server(server.to_string()),
            )
            .expect("app"),
        )
    };
    let (a, bb) = (app("a", &server_a), app("b", &server_b));
    let (run_a, run_b) = (spawn(a.clone()), spawn(bb.clone()));
    let all: BTreeSet<(String, i32)> = (0..t.partitions)
        .flat_map(|p| [(t.input.clone(), p), (t.words.clone(), p)])
        .collect();
    wait_for(
        "both instances assigned, sharing the partitions",
        DONE,
        || {
            let (sa, sb) = (a.status(), bb.status());
            !sa.assigned.is_empty()
                && !sb.assigned.is_empty()
                && sa.assigned.is_disjoint(&sb.assigned)
                && sa.assigned.len() + sb.assigned.len() == all.len()
                && group_state(&b, &t.app_id) == ("Stable".to_owned(), 2)
        },
    )
    .await;

    let lines = sample_lines(161, 400);
    produce_lines(&b, &t.input, t.partitions, &lines);
    t.wait_done(&b, DONE).await;
    let words = independent_count(&lines);
    let (sa, sb) = (a.status(), bb.status());
    let mut owners = BTreeSet::new();
    for word in words.keys() {
        let partition = kstreams::partitioner::partition_for_key(word.as_bytes(), t.partitions);
        let tp = (t.words.clone(), partition);
        let owner = if sa.assigned.contains(&tp) {
            &server_a
        } else {
            assert!(sb.assigned.contains(&tp), "{tp:?} is nobody's");
            &server_b
        };
        for (asker, server) in [(&a, &server_a), (&bb, &server_b)] {
            let m = where_is(asker, word).await;
            assert_eq!(m.partition, partition, "{word}");
            assert_eq!(m.active.as_ref(), Some(owner), "{word}, asked of {server}");
            assert_eq!(m.local, owner == server, "{word}, asked of {server}");
        }
        owners.insert(owner.clone());
    }
    assert_eq!(owners.len(), 2, "the words are spread over both instances");

    // A key type other than the store's, and a store the topology does not have, are errors.
    let e = a
        .queries()
        .metadata_for_key(STORE, &7u64)
        .expect_err("u64 key");
    assert!(e.to_string().contains("keys of type"), "{e}");
    let e = a
        .queries()
        .metadata_for_key("no-such-store", &"x".to_owned())
        .expect_err("no store");
    assert!(
        matches!(&e, kstreams::query::QueryError::UnknownStore(s) if s == "no-such-store"),
        "{e}"
    );

    // B stops (it leaves the group); once the group settles, A holds everything.
    bb.shutdown_handle().shutdown();
    run_b.await.expect("join").expect("run b");
    wait_for("A alone holds every partition", DONE, || {
        a.status().assigned == all && group_state(&b, &t.app_id) == ("Stable".to_owned(), 1)
    })
    .await;
    for word in words.keys() {
        // The cached answer is at most a second old; a rebalance A saw refreshes it at once.
        let m = where_is(&a, word).await;
        assert_eq!(m.active.as_ref(), Some(&server_a), "{word}");
        assert!(m.local, "{word}");
    }
    a.shutdown_handle().shutdown();
    run_a.await.expect("join").expect("run a");
}

/// The embedded mock cluster does not describe groups: a key this instance holds is still
/// answered (local, with its own address), one it does not hold is an error naming the group,
/// and neither waits for the cluster's timeout each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_embedded_cluster_local_keys_are_answered() {
    let id = unique("metadata-embedded");
    let (input, words, output) = (
        format!("{id}-lines"),
        format!("{id}-words"),
        format!("{id}-counts"),
    );
    let state = tempfile::tempdir().expect("tempdir");
    let server = HostInfo::new("127.0.0.1", 18_083);
    let config = kstreams::kafka::AppConfig::new(&id)
        .state_dir(state.path())
        .handle_ctrl_c(false)
        .application_server(server.to_string());
    let topology =
        kstreams_examples::wordcount::topology(&input, &words, &output).expect("topology");
    let app = Arc::new(App::new(topology, config).expect("app"));
    app.create_topics(&[
        kstreams::kafka::TopicSpec::new(&input, 2),
        kstreams::kafka::TopicSpec::new(&words, 2),
        kstreams::kafka::TopicSpec::new(&output, 2),
    ])
    .await
    .expect("topics");
    let queries = app.queries();
    // Before the app runs nothing is local, and the group cannot be described.
    let began = std::time::Instant::now();
    let e = tokio::task::spawn_blocking({
        let q = queries.clone();
        move || q.metadata_for_key(STORE, &"kafka".to_owned())
    })
    .await
    .expect("join")
    .expect_err("nothing local, no group description");
    assert!(
        e.to_string()
            .contains(&format!("describing consumer group `{id}`")),
        "{e}"
    );
    let first = began.elapsed();
    let run = spawn(app.clone());
    wait_for("every partition assigned", DONE, || {
        app.status().assigned.len() == 4
    })
    .await;
    let began = std::time::Instant::now();
    for word in ["kafka", "streams", "lmdb"] {
        let m = where_is(&app, word).await;
        assert!(m.local, "{word}");
        assert_eq!(m.active.as_ref(), Some(&server), "{word}");
        assert_eq!(
            m.partition,
            kstreams::partitioner::partition_for_key(word.as_bytes(), 2)
        );
    }
    let three = began.elapsed();
    assert!(
        first < Duration::from_secs(4) && three < Duration::from_secs(4),
        "the cluster's timeout was waited for: {first:?}, then {three:?} for three keys"
    );
    app.shutdown_handle().shutdown();
    run.await.expect("join").expect("run");
}
