//! The windowed count: a store declaration and a plain function over the batch (under
//! 15 lines of user code), the library operators over windowed handles, every window form, and
//! expansions warning-free under strict settings.
#![deny(warnings, missing_docs, missing_debug_implementations, unreachable_pub)]
#![deny(rust_2018_idioms, unused_qualifications, unused_lifetimes, single_use_lifetimes)]
#![allow(elided_lifetimes_in_paths)] // the documented style: `&mut Counts`, `&mut Emit<K, V>`

use kstreams::{batch_processor, store, window, Emit, Record, SessionWindowed, Topology, Windowed};

/// Views per page and minute.
#[store(name = "counts", window = tumbling(size = "1m"), grace = "10s", emit = on_window_close)]
pub type Counts = kstreams::WindowKeyValue<String, u64>;

/// Counts views per page and minute.
#[batch_processor]
pub fn count(views: &[Record<String, String>], counts: &mut Counts, out: &mut Emit<Windowed<String>, u64>) -> kstreams::Result<()> {
    counts.aggregate(views, out, |_| 0, |n, _| *n += 1)
}

/// Every key of a windowed declaration.
#[store(
    name = "hopping",
    window = hopping(size = "60s", advance = "10s"),
    grace = "0s",
    retention = "2h",
    emit = on_window_update,
    on_late = dead_letter,
    idle_advance = "30s",
    backend = "in_memory",
    changelog = false
)]
pub type Hopping = kstreams::WindowKeyValue<String, u64>;

/// Sliding windows.
#[store(name = "sliding", window = sliding(difference = "5m"), grace = "1m")]
pub type Sliding = kstreams::WindowKeyValue<String, u64>;

/// Sessions.
#[store(name = "sessions", window = session(gap = "5m"), grace = "30s", on_late = drop)]
pub type Sessions = kstreams::SessionKeyValue<String, u64>;

fn main() {
    let mut t = Topology::builder();
    let views = t.source::<String, String>("views");
    let per_minute: kstreams::Stream<Windowed<String>, u64> = t.add(count, &views);
    t.sink("per-minute", &per_minute);
    let hopping = t.add(window::count::<Hopping>(), &views);
    t.sink("hopping", &hopping);
    let sliding = t.add(window::count::<Sliding>(), &views);
    t.sink("sliding", &sliding);
    let sessions: kstreams::Stream<SessionWindowed<String>, Option<u64>> =
        t.add(window::count::<Sessions>(), &views);
    t.sink("sessions", &sessions);
    let _ = t.build();
}
