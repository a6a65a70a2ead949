//! SSL and SASL against the real broker's SASL_SSL listener: the word count runs over it; a
//! wrong password and an untrusted CA are clear start-up errors in bounded time; no password
//! ever shows up in an error or in anything logged (tracing at DEBUG, librdkafka's own debug
//! output included).
//!
//! This binary installs its own global `tracing` subscriber, writing into a buffer, before
//! anything else can: every log of every test in it is checked.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use kstreams::kafka::{App, AppConfig};
use kstreams_tests::*;

const DONE: Duration = Duration::from_secs(60);

/// Everything logged in this test binary, at DEBUG and above (also `log` records, e.g. of
/// rdkafka's default client context).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn captured() -> Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Captured::default();
        let writer = logs.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing_subscriber::filter::LevelFilter::DEBUG)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .try_init()
            .expect("this test binary installs the only global subscriber");
        logs
    })
    .clone()
}

/// Asserts that neither secret occurs in `text` (naming `what` and the secret's role only).
fn assert_no_secret(what: &str, text: &str, secrets: &[(&str, &str)]) {
    for (role, secret) in secrets {
        assert!(
            !text.contains(secret),
            "{what} contains the {role} password ({} bytes checked)",
            text.len()
        );
    }
}

/// `run()` must fail within `limit`; returns the error's text and how long it took.
async fn startup_error(app: App, limit: Duration) -> (String, Duration) {
    let began = Instant::now();
    let r = tokio::time::timeout(limit, app.run())
        .await
        .unwrap_or_else(|_| panic!("run must fail within {limit:?}"));
    (r.expect_err("run must fail").to_string(), began.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wordcount_runs_over_sasl_ssl() {
    let logs = captured();
    let s = sasl_ssl();
    let b = bootstrap();
    // Topics are created and checked by the test over PLAINTEXT; the app itself (consumer,
    // producer, restore consumer, and the admin client creating its changelog) uses SASL_SSL only.
    let t = WordCountTopics::create(&b, "sec-wc", 2).await;
    let lines = sample_lines(21, 500);
    produce_lines(&b, &t.input, 2, &lines);
    let state = tempfile::tempdir().expect("tempdir");
    let cfg = s
        .apply(config(&t.app_id, &b, state.path()), &s.password)
        .property("debug", "security");
    assert_no_secret(
        "Debug of the config",
        &format!("{cfg:?}"),
        &[("right", &s.password)],
    );
    let app = Arc::new(App::new(t.topology(), cfg).expect("app"));
    assert_eq!(app.bootstrap_servers(), s.bootstrap);
    let run = spawn(app.clone());
    t.wait_done(&b, DONE).await;
    app.shutdown_handle().shutdown();
    run.await.expect("join").expect("run");

    assert_eq!(
        last_counts(&read_all(&b, &t.output, 2)),
        independent_count(&lines)
    );
    let changelog = format!(
        "{}-{}-changelog",
        t.app_id,
        kstreams_examples::wordcount::STORE
    );
    assert!(
        total_end(&b, &changelog, 2) > 0,
        "the app's admin client created {changelog} over SASL_SSL and the app wrote to it"
    );
    let logged = logs.text();
    assert!(
        logged.contains(&format!("{}-kstreams#consumer", t.app_id)),
        "librdkafka's debug output of the app was not captured"
    );
    assert_no_secret("the log", &logged, &[("right", &s.password)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_a_clear_startup_error_and_no_password_is_logged() {
    let logs = captured();
    let s = sasl_ssl();
    let b = bootstrap();
    let t = WordCountTopics::create(&b, "sec-pw", 1).await;
    let wrong = unique("not-the-password");
    let state = tempfile::tempdir().expect("tempdir");
    let cfg = s
        .apply(config(&t.app_id, &b, state.path()), &wrong)
        .startup_timeout(Duration::from_secs(30))
        .property("debug", "security,broker,conf");
    let secrets = [("wrong", wrong.as_str()), ("right", s.password.as_str())];
    assert_no_secret("Debug of the config", &format!("{cfg:?}"), &secrets);
    let app = App::new(t.topology(), cfg).expect("app");
    let (err, took) = startup_error(app, Duration::from_secs(60)).await;

    assert!(
        err.contains(&format!(
            "cannot connect to the Kafka cluster at {}",
            s.bootstrap
        )) && err.contains("Authentication failed"),
        "{err}"
    );
    // Reported when the broker refuses, not when the 30 s start-up timeout ends.
    assert!(took < Duration::from_secs(15), "took {took:?}: {err}");
    assert_no_secret("the error", &err, &secrets);
    let logged = logs.text();
    // librdkafka's debug output of this app went through the log callback into the capture
    // (its configuration dump names the client id), so the check below is not vacuous.
    assert!(
        logged.contains(&format!("{}-kstreams", t.app_id)),
        "librdkafka's debug output of the app was not captured"
    );
    assert!(
        logged.contains("sasl.password"),
        "librdkafka's config dump was captured"
    );
    assert_no_secret("the log", &logged, &secrets);
}

/// A CA that did not sign the broker's certificate, made with the openssl CLI.
fn other_ca(dir: &Path) -> String {
    let ca = dir.join("other-ca.pem");
    let out = Command::new("openssl")
        .args(["req", "-x509", "-new", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=not the broker's CA", "-keyout"])
        .arg(dir.join("other-ca.key"))
        .arg("-out")
        .arg(&ca)
        .output()
        .expect("the openssl CLI");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ca.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_broker_certificate_is_a_clear_startup_error() {
    let logs = captured();
    let s = sasl_ssl();
    let b = bootstrap();
    let t = WordCountTopics::create(&b, "sec-ca", 1).await;
    let state = tempfile::tempdir().expect("tempdir");
    let wrong_ca = other_ca(state.path());
    // No ssl.ca.location (the system's CAs), then a CA that did not sign the broker's certificate.
    for ca in [None, Some(wrong_ca.as_str())] {
        let mut cfg = AppConfig::new(unique("sec-ca"))
            .bootstrap_servers(&s.bootstrap)
            .state_dir(state.path())
            .startup_timeout(Duration::from_secs(30))
            .handle_ctrl_c(false);
        for (k, v) in s.properties(&s.username, &s.password) {
            if k != "ssl.ca.location" {
                cfg = cfg.property(k, v);
            }
        }
        if let Some(ca) = ca {
            cfg = cfg.property("ssl.ca.location", ca);
        }
        let app = App::new(t.topology(), cfg).expect("app");
        let (err, took) = startup_error(app, Duration::from_secs(60)).await;
        assert!(
            err.contains(&format!(
                "cannot connect to the Kafka cluster at {}",
                s.bootstrap
            )) && err.contains("certificate verify failed"),
            "CA {ca:?}: {err}"
        );
        assert!(
            took < Duration::from_secs(15),
            "CA {ca:?}: took {took:?}: {err}"
        );
        assert_no_secret("the error", &err, &[("right", &s.password)]);
    }
    assert_no_secret("the log", &logs.text(), &[("right", &s.password)]);
}

#[test]
fn scram_sha_256_authenticates_the_test_user() {
    let _logs = captured();
    let s = sasl_ssl();
    let fetch = |password: &str, timeout: Duration| {
        let mut c = rdkafka::ClientConfig::new();
        c.set("bootstrap.servers", &s.bootstrap);
        for (k, v) in s.properties(&s.username, password) {
            c.set(k, v);
        }
        c.set("sasl.mechanism", "SCRAM-SHA-256");
        let consumer: rdkafka::consumer::BaseConsumer = c.create().expect("consumer");
        rdkafka::consumer::Consumer::fetch_metadata(&consumer, None, timeout).map(|_| ())
    };
    fetch(&s.password, Duration::from_secs(10)).expect("SCRAM-SHA-256 with the right password");
    let wrong = fetch("not-the-password", Duration::from_secs(3));
    assert!(wrong.is_err(), "a wrong SCRAM password");
}

/// librdkafka does not know the Java client's `sasl.jaas.config`: client creation rejects it,
/// and the error names the property but not its value (rdkafka's own error would print it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_secret_property_is_named_without_its_value() {
    let logs = captured();
    let s = sasl_ssl();
    let jaas = format!(
        "org.apache.kafka.common.security.plain.PlainLoginModule required \
         username=\"{}\" password=\"{}\";",
        s.username, s.password
    );
    let state = tempfile::tempdir().expect("tempdir");
    let cfg = AppConfig::new(unique("sec-jaas"))
        .bootstrap_servers(&s.bootstrap)
        .state_dir(state.path())
        .handle_ctrl_c(false)
        .property("security.protocol", "SASL_SSL")
        .property("sasl.mechanism", "PLAIN")
        .property("ssl.ca.location", s.ca_location.display().to_string())
        .property("sasl.jaas.config", &jaas);
    let topology = kstreams_examples::wordcount::topology("lines", "words", "counts").expect("t");
    let app = App::new(topology, cfg).expect("app");
    let (err, _) = startup_error(app, Duration::from_secs(30)).await;
    assert!(
        err.contains("creating the consumer") && err.contains("sasl.jaas.config"),
        "{err}"
    );
    assert_no_secret("the error", &err, &[("right", &s.password)]);
    assert_no_secret("the log", &logs.text(), &[("right", &s.password)]);
}
