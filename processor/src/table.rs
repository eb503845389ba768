//! Live tables: the in-memory store of each task's part of a table, and the typed read side
//! ([`TableReader`]) that pull queries and subscriptions use.
//!
//! A table's keys and values are stored JSON-encoded (the changelog's format too), in a
//! `BTreeMap` ordered by those bytes; each task owns the partition of the table that its input
//! partition feeds. Every change is applied to the store, appended to the table's compacted
//! changelog topic (partition = task partition) and offered to subscribers, in that order, on the
//! task's thread. Readers take a read lock and never block the task for long.
//!
//! Subscribers get changes as the task applies them. An aggregate applies its changes once per
//! key per task flush (`ops/aggregate.rs`), so a change may carry several records' worth. After a
//! restart the task re-applies the changes since its last snapshot, so a subscriber can see a
//! change twice (at-least-once); the changelog topic itself holds each applied change once.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::{from_state_bytes, state_bytes};
use crate::context::{Cx, OutRec};
use crate::error::{Error, Result, TableError};
use crate::position::Position;
use crate::rank::{MAX_INDEXES, Rank, RankIndex, best_first, top_by_scan};

/// Changes a subscriber may fall behind by before it is cut off.
pub const SUBSCRIBER_CAPACITY: usize = 65_536;

/// One change of a table, JSON-encoded as in the changelog. `value: None` is a deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawChange {
    pub partition: u32,
    pub key: Bytes,
    pub value: Option<Bytes>,
    pub ts: i64,
}

#[derive(Debug)]
struct Subscriber {
    tx: SyncSender<RawChange>,
    lagged: AtomicBool,
}

/// One task's partition of a table: its rows as JSON bytes, ordered by key bytes. Part of the
/// operator API (`operator_api`): an operator that
/// [materializes](crate::Stream::materialize) a table reads it ([`get`](Self::get),
/// [`range`](Self::range)) and writes it ([`put`](Self::put)); every write is changelogged at
/// the position of the record being handled, so the table survives restarts without the
/// operator keeping anything else.
/// A stored value and the timestamp of the record that wrote it (a row's `ROWTIME`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamped {
    pub value: Bytes,
    pub ts: i64,
}

impl AsRef<[u8]> for Stamped {
    fn as_ref(&self) -> &[u8] {
        &self.value
    }
}

/// A partition's rows and the rank indexes top-N queries asked for (`rank`), under one lock
/// so that they always agree.
#[derive(Debug, Default)]
struct Rows {
    map: BTreeMap<Bytes, Stamped>,
    ranks: Vec<RankIndex>,
}

#[derive(Debug)]
pub struct TableStore {
    pub(crate) partition: u32,
    pub(crate) changelog: Arc<str>,
    rows: RwLock<Rows>,
    bytes: AtomicU64,
    read_inside: AtomicBool,
    subscribers: Mutex<Vec<Arc<Subscriber>>>,
}

impl TableStore {
    pub(crate) fn new(partition: u32, changelog: Arc<str>) -> Self {
        Self {
            partition,
            changelog,
            rows: RwLock::new(Rows::default()),
            bytes: AtomicU64::new(0),
            read_inside: AtomicBool::new(false),
            subscribers: Mutex::new(Vec::new()),
        }
    }

    /// Marks the table as read by an operator of its own task (a stream–table join), which
    /// must see every change as soon as it is made: operators that cache changes until the
    /// task flushes (see `ops/aggregate.rs`) write through to such a table.
    pub(crate) fn mark_read_inside(&self) {
        self.read_inside.store(true, Ordering::Relaxed);
    }

    pub(crate) fn read_inside(&self) -> bool {
        self.read_inside.load(Ordering::Relaxed)
    }

    /// Sets (or with `None` deletes) `key`, appends the change to the changelog and tells
    /// subscribers. A write of the value already there changes nothing and writes nothing.
    pub fn put(&self, key: Vec<u8>, value: Option<Vec<u8>>, ts: i64, cx: &mut Cx) {
        let pos = cx.reserve();
        self.put_at(key, value, ts, pos, cx);
    }

    /// [`put`](Self::put) with the changelog record at `pos`, a position reserved earlier
    /// (by the input record that made the change).
    pub(crate) fn put_at(
        &self,
        key: Vec<u8>,
        value: Option<Vec<u8>>,
        ts: i64,
        pos: Position,
        cx: &mut Cx,
    ) {
        let key = Bytes::from(key);
        let value = value.map(Bytes::from);
        {
            let mut rows = self.write();
            let rows = &mut *rows;
            let map = &mut rows.map;
            // A key already there is updated in place (no copy of the key); a new one costs a
            // second lookup.
            let (added, removed, old) = match &value {
                Some(v) => match map.get_mut(&key[..]) {
                    Some(old) if old.value == v => return,
                    Some(old) => {
                        let before = std::mem::replace(old, Stamped { value: v.clone(), ts });
                        (v.len(), before.value.len(), Some(before.value))
                    }
                    None => {
                        map.insert(key.clone(), Stamped { value: v.clone(), ts });
                        (key.len() + v.len(), 0, None)
                    }
                },
                None => match map.remove(&key[..]) {
                    Some(old) => (0, key.len() + old.value.len(), Some(old.value)),
                    None => return,
                },
            };
            for index in &mut rows.ranks {
                index.update(&key, old.as_deref(), value.as_deref());
            }
            self.bytes.fetch_add(added as u64, Ordering::Relaxed);
            self.bytes.fetch_sub(removed as u64, Ordering::Relaxed);
        }
        let rec = OutRec {
            key: Some(key.clone()),
            value: value.clone(),
            ts,
            pos,
            origin: None,
            headers: Vec::new(),
        };
        cx.emit_at(&self.changelog, self.partition, rec);
        self.publish(RawChange { partition: self.partition, key, value, ts });
    }

    fn publish(&self, change: RawChange) {
        let mut subs = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        if subs.is_empty() {
            return;
        }
        subs.retain(|s| match s.tx.try_send(change.clone()) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                s.lagged.store(true, Ordering::Release);
                false
            }
            Err(TrySendError::Disconnected(_)) => false,
        });
    }

    /// The value stored under `key` (JSON bytes), if any.
    pub fn get(&self, key: &[u8]) -> Option<Bytes> {
        self.get_stamped(key).map(|s| s.value)
    }

    /// The value stored under `key` with the timestamp of the record that wrote it.
    pub fn get_stamped(&self, key: &[u8]) -> Option<Stamped> {
        self.read().map.get(key).cloned()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Rows> {
        self.rows.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Rows> {
        self.rows.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The `n` best rows by the ranking `by` (see `rank`), best first, with their ranks: from
    /// the ranking's index, which the first such query makes and every later write keeps up
    /// to date (past `MAX_INDEXES` rankings, from a scan).
    pub(crate) fn top(&self, by: &str, n: usize) -> Vec<(Rank, Bytes, Stamped)> {
        let answer = |rows: &Rows, index: &RankIndex| -> Vec<(Rank, Bytes, Stamped)> {
            index
                .top(n)
                .filter_map(|(rank, key)| Some((rank, key.clone(), rows.map.get(key)?.clone())))
                .collect()
        };
        {
            let rows = self.read();
            if let Some(index) = rows.ranks.iter().find(|i| i.by() == by) {
                return answer(&rows, index);
            }
        }
        let mut rows = self.write();
        if rows.ranks.iter().all(|i| i.by() != by) {
            if rows.ranks.len() >= MAX_INDEXES {
                return top_by_scan(by, &rows.map, n)
                    .into_iter()
                    .filter_map(|(rank, key)| {
                        let stamped = rows.map.get(&key)?.clone();
                        Some((rank, key, stamped))
                    })
                    .collect();
            }
            let index = RankIndex::build(by, rows.map.iter().map(|(k, s)| (k, &s.value)));
            rows.ranks.push(index);
        }
        match rows.ranks.iter().find(|i| i.by() == by) {
            Some(index) => answer(&rows, index),
            None => Vec::new(),
        }
    }

    /// The entries with keys in `from..to` (bounds on the key bytes), in key order: a copy,
    /// so the store may be written while they are looked at.
    pub fn range(&self, from: Bound<&[u8]>, to: Bound<&[u8]>) -> Vec<(Bytes, Stamped)> {
        self.read()
            .map
            .range::<[u8], _>((from, to))
            .map(|(k, v)| (Bytes::copy_from_slice(k), v.clone()))
            .collect()
    }

    /// (keys, bytes of keys and values).
    pub(crate) fn size(&self) -> (u64, u64) {
        let keys = self.read().map.len() as u64;
        (keys, self.bytes.load(Ordering::Relaxed))
    }

    pub(crate) fn save(&self, out: &mut Vec<u8>) -> std::result::Result<(), serde_json::Error> {
        let rows = self.read();
        let map = &rows.map;
        // The same framing as `state::save_map`, but the values are JSON already and are not
        // encoded again.
        out.extend_from_slice(&(map.len() as u64).to_le_bytes());
        for (k, v) in map.iter() {
            crate::state::put_bytes(out, k);
            crate::state::put_bytes(out, &v.value);
            out.extend_from_slice(&v.ts.to_le_bytes());
        }
        Ok(())
    }

    /// Loads what [`save`](Self::save) wrote; `stamped` is false for snapshots written before
    /// entries carried timestamps (they load as 0).
    pub(crate) fn load(
        &self,
        bytes: &mut &[u8],
        stamped: bool,
    ) -> std::result::Result<(), &'static str> {
        let count = crate::state::take_u64(bytes)?;
        let mut map = BTreeMap::new();
        let mut total = 0u64;
        for _ in 0..count {
            let k = Bytes::copy_from_slice(crate::state::take_bytes(bytes)?);
            let value = Bytes::copy_from_slice(crate::state::take_bytes(bytes)?);
            let ts = if stamped { crate::state::take_u64(bytes)? as i64 } else { 0 };
            total += (k.len() + value.len()) as u64;
            map.insert(k, Stamped { value, ts });
        }
        let mut rows = self.write();
        // Rankings asked for before are rebuilt over the loaded rows.
        let ranks = rows
            .ranks
            .iter()
            .map(|i| RankIndex::build(i.by(), map.iter().map(|(k, s)| (k, &s.value))))
            .collect();
        *rows = Rows { map, ranks };
        self.bytes.store(total, Ordering::Relaxed);
        Ok(())
    }

    fn subscribe(&self, sub: Arc<Subscriber>) {
        self.subscribers.lock().unwrap_or_else(|p| p.into_inner()).push(sub);
    }

    /// Moves the subscribers of a store this one replaces (a task reopened after a failure).
    pub(crate) fn adopt_subscribers(&self, old: &TableStore) {
        let subs = std::mem::take(&mut *old.subscribers.lock().unwrap_or_else(|p| p.into_inner()));
        self.subscribers.lock().unwrap_or_else(|p| p.into_inner()).extend(subs);
    }
}

/// Every live table of a processor, by name and partition.
#[derive(Debug, Default)]
pub struct TableRegistry {
    tables: RwLock<BTreeMap<String, BTreeMap<u32, Arc<TableStore>>>>,
}

impl TableRegistry {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub(crate) fn register(&self, name: &str, store: Arc<TableStore>) {
        let mut tables = self.tables.write().unwrap_or_else(|p| p.into_inner());
        let parts = tables.entry(name.to_owned()).or_default();
        if let Some(old) = parts.insert(store.partition, store.clone()) {
            store.adopt_subscribers(&old);
        }
    }

    /// Forgets partition `partition` of every table (its task stopped here, to run elsewhere):
    /// reads no longer see it. The table names stay known.
    pub fn remove_partition(&self, partition: u32) {
        let mut tables = self.tables.write().unwrap_or_else(|p| p.into_inner());
        for parts in tables.values_mut() {
            parts.remove(&partition);
        }
    }

    /// The partitions of table `name` that are live here.
    pub fn partitions(&self, name: &str) -> Vec<u32> {
        let tables = self.tables.read().unwrap_or_else(|p| p.into_inner());
        tables.get(name).map(|p| p.keys().copied().collect()).unwrap_or_default()
    }

    fn parts(&self, name: &str) -> Vec<Arc<TableStore>> {
        let tables = self.tables.read().unwrap_or_else(|p| p.into_inner());
        tables.get(name).map(|p| p.values().cloned().collect()).unwrap_or_default()
    }

    /// Names of the tables with at least one live partition.
    pub fn names(&self) -> Vec<String> {
        self.tables.read().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect()
    }

    /// A typed reader of table `name`.
    pub fn reader<K, V>(self: &Arc<Self>, name: &str) -> Result<TableReader<K, V>> {
        if !self.tables.read().unwrap_or_else(|p| p.into_inner()).contains_key(name) {
            return Err(Error::UnknownTable { name: name.to_owned() });
        }
        Ok(TableReader { registry: self.clone(), name: name.to_owned(), _types: PhantomData })
    }

    /// (keys, bytes) of one table over all its partitions.
    pub fn size(&self, name: &str) -> (u64, u64) {
        self.parts(name).iter().map(|s| s.size()).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    }
}

/// Reads a live table: get by key, scan a key range, subscribe to changes. Values that do not
/// decode as `V` are skipped by scans and reported as `Err` by `get`.
#[derive(Debug)]
pub struct TableReader<K, V> {
    registry: Arc<TableRegistry>,
    name: String,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Clone for TableReader<K, V> {
    fn clone(&self) -> Self {
        Self { registry: self.registry.clone(), name: self.name.clone(), _types: PhantomData }
    }
}

impl<K: Serialize + DeserializeOwned, V: DeserializeOwned> TableReader<K, V> {
    /// The value of `key` (looked up in every partition; a key lives in one).
    pub fn get(&self, key: &K) -> std::result::Result<Option<V>, TableError> {
        Ok(self.get_stamped(key)?.map(|(v, _)| v))
    }

    /// The value of `key` and the timestamp of the record that wrote it.
    pub fn get_stamped(&self, key: &K) -> std::result::Result<Option<(V, i64)>, TableError> {
        let k = state_bytes(key).map_err(TableError::Key)?;
        for part in self.registry.parts(&self.name) {
            if let Some(s) = part.get_stamped(&k) {
                let v = from_state_bytes(&s.value).map_err(TableError::Value)?;
                return Ok(Some((v, s.ts)));
            }
        }
        Ok(None)
    }

    /// Every entry with `from <= key < to` (bounds compared as JSON-encoded bytes, which for
    /// strings is their byte order), sorted by encoded key across partitions.
    pub fn range(&self, from: Bound<&K>, to: Bound<&K>) -> Vec<(K, V)> {
        self.range_stamped(from, to).into_iter().map(|(k, v, _)| (k, v)).collect()
    }

    /// [`range`](Self::range) with each entry's timestamp.
    pub fn range_stamped(&self, from: Bound<&K>, to: Bound<&K>) -> Vec<(K, V, i64)> {
        let enc = |b: Bound<&K>| match b {
            Bound::Included(k) => state_bytes(k).map(Bound::Included),
            Bound::Excluded(k) => state_bytes(k).map(Bound::Excluded),
            Bound::Unbounded => Ok(Bound::Unbounded),
        };
        let (Ok(from), Ok(to)) = (enc(from), enc(to)) else { return Vec::new() };
        let mut raw: Vec<(Bytes, Stamped)> = Vec::new();
        for part in self.registry.parts(&self.name) {
            raw.extend(part.range(as_slice(&from), as_slice(&to)));
        }
        raw.sort_by(|a, b| a.0.cmp(&b.0));
        raw.iter()
            .filter_map(|(k, s)| {
                Some((from_state_bytes(k).ok()?, from_state_bytes(&s.value).ok()?, s.ts))
            })
            .collect()
    }

    /// The `n` entries whose values rank highest by `by` (the value itself when empty, else
    /// its field `by`, read as a number): largest first, values without such a number after
    /// every number, equal ones by encoded key. Each partition answers from a rank index
    /// (made by the first such query, then kept up to date by every write), not by sorting
    /// its rows.
    pub fn top(&self, by: &str, n: usize) -> Vec<(K, V)> {
        let mut best: Vec<(Rank, Bytes, Stamped)> = Vec::new();
        for part in self.registry.parts(&self.name) {
            best.extend(part.top(by, n));
        }
        best.sort_by(|a, b| best_first((a.0, &a.1), (b.0, &b.1)));
        best.into_iter()
            .filter_map(|(_, k, s)| {
                Some((from_state_bytes(&k).ok()?, from_state_bytes(&s.value).ok()?))
            })
            .take(n)
            .collect()
    }

    /// Every entry, sorted by encoded key.
    pub fn scan(&self) -> Vec<(K, V)> {
        self.range(Bound::Unbounded, Bound::Unbounded)
    }

    /// Every entry with its timestamp, sorted by encoded key.
    pub fn scan_stamped(&self) -> Vec<(K, V, i64)> {
        self.range_stamped(Bound::Unbounded, Bound::Unbounded)
    }

    /// (keys, bytes of keys and values) over all partitions.
    pub fn size(&self) -> (u64, u64) {
        self.registry.size(&self.name)
    }

    /// A digest of the table's contents: FNV-1a 64 over every (key, value) in key order, each
    /// length-prefixed. Two tables with equal contents have equal digests, however they were
    /// built (a replay can be verified by comparing digests).
    pub fn digest(&self) -> u64 {
        let mut raw: Vec<(Bytes, Stamped)> = Vec::new();
        for part in self.registry.parts(&self.name) {
            raw.extend(part.range(Bound::Unbounded, Bound::Unbounded));
        }
        raw.sort_by(|a, b| a.0.cmp(&b.0));
        let mut bytes = Vec::new();
        for (k, s) in &raw {
            crate::state::put_bytes(&mut bytes, k);
            crate::state::put_bytes(&mut bytes, &s.value);
        }
        crate::position::fnv1a64(&bytes)
    }

    /// Changes from now on, as tasks apply them.
    pub fn subscribe(&self) -> Subscription<K, V> {
        let (tx, rx) = mpsc::sync_channel(SUBSCRIBER_CAPACITY);
        let sub = Arc::new(Subscriber { tx, lagged: AtomicBool::new(false) });
        for part in self.registry.parts(&self.name) {
            part.subscribe(sub.clone());
        }
        Subscription { rx, sub, _types: PhantomData }
    }
}

fn as_slice(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(v) => Bound::Included(v.as_slice()),
        Bound::Excluded(v) => Bound::Excluded(v.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// A typed change of a table.
#[derive(Debug, Clone, PartialEq)]
pub struct Change<K, V> {
    pub key: K,
    /// `None`: the key was deleted.
    pub value: Option<V>,
    pub ts: i64,
}

/// Why a subscription ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubscriptionError {
    #[error("the subscriber fell more than {SUBSCRIBER_CAPACITY} changes behind and was cut off")]
    Lagged,
    #[error("no change arrived before the timeout")]
    Timeout,
    #[error("the table's tasks are gone")]
    Closed,
    #[error("a change did not decode")]
    Decode,
}

/// Receives a table's changes.
#[derive(Debug)]
pub struct Subscription<K, V> {
    rx: Receiver<RawChange>,
    sub: Arc<Subscriber>,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K: DeserializeOwned, V: DeserializeOwned> Subscription<K, V> {
    /// The next change, waiting at most `timeout`.
    pub fn recv_timeout(
        &self,
        timeout: Duration,
    ) -> std::result::Result<Change<K, V>, SubscriptionError> {
        if self.sub.lagged.load(Ordering::Acquire) {
            return Err(SubscriptionError::Lagged);
        }
        let raw = match self.rx.recv_timeout(timeout) {
            Ok(raw) => raw,
            Err(_) if self.sub.lagged.load(Ordering::Acquire) => {
                return Err(SubscriptionError::Lagged);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => return Err(SubscriptionError::Timeout),
            Err(mpsc::RecvTimeoutError::Disconnected) => return Err(SubscriptionError::Closed),
        };
        let key = from_state_bytes(&raw.key).map_err(|_| SubscriptionError::Decode)?;
        let value = match raw.value {
            Some(v) => Some(from_state_bytes(&v).map_err(|_| SubscriptionError::Decode)?),
            None => None,
        };
        Ok(Change { key, value, ts: raw.ts })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A top-N made once keeps its index through writes, deletions and a snapshot's load.
    #[test]
    fn a_top_query_is_answered_from_an_index_kept_up_to_date() {
        let store = store_with(&[("\"a\"", "3", 1), ("\"b\"", "9", 2), ("\"c\"", "3", 3)]);
        let top = |store: &TableStore, n| -> Vec<(String, String)> {
            let rows = store.top("", n).into_iter();
            rows.map(|(_, k, s)| (utf8(&k), utf8(&s.value))).collect()
        };
        let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        assert_eq!(top(&store, 2), pairs(&[("\"b\"", "9"), ("\"a\"", "3")]));
        assert_eq!(store.read().ranks.len(), 1, "the first query made the index");
        let mut cx = Cx::new(0, 0, None);
        let pos = |n| Position { writer: 0, n, index: 0 };
        store.put_at(b"\"c\"".to_vec(), Some(b"10".to_vec()), 4, pos(0), &mut cx);
        store.put_at(b"\"b\"".to_vec(), None, 5, pos(1), &mut cx);
        store.put_at(b"\"d\"".to_vec(), Some(b"\"text\"".to_vec()), 6, pos(2), &mut cx);
        let want = pairs(&[("\"c\"", "10"), ("\"a\"", "3"), ("\"d\"", "\"text\"")]);
        assert_eq!(top(&store, 5), want);
        let mut saved = Vec::new();
        store.save(&mut saved).unwrap();
        store.load(&mut saved.as_slice(), true).unwrap();
        assert_eq!(top(&store, 5), want, "the index was rebuilt over the loaded rows");
    }

    fn utf8(b: &[u8]) -> String {
        String::from_utf8(b.to_vec()).unwrap()
    }

    fn store_with(entries: &[(&str, &str, i64)]) -> TableStore {
        let store = TableStore::new(0, Arc::from("changelog"));
        let mut rows = store.write();
        for (k, v, ts) in entries {
            let value = Bytes::copy_from_slice(v.as_bytes());
            rows.map.insert(Bytes::copy_from_slice(k.as_bytes()), Stamped { value, ts: *ts });
        }
        drop(rows);
        store
    }

    #[test]
    fn entries_keep_their_timestamps_through_a_snapshot() {
        let store = store_with(&[("a", "1", 10), ("b", "2", -5)]);
        let mut saved = Vec::new();
        store.save(&mut saved).expect("saves");
        let loaded = TableStore::new(0, Arc::from("changelog"));
        loaded.load(&mut saved.as_slice(), true).expect("loads");
        assert_eq!(loaded.get_stamped(b"a"), Some(Stamped { value: Bytes::from("1"), ts: 10 }));
        assert_eq!(loaded.get_stamped(b"b"), Some(Stamped { value: Bytes::from("2"), ts: -5 }));
        assert_eq!(loaded.size(), (2, 4));
    }

    #[test]
    fn a_version_1_snapshot_loads_with_timestamp_zero() {
        // Version 1 entries: count, then (key, value) without a timestamp.
        let mut v1 = 1u64.to_le_bytes().to_vec();
        crate::state::put_bytes(&mut v1, b"k");
        crate::state::put_bytes(&mut v1, b"\"v\"");
        let loaded = TableStore::new(0, Arc::from("changelog"));
        loaded.load(&mut v1.as_slice(), false).expect("loads");
        assert_eq!(loaded.get_stamped(b"k"), Some(Stamped { value: Bytes::from("\"v\""), ts: 0 }));
        let mut truncated = &v1[..v1.len() - 1];
        assert!(TableStore::new(0, Arc::from("c")).load(&mut truncated, false).is_err());
    }
}
