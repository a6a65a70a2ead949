// The name rule (node, store and application names appear in topic names: 1 to 200 of
// a-z A-Z 0-9 . _ -), as cases both copies check: the runtime's `topology::valid_name` and the
// macros' `valid::valid_name` (a proc-macro crate cannot call the runtime). Included by both
// test modules.

/// `(name, valid)`.
fn name_cases() -> Vec<(String, bool)> {
    let ok = [
        "word-counts.v2_x".to_owned(),
        "a".to_owned(),
        "UPPER.lower-09_".to_owned(),
        "x".repeat(200),
    ];
    let bad = [
        String::new(),
        "word counts".to_owned(),
        "ünïcode".to_owned(),
        "slash/name".to_owned(),
        "colon:name".to_owned(),
        "x".repeat(201),
    ];
    ok.into_iter()
        .map(|n| (n, true))
        .chain(bad.into_iter().map(|n| (n, false)))
        .collect()
}
