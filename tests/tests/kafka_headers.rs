//! Header names that are not UTF-8, on a real broker (issue #12, point 2): rdkafka 0.39's own
//! header accessor panics on them (`to_str().unwrap()`), which stopped the processing thread.
//! kstreams reads them as bytes: the records are processed, a processor sees the exact bytes
//! (`Headers::iter_raw`), and the outputs carry the names in their lossy UTF-8 form.

use std::sync::Arc;
use std::time::Duration;

use kstreams::kafka::App;
use kstreams::{Record, Topology, processor};
use kstreams_tests::*;
use rdkafka::ClientConfig;
use rdkafka::message::{BorrowedHeaders, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

const DONE: Duration = Duration::from_secs(120);

/// Adds a header whose name is any bytes: rdkafka's `OwnedHeaders::insert` takes a `&str` name,
/// so this goes through librdkafka's C API.
fn add_raw_header(headers: OwnedHeaders, name: &[u8], value: Option<&[u8]>) -> OwnedHeaders {
    let (vp, vs) = match value {
        Some(v) => (v.as_ptr().cast(), v.len() as isize),
        None => (std::ptr::null(), 0),
    };
    // SAFETY: rdkafka's `BorrowedHeaders` is a zero-sized view whose address is the native
    // header list (`OwnedHeaders::as_borrowed` casts the list pointer the same way); the list is
    // owned by `headers`, alive and not shared during the call; librdkafka copies name and value.
    let err = unsafe {
        let list = headers.as_borrowed() as *const BorrowedHeaders
            as *mut rdkafka::bindings::rd_kafka_headers_t;
        rdkafka::bindings::rd_kafka_header_add(
            list,
            name.as_ptr().cast(),
            name.len() as isize,
            vp,
            vs,
        )
    };
    assert_eq!(
        err,
        rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
    );
    headers
}

/// `name=value` of every header, names and values as hex, `;`-separated.
fn describe(h: &kstreams::Headers) -> String {
    let hex = |b: &[u8]| b.iter().map(|b| format!("{b:02x}")).collect::<String>();
    h.iter_raw()
        .map(|(n, v)| format!("{}={}", hex(n), v.map_or("null".to_owned(), hex)))
        .collect::<Vec<_>>()
        .join(";")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_names_that_are_not_utf8_are_processed_not_a_panic() {
    let b = bootstrap();
    let app_id = unique("headers");
    let (input, output) = (format!("{app_id}-in"), format!("{app_id}-out"));
    create_topics(&b, &[(&input, 1), (&output, 1)]).await;
    let records: [(&str, Vec<(&[u8], Option<&[u8]>)>); 3] = [
        (
            "a",
            vec![(&[0xff, 0xfe, b'n'], Some(b"x")), (b"ok", Some(b"y"))],
        ),
        ("b", vec![(&[0xc3, 0x28], None)]),
        ("c", vec![]),
    ];
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &b)
        .create()
        .expect("producer");
    for (key, headers) in &records {
        let mut owned = OwnedHeaders::new();
        for (n, v) in headers {
            owned = add_raw_header(owned, n, *v);
        }
        let r = BaseRecord::<str, str>::to(&input)
            .key(*key)
            .payload(*key)
            .partition(0)
            .headers(owned);
        producer.send(r).map_err(|(e, _)| e).expect("send");
    }
    producer.flush(Duration::from_secs(60)).expect("flush");

    let mut t = Topology::builder();
    let lines = t.source::<String, String>(&input);
    let seen = t.add(
        processor::map(|r: &Record<String, String>| r.derive(r.key.clone(), describe(&r.headers))),
        &lines,
    );
    t.sink(&output, &seen);
    let state = tempfile::tempdir().expect("tempdir");
    let app = Arc::new(
        App::new(
            t.build().expect("topology"),
            config(&app_id, &b, state.path()),
        )
        .expect("app"),
    );
    let run = spawn(app.clone());
    let ends = end_offsets(&b, &input, 1);
    wait_for("input committed", DONE, || {
        run.is_finished() || committed_to(&app.status(), &ends)
    })
    .await;
    app.shutdown_handle().shutdown();
    run.await
        .expect("join")
        .expect("the app ran without a panic");
    assert_eq!(app.status().processed_records, 3);

    let out = read_all_full(&b, &output, 1);
    let values: Vec<String> = out
        .iter()
        .map(|(_, _, _, v, _, _)| String::from_utf8(v.clone().unwrap_or_default()).expect("utf-8"))
        .collect();
    assert_eq!(
        values,
        ["fffe6e=78;6f6b=79", "c328=null", ""],
        "the processor saw every name's exact bytes"
    );
    let names: Vec<Vec<&str>> = out
        .iter()
        .map(|(_, _, _, _, _, h)| h.iter().map(|(n, _)| n.as_str()).collect())
        .collect();
    assert_eq!(
        names,
        [
            vec!["\u{fffd}\u{fffd}n", "ok"],
            vec!["\u{fffd}("],
            Vec::<&str>::new()
        ],
        "outputs carry the names in lossy UTF-8"
    );
}
