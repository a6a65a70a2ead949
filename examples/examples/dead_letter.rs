//! Dead-letter handling on the embedded cluster: malformed JSON goes to a dead-letter topic.
//!
//! ```text
//! cargo run --example dead_letter
//! ```
//! Prints the topology, the converted readings and the dead letters (stdout); the warnings about
//! dead-lettered records go to stderr.

use kstreams_examples::dead_letter;

#[tokio::main]
async fn main() -> kstreams::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let mut stdout = std::io::stdout().lock();
    use std::io::Write as _;
    let _ = writeln!(stdout, "{}", dead_letter::topology()?.describe());
    let readings = [
        r#"{"sensor":"s1","celsius":21.5}"#,
        r#"{"sensor":"s2","celsius":"#,
        r#"{"sensor":"s1","celsius":-40}"#,
        "not json at all",
    ];
    let state = std::env::temp_dir().join(format!("kstreams-dead-letter-{}", std::process::id()));
    let outcome = dead_letter::run(&readings, &state).await;
    let _ = std::fs::remove_dir_all(&state);
    let outcome = outcome?;
    for line in outcome.converted {
        let _ = writeln!(stdout, "converted: {line}");
    }
    for (value, error) in outcome.dead_letters {
        let _ = writeln!(stdout, "dead letter: {value:?} ({error})");
    }
    Ok(())
}
