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

async fn start(t: &WordCountTopics, b: &str, dir: &std::path::Path) -> Instance {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let app = Arc::new(
        App::new(
            t.topology(),
            config(&t.app_id, b, dir).application_server(&addr),
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
    let a = start(&t, &b, &dirs.path().join("a")).await;
    let other = start(&t, &b, &dirs.path().join("b")).await;
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
            assert_eq!(
                location,
                Some(format!("http://{}/stores/{STORE}/keys/{word}", other.addr)),
                "{word}"
            );
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

    // The other instance stops; once A holds every partition it answers every word itself.
    other.stop().await;
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
