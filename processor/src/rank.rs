//! Rank indexes: a table partition's keys ordered by a number in their values, largest first,
//! so that a top-N query reads N entries instead of copying and sorting the whole table.
//!
//! A table has none until a top-N query asks for a ranking (`by`: the value itself, or a field
//! of it); from then on the store keeps that index up to date on every write, under the same
//! lock as its rows. At most [`MAX_INDEXES`] rankings per table are kept; a query for another
//! one is answered by a scan.
//!
//! Order (the one top-N answers have always had): by the number, largest first; rows whose
//! value has no number (not a number, no such field) after every number; equal numbers by key
//! bytes (the key's JSON), smallest first.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use serde_json::Value;

/// Rankings a table partition keeps at most.
pub(crate) const MAX_INDEXES: usize = 8;

/// A row's number, ordered with no number lowest.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Rank(pub Option<f64>);

impl Eq for Rank {}

impl PartialOrd for Rank {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Rank {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self.0, other.0) {
            (Some(a), Some(b)) => a.total_cmp(&b),
            (a, b) => a.is_some().cmp(&b.is_some()),
        }
    }
}

/// The number a ranking reads from a row's value (JSON bytes): the value itself when `by` is
/// empty, else its field `by`.
pub(crate) fn rank_of(by: &str, value: &[u8]) -> Rank {
    let Ok(v) = serde_json::from_slice::<Value>(value) else { return Rank(None) };
    let v = if by.is_empty() { Some(&v) } else { v.get(by) };
    Rank(v.and_then(Value::as_f64))
}

/// One ranking of a partition's keys.
#[derive(Debug)]
pub(crate) struct RankIndex {
    by: String,
    order: BTreeSet<(Reverse<Rank>, Bytes)>,
}

impl RankIndex {
    /// The ranking `by` of `rows` (key → value bytes).
    pub fn build<'a>(by: &str, rows: impl Iterator<Item = (&'a Bytes, &'a Bytes)>) -> Self {
        let order = rows.map(|(k, v)| (Reverse(rank_of(by, v)), k.clone())).collect();
        Self { by: by.to_owned(), order }
    }

    pub fn by(&self) -> &str {
        &self.by
    }

    /// Moves `key` from where `old` ranked it to where `new` does (`None`: absent).
    pub fn update(&mut self, key: &Bytes, old: Option<&[u8]>, new: Option<&[u8]>) {
        if let Some(old) = old {
            self.order.remove(&(Reverse(rank_of(&self.by, old)), key.clone()));
        }
        if let Some(new) = new {
            self.order.insert((Reverse(rank_of(&self.by, new)), key.clone()));
        }
    }

    /// The first `n` keys with their ranks, best first.
    pub fn top(&self, n: usize) -> impl Iterator<Item = (Rank, &Bytes)> {
        self.order.iter().take(n).map(|(Reverse(rank), key)| (*rank, key))
    }
}

/// The order of top-N answers over `(rank, key)` pairs: for merging partitions' tops and for
/// ranking a scan.
pub(crate) fn best_first(
    (rank_a, key_a): (Rank, &[u8]),
    (rank_b, key_b): (Rank, &[u8]),
) -> Ordering {
    rank_b.cmp(&rank_a).then_with(|| key_a.cmp(key_b))
}

/// The top `n` of `rows` by `by` without an index (a scan), best first.
pub(crate) fn top_by_scan<T: AsRef<[u8]>>(
    by: &str,
    rows: &BTreeMap<Bytes, T>,
    n: usize,
) -> Vec<(Rank, Bytes)> {
    let mut all: Vec<(Rank, Bytes)> =
        rows.iter().map(|(k, v)| (rank_of(by, v.as_ref()), k.clone())).collect();
    let n = n.min(all.len());
    if n > 0 && n < all.len() {
        all.select_nth_unstable_by(n - 1, |a, b| best_first((a.0, &a.1), (b.0, &b.1)));
    }
    all.truncate(n);
    all.sort_by(|a, b| best_first((a.0, &a.1), (b.0, &b.1)));
    all
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// An index kept up to date through any writes answers what a scan of the rows does.
        #[test]
        fn an_index_answers_what_a_scan_does(
            writes in prop::collection::vec(
                (0u8..40, prop::option::of(prop::sample::select(vec![
                    "1", "2", "2.5", "-3", "0", "1e300", "\"x\"", "null", "{\"n\":7}",
                    "{\"n\":-1}", "{\"m\":1}", "[1]", "not json",
                ]))),
                0..200),
            by in prop::sample::select(vec!["", "n"]),
            n in 0usize..50,
        ) {
            let mut rows: BTreeMap<Bytes, Bytes> = BTreeMap::new();
            let mut index = RankIndex::build(by, rows.iter());
            for (i, (key, value)) in writes.iter().enumerate() {
                let key = Bytes::from(format!("\"k{key}\""));
                let old = match value {
                    Some(v) => rows.insert(key.clone(), Bytes::from(v.to_string())),
                    None => rows.remove(&key),
                };
                index.update(&key, old.as_deref(), value.map(str::as_bytes));
                // Half way, a fresh index over the rows equals the one kept up to date.
                if i == writes.len() / 2 {
                    let fresh = RankIndex::build(by, rows.iter());
                    prop_assert_eq!(&fresh.order, &index.order);
                }
            }
            let indexed: Vec<(Rank, Bytes)> = index.top(n).map(|(r, k)| (r, k.clone())).collect();
            prop_assert_eq!(indexed, top_by_scan(by, &rows, n));
        }
    }
}
