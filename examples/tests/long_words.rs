//! The `wordcount` example's topology on a text holding one 5,000-character word (issue #12: a
//! store key past LMDB's 511-byte limit stopped the app for good).

use kstreams::Record;
use kstreams::testing::TopologyTestDriver;
use kstreams_examples::wordcount::{STORE, topology};

#[test]
fn the_wordcount_topology_counts_a_word_of_5000_characters() -> kstreams::Result<()> {
    let long = "y".repeat(5000);
    let mut driver = TopologyTestDriver::new(topology("lines", "words", "counts")?)?;
    driver.pipe_batch(
        "lines",
        [
            Record::new((), format!("a {long} b")),
            Record::new((), format!("{long}!")),
        ],
    )?;
    let last = driver
        .read_output::<String, u64>("counts")?
        .into_iter()
        .filter(|r| r.key == long)
        .map(|r| r.value)
        .max();
    assert_eq!(last, Some(2));
    let stored = driver.store::<String, u64>(STORE)?;
    assert!(stored.contains(&(long, 2)), "the store holds the long word");
    Ok(())
}
