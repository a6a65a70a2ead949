//! A store that hits its size limit and a full disk (simulated with `RLIMIT_FSIZE`): the app
//! stops with a clear error naming the store, the task and the limit; after the cause is removed
//! a restart on the same state directory resumes and the counts come out right, so the state the
//! failure left behind was not corrupted.

use std::sync::Arc;
use std::time::Duration;

use kstreams::StoreSpec;
use kstreams::kafka::App;
use kstreams::store::{LmdbOptions, StateStores};
use kstreams_examples::wordcount::STORE;
use kstreams_tests::*;

const EXE: &str = env!("CARGO_BIN_EXE_wordcount_app");
const DONE: Duration = Duration::from_secs(60);

/// 15,000 lines, each with a word of its own and one of 100 shared words (150 times each): about
/// 5,000 distinct keys per partition of 3, some 130 KiB of LMDB pages per task.
fn many_keys() -> Vec<String> {
    (0..15_000)
        .map(|i| format!("key{i:05} shared{}", i % 100))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_over_its_size_limit_stops_clearly_and_a_larger_limit_resumes() {
    let b = bootstrap();
    let t = WordCountTopics::create(&b, "store-limit", 3).await;
    let lines = many_keys();
    let want = independent_count(&lines);
    produce_lines(&b, &t.input, 3, &lines);
    let state = tempfile::tempdir().expect("tempdir");

    let small = LmdbOptions {
        initial_map_size: 32 << 10,
        max_map_size: 64 << 10,
    };
    let app = Arc::new(
        App::new(
            t.topology(),
            config(&t.app_id, &b, state.path()).lmdb(small),
        )
        .expect("app"),
    );
    let run = spawn(app.clone());
    let err = tokio::time::timeout(DONE, run)
        .await
        .expect("the app stops by itself")
        .expect("join")
        .expect_err("the store cannot hold its keys");
    let msg = err.to_string();
    eprintln!("the error: {msg}");
    for part in [
        "store `word-counts` of task 1_",
        "maximum size of 65536 bytes",
        "LmdbOptions::max_map_size",
        "raise the maximum, then restart",
    ] {
        assert!(msg.contains(part), "`{part}` missing in: {msg}");
    }
    let words_end = end_offsets(&b, &t.words, 3);
    let committed = app.status().committed;
    assert!(
        words_end
            .iter()
            .any(|(tp, end)| committed.get(tp).is_none_or(|c| c < end)),
        "the words from the failed batch on are not committed: {committed:?} of {words_end:?}"
    );

    // Same state directory, the default limit: resumes where the commit left it.
    let app = Arc::new(App::new(t.topology(), config(&t.app_id, &b, state.path())).expect("app"));
    let run = spawn(app.clone());
    t.wait_done(&b, DONE).await;
    app.shutdown_handle().shutdown();
    run.await.expect("join").expect("run");
    let status = app.status();
    eprintln!("restarted: {status:?}");
    assert_eq!(
        status.restored_records, 0,
        "the local state the failure left behind was used as it was, not rebuilt"
    );
    // At-least-once stopped by an error commits what was done before the failed batch (outputs
    // acknowledged, state synced) and nothing of that batch, whose LMDB transaction aborted: no
    // input is processed twice, so the counts are exact, not only within at-least-once bounds.
    let out = read_all(&b, &t.output, 3);
    assert_eq!(last_counts(&out), want, "final counts equal the truth");
    assert_eq!(
        out.len() as u64,
        want.values().sum::<u64>(),
        "nothing was counted twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_the_process_clearly_and_a_restart_resumes_exactly() {
    let b = bootstrap();
    let t = WordCountTopics::create(&b, "full-disk", 3).await;
    let lines = many_keys();
    let want = independent_count(&lines);
    let words: u64 = want.values().sum();
    produce_lines(&b, &t.input, 3, &lines);
    let state = tempfile::tempdir().expect("tempdir");

    // Files of at most 128 KiB: the map (32 KiB at first) may double twice, the third growth's
    // `posix_fallocate` fails with EFBIG, as it would fail with ENOSPC on a full disk.
    let full = ProcessOptions {
        file_size_limit: Some(128 << 10),
        capture_stderr: true,
        ..ProcessOptions::default()
    }
    .env("KSTREAMS_TEST_LMDB_INITIAL_MAP_BYTES", 32 << 10);
    let app = AppProcess::start_with(EXE, &b, &t, state.path(), "eos", 500, &full);
    let (status, stderr) = app.wait_exit(DONE);
    assert_eq!(
        status.code(),
        Some(1),
        "an error exit, not a signal: {status}\n{stderr}"
    );
    eprintln!("stderr of the failed run:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for part in [
        "wordcount_app: the file size limit (RLIMIT_FSIZE",
        "store `word-counts` of task 1_",
        "the batch was not applied",
        "then restart",
    ] {
        assert!(stderr.contains(part), "`{part}` missing in:\n{stderr}");
    }
    let before = read_all_committed(&b, &t.output, 3).len() as u64;
    assert!(before < words, "the failure came before the end");

    // The environments the failure left behind open and read back (the one that hit the limit
    // too): every count is at most the truth, as a replay of part of the input gives.
    let mut read_back = 0;
    for entry in std::fs::read_dir(state.path().join(&t.app_id)).expect("app state dir") {
        let dir = entry.expect("dir entry").path();
        if !dir.join("data.mdb").exists() {
            continue;
        }
        let mut stores = StateStores::open(
            &dir,
            vec![StoreSpec::new::<String, u64>(STORE)],
            &LmdbOptions::default(),
        )
        .expect("reopen the environment");
        stores.position().expect("read the position");
        let counts: Vec<(String, u64)> = stores
            .transaction(|txn| txn.store::<String, u64>(STORE)?.iter()?.collect())
            .expect("read the counts");
        for (word, n) in &counts {
            assert!(
                want.get(word).is_some_and(|w| n <= w),
                "{}: `{word}` = {n}, the input has {:?}",
                dir.display(),
                want.get(word)
            );
        }
        read_back += counts.len();
    }
    assert!(read_back > 0, "some counts were stored before the failure");

    // Same state directory, no limit: resumes and counts exactly.
    let mut app = AppProcess::start(EXE, &b, &t, state.path(), "eos", 500);
    wait_exactly_once_done(&b, &t, words, DONE).await;
    assert!(!app.exited(), "the restarted app died");
    app.stop();
    assert_exactly_once_word_count(&b, &t, &want);
}
