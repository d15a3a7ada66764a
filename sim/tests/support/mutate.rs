//! Mutations for property tests: a valid input with a few characters deleted, replaced or
//! inserted (characters that matter to JSON, RON and CSV). Shared by the property tests of
//! `ptm-sim` and `ptm-runtime` (the latter includes this file with `#[path]`).

use proptest::prelude::*;

/// `text` with a few characters deleted, replaced or inserted.
pub fn mutated(text: String) -> impl Strategy<Value = String> {
    let len = text.chars().count().max(1);
    let edit = (
        0..len,
        0u8..3,
        prop::sample::select(vec![
            '[', ']', '{', '}', '(', ')', ',', '"', ':', '9', 'e', '-', '.', '\n', '\u{feff}', 'A',
            '0', ' ',
        ]),
    );
    prop::collection::vec(edit, 1..6).prop_map(move |edits| {
        let mut chars: Vec<char> = text.chars().collect();
        for (at, op, c) in edits {
            let at = at.min(chars.len());
            match op {
                0 if at < chars.len() => {
                    chars.remove(at);
                }
                1 if at < chars.len() => chars[at] = c,
                _ => chars.insert(at, c),
            }
        }
        chars.into_iter().collect()
    })
}
