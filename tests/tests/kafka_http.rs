//! The HTTP server with two instances on the real broker (issue #16 §3): each serves the word
//! counts on its own listener and advertises it as its `application_server`; a word held by the
//! other instance is a `307` to it, which a client following redirects turns into the count;
//! after one instance stops and the group settles, the survivor answers every word itself.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use kstreams::http::Server;
use kstreams::kafka::App;
use kstreams_examples::wordcount::STORE;
use kstreams_tests::*;
use serde_json::{Value, json};

const DONE: Duration = Duration::from_secs(120);

struct Instance {
    app: Arc<App>,
    addr: String,
    run: tokio::task::JoinHandle<kstreams::Result<()>>,
    stop_serving: tokio::sync::oneshot::Sender<()>,
    served: tokio::task::JoinHandle<kstreams::Result<()>>,
}

async fn start(
    t: &WordCountTopics,
    b: &str,
    dir: &std::path::Path,
    restore_batch_records: usize,
) -> Instance {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let app = Arc::new(
        App::new(
            t.topology(),
            config(&t.app_id, b, dir)
                .application_server(&addr)
                .restore_batch_records(restore_batch_records),
        )
        .expect("app"),
    );
    let server = Server::new(&app)
        .store_by_name::<String, u64>(STORE)
        .expect("store");
    let (stop_serving, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(server.serve(listener, async {
        let _ = stopped.await;
    }));
    let run = spawn(app.clone());
    Instance {
        app,
        addr,
        run,
        stop_serving,
        served,
    }
}

impl Instance {
    async fn stop(self) {
        self.app.shutdown_handle().shutdown();
        self.run.await.expect("join").expect("run");
        let _ = self.stop_serving.send(());
        self.served.await.expect("join").expect("serve");
    }
}

async fn get(http: &reqwest::Client, url: &str) -> (u16, Option<String>, Value) {
    let r = http.get(url).send().await.expect("request");
    let status = r.status().as_u16();
    let location = r
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .map(str::to_owned);
    (status, location, r.json().await.expect("JSON"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_held_elsewhere_is_a_redirect_to_its_instance() {
    let b = bootstrap();
    let t = WordCountTopics::create(&b, "http", 4).await;
    let dirs = tempfile::tempdir().expect("tempdir");
    // A restores one changelog record per turn of its loop, so that taking over the other's
    // partitions (their state is only in the changelog) lasts long enough to be seen.
    let a = start(&t, &b, &dirs.path().join("a"), 1).await;
    let other = start(&t, &b, &dirs.path().join("b"), 10_000).await;
    let all: BTreeSet<(String, i32)> = (0..t.partitions)
        .flat_map(|p| [(t.input.clone(), p), (t.words.clone(), p)])
        .collect();
    wait_for(
        "both instances assigned, sharing the partitions",
        DONE,
        || {
            let (sa, sb) = (a.app.status(), other.app.status());
            !sa.assigned.is_empty()
                && !sb.assigned.is_empty()
                && sa.assigned.is_disjoint(&sb.assigned)
                && sa.assigned.len() + sb.assigned.len() == all.len()
                && group_state(&b, &t.app_id) == ("Stable".to_owned(), 2)
        },
    )
    .await;
    let lines = sample_lines(171, 300);
    produce_lines(&b, &t.input, t.partitions, &lines);
    t.wait_done(&b, DONE).await;
    let want = independent_count(&lines);

    let direct = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let following = reqwest::Client::new();
    let held_by_a = a.app.status().assigned;
    let mut redirected = 0;
    for (word, count) in &want {
        let partition = kstreams::partitioner::partition_for_key(word.as_bytes(), t.partitions);
        let here = held_by_a.contains(&(t.words.clone(), partition));
        let url = format!("http://{}/stores/{STORE}/keys/{word}", a.addr);
        let (status, location, body) = get(&direct, &url).await;
        if here {
            assert_eq!(
                (status, &body),
                (200, &json!({"key": word, "value": count}))
            );
        } else {
            redirected += 1;
            assert_eq!(status, 307, "{word}: {body}");
            // The same path on the other instance (a word's non-ASCII letters percent-encoded).
            let there = format!("http://{}/stores/{STORE}/keys/{word}", other.addr);
            let there = reqwest::Url::parse(&there).expect("url");
            assert_eq!(location.as_deref(), Some(there.as_str()), "{word}");
            assert_eq!(body["partition"], partition);
        }
        // A client that follows redirects gets the count from either instance.
        for addr in [&a.addr, &other.addr] {
            let url = format!("http://{addr}/stores/{STORE}/keys/{word}");
            let (status, _, body) = get(&following, &url).await;
            assert_eq!(
                (status, &body),
                (200, &json!({"key": word, "value": count}))
            );
        }
    }
    assert!(
        redirected > 0 && redirected < want.len(),
        "{redirected} of {}",
        want.len()
    );

    // The other instance stops; A takes its partitions over and restores them: a word of theirs
    // is a 503 saying so (with the lag) until it is restored, then its count.
    let theirs = want
        .iter()
        .find(|(w, _)| {
            let p = kstreams::partitioner::partition_for_key(w.as_bytes(), t.partitions);
            !held_by_a.contains(&(t.words.clone(), p))
        })
        .map(|(w, c)| (w.clone(), *c))
        .expect("a word of the other instance");
    other.stop().await;
    let url = format!("http://{}/stores/{STORE}/keys/{}", a.addr, theirs.0);
    let mut restoring = 0;
    let deadline = std::time::Instant::now() + DONE;
    loop {
        let (status, _, body) = get(&direct, &url).await;
        match status {
            200 => {
                assert_eq!(body, json!({"key": theirs.0, "value": theirs.1}));
                break;
            }
            503 if body["status"] == "restoring" => {
                assert!(body["lag"].as_u64().is_some(), "{body}");
                restoring += 1;
            }
            // Before the group moved the partition (still the other's, or nobody's yet).
            503 | 307 => {}
            _ => panic!("{status}: {body}"),
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never answered: {body}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(restoring > 0, "the restore was never seen");
    wait_for("A alone holds every partition", DONE, || {
        a.app.status().assigned == all && group_state(&b, &t.app_id) == ("Stable".to_owned(), 1)
    })
    .await;
    for (word, count) in &want {
        let url = format!("http://{}/stores/{STORE}/keys/{word}", a.addr);
        let (status, _, body) = get(&direct, &url).await;
        assert_eq!(
            (status, &body),
            (200, &json!({"key": word, "value": count}))
        );
    }
    a.stop().await;
}
