//! Dead-letter handling: JSON readings, some of them malformed.
//!
//! The source deserializes values as JSON [`Reading`]s. With
//! `AppConfig::on_deserialization_error(OnBadRecord::DeadLetter { .. })` a record that does not
//! parse is not fatal: its original bytes go to the dead-letter topic with the error and its
//! origin in headers (`kstreams.error.*`), it is counted in `kstreams_dead_lettered_records_total`,
//! and processing goes on.

use kstreams::OnBadRecord;
use kstreams::kafka::{AppConfig, TopicSpec};
use kstreams::serde::{Json, StringSerde};
use kstreams::{Emit, Record, Result, Topology, processor};

use crate::embedded;

/// A sensor reading, as JSON: `{"sensor":"s1","celsius":21.5}`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Reading {
    /// The sensor's name.
    pub sensor: String,
    /// The temperature.
    pub celsius: f64,
}

/// The topic malformed readings go to.
pub const DEAD_LETTERS: &str = "readings-dead-letters";

/// Converts a reading to Fahrenheit, as text.
#[processor]
pub fn to_fahrenheit(r: &Record<String, Reading>, out: &mut Emit<String, String>) {
    let f = r.value.celsius * 9.0 / 5.0 + 32.0;
    out.forward(r.derive(r.value.sensor.clone(), format!("{f:.1}F")));
}

/// `readings` (JSON) → [`to_fahrenheit`] → `fahrenheit`; malformed records → [`DEAD_LETTERS`].
pub fn topology() -> Result<Topology> {
    let mut t = Topology::builder();
    let readings = t.source_with("readings", StringSerde, Json::<Reading>::new());
    let f = t.add(to_fahrenheit, &readings);
    t.sink("fahrenheit", &f);
    Ok(t.build()?)
}

/// What the example produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// `sensor: value` of the converted readings, in order.
    pub converted: Vec<String>,
    /// The dead-lettered values with the error message header.
    pub dead_letters: Vec<(String, String)>,
}

/// Runs the example on the embedded cluster over raw `readings` values (one partition, so the
/// output keeps the input order).
pub async fn run(readings: &[&str], state_dir: &std::path::Path) -> Result<Outcome> {
    let config = AppConfig::new("dead-letter-example")
        .state_dir(state_dir)
        .on_deserialization_error(OnBadRecord::DeadLetter {
            topic: DEAD_LETTERS.into(),
        });
    let mut app =
        embedded::start(topology()?, config, 1, &[TopicSpec::new(DEAD_LETTERS, 1)]).await?;
    // Raw bytes: the source's JSON serde would not write the malformed ones.
    let readings = readings
        .iter()
        .map(|v| Record::new(Some(Vec::new()), Some(v.as_bytes().to_vec())));
    app.client.produce_raw("readings", readings).await?;
    app.processed().await?;
    app.stop().await?;
    let converted = app
        .client
        .read::<String, String>("fahrenheit")
        .await?
        .into_iter()
        .map(|r| format!("{}: {}", r.key, r.value))
        .collect();
    let text =
        |bytes: Option<&[u8]>| String::from_utf8_lossy(bytes.unwrap_or_default()).into_owned();
    let dead_letters = app
        .client
        .read::<Option<Vec<u8>>, Option<Vec<u8>>>(DEAD_LETTERS)
        .await?
        .into_iter()
        .map(|r| {
            let message = text(r.headers.last("kstreams.error.message").flatten());
            (text(r.value.as_deref()), message)
        })
        .collect();
    Ok(Outcome {
        converted,
        dead_letters,
    })
}
