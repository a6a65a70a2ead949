use kstreams::testing::TopologyTestDriver;
use kstreams::Topology;

fn main() -> kstreams::Result<()> {
    let mut t = Topology::builder();
    let lines = t.source::<String, String>("lines");
    t.sink("copies", &lines);
    let mut driver = TopologyTestDriver::new(t.build()?)?;
    driver.pipe("lines", "alice", "hello".to_string())?;
    Ok(())
}
