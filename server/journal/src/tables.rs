//! What the journal holds and redb does not hold yet: the writes since the
//! last checkpoint, in memory, in front of redb for every read.
//!
//! Two tables: the active one, which each commit extends once its journal
//! record is written (and durable, when the commit asks for that), and
//! at most one frozen one, being written into redb by a checkpoint. A read
//! looks in the active table, then the frozen one, then redb: a later
//! table's value of a key is never newer than an earlier one's. A
//! checkpoint's table is dropped only once its redb transaction has
//! committed, so a key a read does not find in the tables is in redb.
//!
//! Keys are full keys (keyspace tag + key); a removal is kept as `None` so
//! that it hides what redb still holds.

use std::{
    collections::BTreeMap,
    ops::Bound,
    sync::{Arc, PoisonError, RwLock},
};

use crate::segment::Changes;

/// A key and its value in the tables (`None`: removed).
pub(crate) type Change = (Vec<u8>, Option<Vec<u8>>);

/// Bytes counted for each entry beyond its key and value (the map's node
/// and the two vectors), so that many small entries count.
const ENTRY_OVERHEAD: usize = 64;

/// A table of changes and the bytes it holds.
#[derive(Default)]
pub(crate) struct Table {
    /// Full key → value, or `None` for a removal.
    pub(crate) map: Changes,
    /// Approximate memory held.
    bytes: usize,
}

impl Table {
    /// A table holding `changes`.
    pub(crate) fn of(changes: Changes) -> Self {
        let mut table = Table::default();
        table.extend(changes);
        table
    }

    fn extend(&mut self, changes: Changes) {
        for (key, value) in changes {
            let value_len = value.as_ref().map_or(0, Vec::len);
            let key_len = key.len();
            match self.map.insert(key, value) {
                // The key and its overhead are counted already.
                Some(old) => {
                    self.bytes = self.bytes + value_len - old.as_ref().map_or(0, Vec::len);
                }
                None => self.bytes += ENTRY_OVERHEAD + key_len + value_len,
            }
        }
    }
}

/// The active and frozen tables, shared by the writer and every reader.
#[derive(Default)]
pub(crate) struct Tables {
    /// Both tables, under one lock so a read sees them at one moment.
    inner: RwLock<Inner>,
}

#[derive(Default)]
struct Inner {
    active: Table,
    frozen: Option<Arc<Table>>,
}

/// What a table lookup found.
pub(crate) enum Found {
    /// The key's newest value is this one (`None`: removed).
    Here(Option<Vec<u8>>),
    /// Not in the tables: redb holds the key's newest value.
    InRedb,
}

impl Tables {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Looks `key` up in the active table, then the frozen one.
    pub(crate) fn get(&self, key: &[u8]) -> Found {
        let inner = self.read();
        if let Some(value) = inner.active.map.get(key) {
            return Found::Here(value.clone());
        }
        if let Some(value) = inner.frozen.as_ref().and_then(|f| f.map.get(key)) {
            return Found::Here(value.clone());
        }
        Found::InRedb
    }

    /// Makes a durable group's changes visible.
    pub(crate) fn publish(&self, changes: Changes) {
        self.write().active.extend(changes);
    }

    /// The bytes the active table holds.
    pub(crate) fn active_bytes(&self) -> usize {
        self.read().active.bytes
    }

    /// Whether the active table holds anything.
    pub(crate) fn active_is_empty(&self) -> bool {
        self.read().active.map.is_empty()
    }

    /// Freezes the active table for a checkpoint and starts an empty one:
    /// the frozen table, or `None` when one is frozen already.
    pub(crate) fn freeze(&self) -> Option<Arc<Table>> {
        let mut inner = self.write();
        if inner.frozen.is_some() {
            return None;
        }
        let frozen = Arc::new(std::mem::take(&mut inner.active));
        inner.frozen = Some(frozen.clone());
        Some(frozen)
    }

    /// The frozen table, if any (to hand to a checkpoint again).
    pub(crate) fn frozen(&self) -> Option<Arc<Table>> {
        self.read().frozen.clone()
    }

    /// Takes the frozen table out once its checkpoint has committed (its
    /// memory is freed by whoever drops the last reference).
    pub(crate) fn take_frozen(&self) -> Option<Arc<Table>> {
        self.write().frozen.take()
    }

    /// The tables' entries from `start` on whose keys start with `prefix`,
    /// in key order (the active table's value where both hold a key),
    /// removals included, until `limit` live entries are taken: the
    /// entries, whether the tables hold nothing more in the range, and what
    /// `then` answers, called while the tables are still as read (to begin
    /// a read of redb at the same moment).
    pub(crate) fn range<T>(
        &self,
        start: Bound<&[u8]>,
        prefix: &[u8],
        limit: usize,
        then: impl FnOnce() -> T,
    ) -> (Vec<Change>, bool, T) {
        let inner = self.read();
        let (entries, done) = Self::collect(&inner, start, prefix, limit);
        let after = then();
        drop(inner);
        (entries, done, after)
    }

    fn collect(
        inner: &Inner,
        start: Bound<&[u8]>,
        prefix: &[u8],
        limit: usize,
    ) -> (Vec<Change>, bool) {
        let range = (start, Bound::Unbounded);
        let mut active = inner
            .active
            .map
            .range::<[u8], _>(range)
            .take_while(|(k, _)| k.starts_with(prefix))
            .peekable();
        let empty = BTreeMap::new();
        let mut frozen = inner
            .frozen
            .as_ref()
            .map_or(&empty, |f| &f.map)
            .range::<[u8], _>(range)
            .take_while(|(k, _)| k.starts_with(prefix))
            .peekable();
        let mut out = Vec::new();
        let mut live = 0;
        loop {
            if live >= limit {
                let done = active.peek().is_none() && frozen.peek().is_none();
                return (out, done);
            }
            let next = match (active.peek(), frozen.peek()) {
                (None, None) => return (out, true),
                (Some(_), None) => active.next(),
                (None, Some(_)) => frozen.next(),
                (Some((a, _)), Some((f, _))) => match a.cmp(f) {
                    std::cmp::Ordering::Less => active.next(),
                    std::cmp::Ordering::Greater => frozen.next(),
                    std::cmp::Ordering::Equal => {
                        frozen.next();
                        active.next()
                    }
                },
            };
            let Some((key, value)) = next else {
                return (out, true);
            };
            live += usize::from(value.is_some());
            out.push((key.clone(), value.clone()));
        }
    }
}

/// Merges the tables' entries of a range (from [`Tables::range`]) with
/// redb's entries of the same range: the first `limit` live entries, the
/// tables' value winning. `tables_done` says the tables hold nothing past
/// their last entry; `redb_done` the same of redb's.
pub(crate) fn merge(
    tables: Vec<Change>,
    tables_done: bool,
    redb: Vec<(Vec<u8>, Vec<u8>)>,
    redb_done: bool,
    limit: usize,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    // Past the last key a side read, the other side's entries are only
    // right if that side is done.
    let tables_end = (!tables_done)
        .then(|| tables.last().map(|(k, _)| k.clone()))
        .flatten();
    let redb_end = (!redb_done)
        .then(|| redb.last().map(|(k, _)| k.clone()))
        .flatten();
    let within = |key: &[u8]| {
        tables_end.as_deref().is_none_or(|end| key <= end)
            && redb_end.as_deref().is_none_or(|end| key <= end)
    };
    let mut out = Vec::with_capacity(limit.min(tables.len() + redb.len()));
    let mut tables = tables.into_iter().peekable();
    let mut redb = redb.into_iter().peekable();
    while out.len() < limit {
        let from_tables = match (tables.peek(), redb.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some((t, _)), Some((r, _))) => {
                if t == r {
                    redb.next();
                    true
                } else {
                    t < r
                }
            }
        };
        let (key, value) = if from_tables {
            match tables.next() {
                Some((key, value)) => (key, value),
                None => break,
            }
        } else {
            match redb.next() {
                Some((key, value)) => (key, Some(value)),
                None => break,
            }
        };
        if !within(&key) {
            break;
        }
        if let Some(value) = value {
            out.push((key, value));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::tests::changes;

    #[test]
    fn the_active_table_wins_over_the_frozen_one() {
        let tables = Tables::default();
        tables.publish(changes(&[("a", Some("old")), ("b", Some("kept"))]));
        assert!(tables.freeze().is_some());
        assert!(tables.freeze().is_none(), "one frozen table at a time");
        tables.publish(changes(&[("a", Some("new")), ("b", None)]));
        assert!(matches!(tables.get(b"a"), Found::Here(Some(v)) if v == b"new"));
        assert!(matches!(tables.get(b"b"), Found::Here(None)));
        assert!(matches!(tables.get(b"c"), Found::InRedb));
        let (entries, done, ()) = tables.range(Bound::Unbounded, b"", 10, || ());
        assert!(done);
        assert_eq!(
            entries,
            vec![
                (b"a".to_vec(), Some(b"new".to_vec())),
                (b"b".to_vec(), None)
            ]
        );
        drop(tables.take_frozen());
        assert!(matches!(tables.get(b"b"), Found::Here(None)));
    }

    #[test]
    fn a_merge_hides_removed_keys_and_stops_where_a_side_stopped() {
        let t =
            |k: &str, v: Option<&str>| (k.as_bytes().to_vec(), v.map(|v| v.as_bytes().to_vec()));
        let r = |k: &str, v: &str| (k.as_bytes().to_vec(), v.as_bytes().to_vec());
        // The tables removed b and changed c; redb holds a, b, c, d.
        let merged = merge(
            vec![t("b", None), t("c", Some("C"))],
            true,
            vec![r("a", "1"), r("b", "2"), r("c", "3"), r("d", "4")],
            true,
            10,
        );
        assert_eq!(merged, vec![r("a", "1"), r("c", "C"), r("d", "4")]);
        // redb read only up to b: nothing past b is certain.
        let merged = merge(
            vec![t("c", Some("C"))],
            true,
            vec![r("a", "1"), r("b", "2")],
            false,
            10,
        );
        assert_eq!(merged, vec![r("a", "1"), r("b", "2")]);
        // The tables stopped at b (their limit): redb's c is not certain.
        let merged = merge(
            vec![t("b", Some("B"))],
            false,
            vec![r("a", "1"), r("c", "3")],
            true,
            10,
        );
        assert_eq!(merged, vec![r("a", "1"), r("b", "B")]);
        assert_eq!(
            merge(vec![], true, vec![r("a", "1"), r("b", "2")], true, 1),
            vec![r("a", "1")]
        );
    }
}
