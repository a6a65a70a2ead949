//! Table-table joins through the test driver (Kafka Streams' `KTableKTableInnerJoin`,
//! `KTableKTableLeftJoin` / `KTableKTableRightJoin`, `KTableKTableOuterJoin`): what every change
//! of either side emits, deletes (tombstones) included, and split invariance.

use kstreams::join::JoinKind;
use kstreams::testing::{SplitCheck, SplitInput, TopologyTestDriver};
use kstreams::{Record, Result, Topology};

#[kstreams::store(name = "left-side")]
type LeftSide = kstreams::KeyValue<String, u64>;

#[kstreams::store(name = "right-side")]
type RightSide = kstreams::KeyValue<String, String>;

fn topology(kind: JoinKind) -> Result<Topology> {
    let mut t = Topology::builder();
    let l = t.table::<LeftSide<'static>>("left");
    let r = t.table::<RightSide<'static>>("right");
    let rows = t.join_tables(
        "rows",
        &l,
        &r,
        kind,
        |l: Option<&u64>, r: Option<&String>| {
            format!(
                "{}|{}",
                l.map_or("-".to_string(), u64::to_string),
                r.map_or("-", |s| s.as_str())
            )
        },
    );
    t.sink("rows", &rows);
    Ok(t.build()?)
}

fn left(key: &str, v: Option<u64>, ts: i64) -> Record<String, Option<u64>> {
    Record::new(key.to_string(), v).with_timestamp(ts)
}

fn right(key: &str, v: Option<&str>, ts: i64) -> Record<String, Option<String>> {
    Record::new(key.to_string(), v.map(str::to_string)).with_timestamp(ts)
}

/// Both tables' changes, one at a time, in timestamp order; what `kind` emits.
fn run(kind: JoinKind) -> Result<Vec<(String, Option<String>, i64)>> {
    let mut d = TopologyTestDriver::new(topology(kind)?)?;
    d.append_batch("left", [left("a", Some(1), 1), left("a", Some(2), 3)])?;
    d.append_batch(
        "right",
        [right("a", Some("x"), 2), right("b", Some("y"), 4)],
    )?;
    d.append_batch("right", [right("a", None, 5)])?;
    d.append_batch("left", [left("a", None, 6), left("b", Some(3), 7)])?;
    d.append_batch("right", [right("b", None, 8)])?;
    d.process()?;
    Ok(d.read_output::<String, Option<String>>("rows")?
        .into_iter()
        .map(|r| (r.key, r.value, r.timestamp))
        .collect())
}

fn row(key: &str, v: Option<&str>, ts: i64) -> (String, Option<String>, i64) {
    (key.to_string(), v.map(str::to_string), ts)
}

#[test]
fn inner_join_emits_rows_of_keys_on_both_sides_and_a_tombstone_when_one_goes() -> Result<()> {
    assert_eq!(
        run(JoinKind::Inner)?,
        [
            row("a", Some("1|x"), 2),
            row("a", Some("2|x"), 3),
            row("a", None, 5),
            row("b", Some("3|y"), 7),
            row("b", None, 8),
        ]
    );
    Ok(())
}

#[test]
fn left_join_emits_every_left_row_and_a_tombstone_only_when_the_left_goes() -> Result<()> {
    assert_eq!(
        run(JoinKind::Left)?,
        [
            row("a", Some("1|-"), 1),
            row("a", Some("1|x"), 2),
            row("a", Some("2|x"), 3),
            row("a", Some("2|-"), 5),
            row("a", None, 6),
            row("b", Some("3|y"), 7),
            row("b", Some("3|-"), 8),
        ]
    );
    Ok(())
}

#[test]
fn outer_join_emits_every_row_and_a_tombstone_when_both_sides_are_gone() -> Result<()> {
    assert_eq!(
        run(JoinKind::Outer)?,
        [
            row("a", Some("1|-"), 1),
            row("a", Some("1|x"), 2),
            row("a", Some("2|x"), 3),
            row("b", Some("-|y"), 4),
            row("a", Some("2|-"), 5),
            row("a", None, 6),
            row("b", Some("3|y"), 7),
            row("b", Some("3|-"), 8),
        ]
    );
    Ok(())
}

#[test]
fn batch_boundaries_do_not_change_a_table_table_join() -> Result<()> {
    let ls = (0..80_i64).map(|i| {
        left(
            &format!("k{}", i % 6),
            (i % 5 != 4).then_some(i as u64),
            i * 3,
        )
    });
    let rs = (0..80_i64).map(|i| {
        right(
            &format!("k{}", i % 8),
            (i % 4 != 3).then(|| format!("r{i}")).as_deref(),
            i * 3 + 1,
        )
    });
    let input = SplitInput::new()
        .partitions("left", 2)
        .partitions("right", 2)
        .records("left", ls)?
        .records("right", rs)?;
    for kind in [JoinKind::Inner, JoinKind::Left, JoinKind::Outer] {
        SplitCheck::new(&topology(kind)?)
            .seed(5)
            .runs(3)
            .run(&input)
            .map_err(|e| kstreams::Error::processing(e.to_string()))?;
    }
    Ok(())
}
