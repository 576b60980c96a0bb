//! The embedded default backend: one sled tree in one data directory.
//!
//! Every keyspace is a one-byte prefix in a single tree, so a batch is a
//! single sled transaction (atomic across keyspaces). Durability: sled writes
//! reach disk only on flush, so [`SledStore::commit`] flushes before it
//! returns; concurrent commits share one flush (group commit), which runs off
//! the async workers.

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use async_trait::async_trait;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use super::{Batch, Entry, Keyspace, Store, StoreError, Write, audit, audit_index};

/// A [`Store`] on sled.
#[derive(Clone)]
pub struct SledStore {
    /// The database, kept to flush it.
    db: sled::Db,
    /// The single tree holding every keyspace.
    tree: sled::Tree,
    /// Group commit: how many commits have been applied (in memory).
    applied: Arc<AtomicU64>,
    /// Group commit: up to which commit count everything is on disk.
    durable: Arc<AtomicU64>,
    /// Group commit: one flush at a time; waiters re-check `durable` after it.
    flush_lock: Arc<tokio::sync::Mutex<()>>,
}

impl SledStore {
    /// Opens (or creates) the store in `dir`.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the directory cannot be opened (for
    /// example because another process holds it).
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::HighThroughput)
            // Every commit flushes itself; a background flush would only hide
            // a missing one.
            .flush_every_ms(None)
            .open()
            .map_err(backend)?;
        let tree = db.open_tree("samenop").map_err(backend)?;
        Ok(SledStore {
            db,
            tree,
            applied: Arc::new(AtomicU64::new(0)),
            durable: Arc::new(AtomicU64::new(0)),
            flush_lock: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    /// Waits until every commit applied up to `target` is on disk, flushing
    /// if no other caller's flush already covered it.
    async fn make_durable(&self, target: u64) -> Result<(), StoreError> {
        if self.durable.load(Ordering::Acquire) >= target {
            return Ok(());
        }
        let _guard = self.flush_lock.lock().await;
        if self.durable.load(Ordering::Acquire) >= target {
            return Ok(());
        }
        // Everything applied before this point is covered by this flush.
        let covered = self.applied.load(Ordering::Acquire);
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.flush())
            .await
            .map_err(|err| StoreError::Backend(format!("flush task failed: {err}")))?
            .map_err(backend)?;
        self.durable.fetch_max(covered, Ordering::AcqRel);
        Ok(())
    }
}

/// Why a commit's transaction stopped without writing.
enum Aborted {
    /// A precondition did not hold.
    Conflict,
    /// The audit head cannot be read: no write can be accounted for.
    Corrupt(StoreError),
}

fn backend(err: sled::Error) -> StoreError {
    StoreError::Backend(err.to_string())
}

fn full_key(space: Keyspace, key: &[u8]) -> Vec<u8> {
    let mut full = Vec::with_capacity(key.len() + 1);
    full.push(space.tag());
    full.extend_from_slice(key);
    full
}

#[async_trait]
impl Store for SledStore {
    async fn get(&self, space: Keyspace, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let value = self.tree.get(full_key(space, key)).map_err(backend)?;
        Ok(value.map(|v| v.to_vec()))
    }

    async fn scan(
        &self,
        space: Keyspace,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let full_prefix = full_key(space, prefix);
        let iter = match after {
            Some(after) => {
                let start = full_key(space, after);
                self.tree
                    .range((std::ops::Bound::Excluded(start), std::ops::Bound::Unbounded))
            }
            None => self.tree.range(full_prefix.clone()..),
        };
        let mut entries = Vec::new();
        for item in iter {
            if entries.len() >= limit {
                break;
            }
            let (key, value) = item.map_err(backend)?;
            if !key.starts_with(&full_prefix) {
                break;
            }
            entries.push((key[1..].to_vec(), value.to_vec()));
        }
        Ok(entries)
    }

    async fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        let result = self.tree.transaction(|tx| {
            for expect in &batch.expects {
                let current = tx.get(full_key(expect.space, &expect.key))?;
                if current.as_deref() != expect.value.as_deref() {
                    return Err(ConflictableTransactionError::Abort(Aborted::Conflict));
                }
            }
            for write in &batch.writes {
                match write {
                    Write::Put { space, key, value } => {
                        tx.insert(full_key(*space, key), value.as_slice())?;
                    }
                    Write::Delete { space, key } => {
                        tx.remove(full_key(*space, key))?;
                    }
                }
            }
            if !batch.audit.is_empty() {
                let head_key = full_key(Keyspace::Meta, audit::HEAD_KEY);
                let stored = tx.get(&head_key)?;
                let mut head = audit::Head::decode(stored.as_deref())
                    .map_err(|e| ConflictableTransactionError::Abort(Aborted::Corrupt(e)))?;
                for event in &batch.audit {
                    let (sequence, entry, next) = head.append(event.clone());
                    let key = full_key(Keyspace::Audit, &sequence.to_be_bytes());
                    tx.insert(key, prost::Message::encode_to_vec(&entry))?;
                    for index in audit_index::index_keys(event, sequence) {
                        tx.insert(full_key(Keyspace::AuditIndex, &index), &[])?;
                    }
                    head = next;
                }
                tx.insert(head_key, head.encode())?;
            }
            Ok(())
        });
        match result {
            Ok(()) => {}
            Err(TransactionError::Abort(Aborted::Conflict)) => return Err(StoreError::Conflict),
            Err(TransactionError::Abort(Aborted::Corrupt(err))) => return Err(err),
            Err(TransactionError::Storage(err)) => return Err(backend(err)),
        }
        let target = self.applied.fetch_add(1, Ordering::AcqRel) + 1;
        self.make_durable(target).await
    }

    async fn flush(&self) -> Result<(), StoreError> {
        let target = self.applied.load(Ordering::Acquire);
        self.make_durable(target.max(1)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sled_store_meets_the_contract() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        super::super::contract::run_all(Arc::new(store)).await;
    }

    #[tokio::test]
    async fn committed_data_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SledStore::open(dir.path()).unwrap();
            let mut batch = Batch::new();
            batch.put(Keyspace::Devices, b"k".to_vec(), b"v".to_vec());
            store.commit(batch).await.unwrap();
            // Dropped without any further flush: commit must already be durable.
            std::mem::forget(store);
        }
        // The forgotten handle still holds sled's file lock: read a copy of
        // the files, as a restarted process would find them.
        let copy = tempfile::tempdir().unwrap();
        copy_dir(dir.path(), copy.path());
        let reopened = SledStore::open(copy.path()).unwrap();
        assert_eq!(
            reopened.get(Keyspace::Devices, b"k").await.unwrap(),
            Some(b"v".to_vec())
        );
    }

    fn copy_dir(from: &Path, to: &Path) {
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                std::fs::create_dir_all(&target).unwrap();
                copy_dir(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), target).unwrap();
            }
        }
    }
}
